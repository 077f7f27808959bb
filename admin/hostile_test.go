package admin_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/admin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Hostile and broken requests get keyward's envelope with the right
// status and reason, change nothing, and echo no token or key.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	e := operatorEnv(t)
	org, other := e.org("acme"), e.org("other")
	k := e.key(org.ID, "prod")
	otherKey := e.key(other.ID, "theirs")
	orgPath := "/admin/v1/orgs/" + org.ID
	keyPath := orgPath + "/keys/" + k.Record.ID
	// A string shaped like an admin token, but not one of the file's.
	forged, _, err := admin.CreateToken(t.TempDir()+"/elsewhere", "x", testNow)
	require.NoError(t, err)
	huge := `{"name":"` + strings.Repeat("a", admin.DefaultMaxBody) + `"}`
	before := e.snapshot()

	cases := []struct {
		name, method, path, body string
		header                   []string
		status                   int
		code, reason             string
	}{
		{"no token", "GET", "/admin/v1/orgs", "", []string{"Authorization", ""}, 401, keyward.CodeAuthentication, "missing_admin_token"},
		{"forged token", "GET", "/admin/v1/orgs", "", []string{"Authorization", "Bearer " + forged}, 401, keyward.CodeAuthentication, "invalid_admin_token"},
		{"malformed token", "GET", "/admin/v1/orgs", "", []string{"Authorization", "Bearer kwadmin_nope"}, 401, keyward.CodeAuthentication, "invalid_admin_token"},
		{"an API key as token", "GET", "/admin/v1/orgs", "", []string{"Authorization", "Bearer " + k.Key}, 401, keyward.CodeAuthentication, "invalid_admin_token"},
		{"basic scheme", "GET", "/admin/v1/orgs", "", []string{"Authorization", "Basic " + e.token}, 401, keyward.CodeAuthentication, "invalid_admin_token"},
		{"no token on a change", "POST", keyPath + "/revoke", `{}`, []string{"Authorization", ""}, 401, keyward.CodeAuthentication, "missing_admin_token"},
		{"malformed JSON", "POST", "/admin/v1/orgs", `{"name":`, nil, 400, keyward.CodeValidation, "malformed_json"},
		{"JSON list", "POST", "/admin/v1/orgs", `[{"name":"x"}]`, nil, 400, keyward.CodeValidation, "malformed_json"},
		{"unknown field", "POST", "/admin/v1/orgs", `{"name":"x","owner":"me"}`, nil, 400, keyward.CodeValidation, "malformed_json"},
		{"two objects", "POST", "/admin/v1/orgs", `{"name":"x"}{"name":"y"}`, nil, 400, keyward.CodeValidation, "malformed_json"},
		{"wrong type", "POST", orgPath + "/credits/grants", `{"amount":"100"}`, nil, 400, keyward.CodeValidation, "malformed_json"},
		{"oversized body", "POST", "/admin/v1/orgs", huge, nil, 413, keyward.CodeValidation, "body_too_large"},
		{"form content type", "POST", keyPath + "/revoke", `{}`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, keyward.CodeValidation, "unsupported_media_type"},
		{"no content type", "POST", keyPath + "/rotate", `{}`, []string{"Content-Type", ""}, 415, keyward.CodeValidation, "unsupported_media_type"},
		{"text content type", "PATCH", orgPath, `{"plan":"enterprise"}`, []string{"Content-Type", "text/plain"}, 415, keyward.CodeValidation, "unsupported_media_type"},
		{"empty name", "POST", "/admin/v1/orgs", `{"name":""}`, nil, 422, keyward.CodeValidation, "invalid_fields"},
		// Names a database may refuse, or a dashboard show as other text:
		// the client's mistake (422) on every store, never a 503.
		{"NUL in an org name", "POST", "/admin/v1/orgs", `{"name":"a\u0000b"}`, nil, 422, keyward.CodeValidation, "invalid_fields"},
		{"NUL in a key name", "POST", orgPath + "/keys", `{"name":"a\u0000b"}`, nil, 422, keyward.CodeValidation, "invalid_fields"},
		{"control character in a new name", "PATCH", keyPath, `{"name":"a\u001bb"}`, nil, 422, keyward.CodeValidation, "invalid_fields"},
		{"bidirectional override", "PATCH", orgPath, `{"name":"acme\u202egpj.exe"}`, nil, 422, keyward.CodeValidation, "invalid_fields"},
		{"name too long", "POST", "/admin/v1/orgs", `{"name":"` + strings.Repeat("é", 101) + `"}`, nil, 422, keyward.CodeValidation, "invalid_fields"},
		{"NUL in a note", "POST", orgPath + "/credits/grants", `{"amount":5,"note":"a\u0000b"}`, nil, 422, keyward.CodeValidation, "invalid_fields"},
		{"unknown plan", "POST", "/admin/v1/orgs", `{"name":"x","plan":"platinum"}`, nil, 422, keyward.CodeValidation, "invalid_fields"},
		{"negative rate", "PATCH", orgPath, `{"ratePerMinute":-1}`, nil, 422, keyward.CodeValidation, "invalid_fields"},
		{"bad permission", "POST", orgPath + "/keys", `{"name":"x","permissions":["no spaces allowed"]}`, nil, 422, keyward.CodeValidation, "invalid_fields"},
		{"bad environment", "POST", orgPath + "/keys", `{"name":"x","environment":"prod"}`, nil, 422, keyward.CodeValidation, "invalid_fields"},
		{"endless key", "POST", orgPath + "/keys", `{"name":"x","expiresInSeconds":9223372036854775807}`, nil, 422, keyward.CodeValidation, "invalid_fields"},
		{"negative expiry", "PATCH", keyPath, `{"expiresInSeconds":-5}`, nil, 422, keyward.CodeValidation, "invalid_fields"},
		{"environment change", "PATCH", keyPath, `{"environment":"test"}`, nil, 422, keyward.CodeValidation, "invalid_fields"},
		{"endless grace", "POST", keyPath + "/rotate", `{"graceSeconds":9223372036854775807}`, nil, 422, keyward.CodeValidation, "invalid_fields"},
		{"zero grant", "POST", orgPath + "/credits/grants", `{"amount":0}`, nil, 422, keyward.CodeValidation, "invalid_fields"},
		{"huge grant", "POST", orgPath + "/credits/grants", `{"amount":9223372036854775807}`, nil, 422, keyward.CodeValidation, "invalid_fields"},
		{"long note", "POST", orgPath + "/credits/grants", `{"amount":1,"note":"` + strings.Repeat("n", 501) + `"}`, nil, 422, keyward.CodeValidation, "invalid_fields"},
		{"unknown org", "GET", "/admin/v1/orgs/org_000000000000000000000000", "", nil, 404, "not_found", "organization_not_found"},
		{"key-shaped org id", "GET", "/admin/v1/orgs/" + k.Key, "", nil, 404, "not_found", "organization_not_found"},
		{"escaped org id", "GET", "/admin/v1/orgs/%2e%2e%2f", "", nil, 404, "not_found", "organization_not_found"},
		{"unknown key", "POST", orgPath + "/keys/key_000000000000000000000000/revoke", `{}`, nil, 404, "not_found", "key_not_found"},
		{"key-shaped key id", "GET", orgPath + "/keys/" + k.Key, "", nil, 404, "not_found", "key_not_found"},
		{"another org's key", "POST", orgPath + "/keys/" + otherKey.Record.ID + "/revoke", `{}`, nil, 404, "not_found", "key_not_found"},
		{"bad days", "GET", orgPath + "/usage?days=0", "", nil, 400, keyward.CodeValidation, "invalid_parameter"},
		{"too many days", "GET", orgPath + "/usage?days=367", "", nil, 400, keyward.CodeValidation, "invalid_parameter"},
		{"two limits", "GET", orgPath + "/credits/ledger?limit=1&limit=2", "", nil, 400, keyward.CodeValidation, "invalid_parameter"},
		{"bad before", "GET", orgPath + "/credits/ledger?before=-1", "", nil, 400, keyward.CodeValidation, "invalid_parameter"},
		{"unknown route", "GET", "/admin/v1/keys", "", nil, 404, "not_found", "route_not_found"},
		{"wrong method", "DELETE", keyPath, "", nil, 405, keyward.CodeValidation, "method_not_allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := e.call(c.method, c.path, c.body, c.header...)
			a.failed(t, c.status, c.code, c.reason)
			assert.NotContains(t, a.raw, e.token, "the admin token is never echoed")
			assert.NotContains(t, a.raw, forged)
			assert.NotContains(t, a.raw, k.Key, "a key is never echoed")
			if c.status == 401 {
				assert.NotEmpty(t, a.header.Get("WWW-Authenticate"))
			}
			if c.status == 405 {
				assert.Equal(t, "GET, PATCH", a.header.Get("Allow"))
			}
		})
	}
	assert.Equal(t, before, e.snapshot(), "nothing changed")
}

// A token removed from the file stops working at once; a token file that
// cannot be read lets no one in.
func TestRemovedTokenStopsWorking(t *testing.T) {
	t.Parallel()
	e := operatorEnv(t)
	require.Equal(t, http.StatusOK, e.call("GET", "/admin/v1/orgs", "").status)
	require.NoError(t, writeFile(e.path, "# every token removed\n"))
	e.call("GET", "/admin/v1/orgs", "").failed(t, 401, keyward.CodeAuthentication, "invalid_admin_token")
	require.NoError(t, writeFile(e.path, "not a token line\n"))
	e.call("GET", "/admin/v1/orgs", "").failed(t, 401, keyward.CodeAuthentication, "invalid_admin_token")
}

// A store that fails is a 503 that says which part failed and nothing of
// why; the page says the same.
func TestStoreFailureIsA503(t *testing.T) {
	t.Parallel()
	e := operatorEnv(t)
	org := e.org("acme")
	b := e.browser()
	b.signIn()
	require.NoError(t, e.store.Close())
	for _, path := range []string{"/admin/v1/orgs", "/admin/v1/orgs/" + org.ID, "/admin/v1/orgs/" + org.ID + "/keys", "/admin/v1/orgs/" + org.ID + "/credits"} {
		a := e.call("GET", path, "")
		a.failed(t, 503, keyward.CodeServiceUnavailable, "")
		assert.NotContains(t, strings.ToLower(a.raw), "sql", path)
		assert.Equal(t, "1", a.header.Get("Retry-After"))
	}
	p := b.do("GET", "/dashboard/orgs/"+org.ID, nil)
	assert.Equal(t, 503, p.status)
	assert.Contains(t, p.body, "temporarily unavailable")
	assert.NotContains(t, strings.ToLower(p.body), "sql")
}

// An organization stored with a name the rule now refuses (before it
// existed) can still be updated; only a new name is judged.
func TestStoredNameIsNotJudgedAgain(t *testing.T) {
	t.Parallel()
	e := operatorEnv(t)
	org := e.org("acme")
	org.Name = strings.Repeat("long ", 60) // 300 bytes, stored as an older version allowed
	require.NoError(t, e.store.UpdateOrg(context.Background(), org))
	orgPath := "/admin/v1/orgs/" + org.ID
	assert.Equal(t, http.StatusOK, e.call("PATCH", orgPath, `{"plan":"growth"}`).status)
	assert.Equal(t, http.StatusUnprocessableEntity, e.call("PATCH", orgPath, `{"name":"`+strings.Repeat("x", 201)+`"}`).status)
	assert.Equal(t, http.StatusOK, e.call("PATCH", orgPath, `{"name":"acme"}`).status)
}

// A Handler not made by New answers with keyward's 500, not a panic.
func TestZeroHandler(t *testing.T) {
	assert.Equal(t, http.StatusNotFound, admin.NoRoute(nil, httptest.NewRequest(http.MethodGet, "/x", nil)).Status)
	for _, h := range []*admin.Handler{{}, nil} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/admin/v1/orgs", nil))
		assert.Equal(t, http.StatusInternalServerError, w.Code)
		assert.Contains(t, w.Body.String(), `"internal_error"`)
	}
}

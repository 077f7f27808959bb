package keyward_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/keyward/keyward"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHasPermissions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		held, req   []string
		wantMissing []string
	}{
		{"exact", []string{"transactions:enrich"}, []string{"transactions:enrich"}, nil},
		{"one of several held", []string{"categories:read", "transactions:enrich"}, []string{"transactions:enrich"}, nil},
		{"resource wildcard", []string{"transactions:*"}, []string{"transactions:enrich", "transactions:read"}, nil},
		{"global wildcard", []string{"*"}, []string{"transactions:enrich", "categories:read"}, nil},
		{"other resource", []string{"transactions:*"}, []string{"categories:read"}, []string{"categories:read"}},
		{"other action", []string{"transactions:read"}, []string{"transactions:enrich"}, []string{"transactions:enrich"}},
		{"missing several", []string{"categories:read"}, []string{"transactions:enrich", "categories:read", "transactions:read"}, []string{"transactions:enrich", "transactions:read"}},
		{"none held", nil, []string{"transactions:enrich"}, []string{"transactions:enrich"}},
		{"case sensitive", []string{"Transactions:enrich"}, []string{"transactions:enrich"}, []string{"transactions:enrich"}},
		{"case sensitive wildcard", []string{"Transactions:*"}, []string{"transactions:enrich"}, []string{"transactions:enrich"}},
		{"prefix is not a resource", []string{"trans:*"}, []string{"transactions:enrich"}, []string{"transactions:enrich"}},
		{"resource prefix wildcard", []string{"transactions:*"}, []string{"transactionsx:read"}, []string{"transactionsx:read"}},
		{"action wildcard is not a resource", []string{"*:read"}, []string{"transactions:read"}, []string{"transactions:read"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.wantMissing, keyward.HasPermissions(tc.held, tc.req))
		})
	}
}

func TestValidatePermission(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"*", "transactions:enrich", "transactions:*", "a.b:c-d_e"} {
		assert.NoError(t, keyward.ValidatePermission(ok), ok)
	}
	for _, bad := range []string{"", "transactions", ":read", "transactions:", "a:b:c", "a b:c", "*:read", "**", "tx:é"} {
		assert.Error(t, keyward.ValidatePermission(bad), bad)
	}
}

func TestEnforcePermissionsConstruction(t *testing.T) {
	t.Parallel()
	_, err := keyward.EnforcePermissions()
	assert.ErrorContains(t, err, "Required")
	_, err = keyward.EnforcePermissions("transactions", "transactions:*", "ok:read", "*")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"transactions"`)
	assert.Contains(t, err.Error(), `"transactions:*" is a wildcard`)
	assert.Contains(t, err.Error(), `"*" is a wildcard`)
	assert.NotContains(t, err.Error(), "ok:read")
}

func TestEnforcePermissions(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	check, err := keyward.NewPermissionCheck(keyward.PermissionConfig{
		Required: []string{"transactions:enrich", "categories:read"}, Errors: f.errors})
	require.NoError(t, err)
	h := f.auth.Middleware(check(okHandler))

	all := f.newKey(t, func(n *keyward.NewKey) { n.Permissions = []string{"*"} })
	some := f.newKey(t, func(n *keyward.NewKey) { n.Permissions = []string{"transactions:*"} })
	none := f.newKey(t, func(n *keyward.NewKey) { n.Permissions = nil })

	serve := func(key string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/v1/transactions/enrich", nil)
		r.Header.Set("X-API-Key", key)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	assert.Equal(t, http.StatusOK, serve(all.Key).Code)

	w := serve(some.Key)
	require.Equal(t, http.StatusForbidden, w.Code)
	env := decodeEnvelope(t, w)
	assert.Equal(t, "authorization_error", env.Error.Code)
	assert.Equal(t, []any{"transactions:enrich", "categories:read"}, env.Error.Details["required"])
	assert.Equal(t, []any{"categories:read"}, env.Error.Details["missing"])
	assert.Contains(t, env.Error.Message, `"categories:read"`)
	assert.Contains(t, env.Error.Message, "dashboard")

	w = serve(none.Key)
	require.Equal(t, http.StatusForbidden, w.Code)
	env = decodeEnvelope(t, w)
	assert.Equal(t, []any{"transactions:enrich", "categories:read"}, env.Error.Details["missing"])
	assert.Contains(t, env.Error.Message, "permissions")
}

func TestEnforcePermissionsWithoutRequireAPIKey(t *testing.T) {
	t.Parallel()
	check, err := keyward.EnforcePermissions("transactions:enrich")
	require.NoError(t, err)
	w := httptest.NewRecorder()
	called := false
	check(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true })).
		ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	assert.False(t, called)
	require.Equal(t, http.StatusInternalServerError, w.Code)
	env := decodeEnvelope(t, w)
	assert.Equal(t, "internal_error", env.Error.Code)
	assert.Contains(t, env.Error.Message, "RequireAPIKey")
}

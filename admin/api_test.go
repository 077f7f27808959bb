package admin_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/usage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every route of the API, in operator mode, on a real store.
func TestOperatorRoutes(t *testing.T) {
	t.Parallel()
	e := operatorEnv(t)
	ctx := context.Background()

	o := e.call("POST", "/admin/v1/orgs", `{"name":"acme","plan":"growth","allowOverage":false}`)
	require.Equal(t, http.StatusCreated, o.status, o.raw)
	org := o.obj(t)
	orgID := org["id"].(string)
	assert.Equal(t, "growth", org["plan"])
	assert.Equal(t, map[string]any{"requestsPerSecond": 10.0, "burst": 10.0, "requestsPerMinute": 600.0, "concurrency": 10.0, "monthlyCredits": 25000.0}, org["limits"])

	assert.Len(t, e.call("GET", "/admin/v1/orgs", "").list(t), 1)
	assert.Equal(t, "acme", e.call("GET", "/admin/v1/orgs/"+orgID, "").obj(t)["name"])

	up := e.call("PATCH", "/admin/v1/orgs/"+orgID, `{"plan":"business","allowOverage":true,"monthlyCredits":5}`)
	require.Equal(t, http.StatusOK, up.status, up.raw)
	assert.Equal(t, "business", up.obj(t)["plan"])
	assert.Equal(t, true, up.obj(t)["allowOverage"])
	assert.Equal(t, 5.0, up.obj(t)["limits"].(map[string]any)["monthlyCredits"])
	burst := e.call("PATCH", "/admin/v1/orgs/"+orgID, `{"burst":3}`)
	require.Equal(t, http.StatusOK, burst.status, burst.raw)
	assert.Equal(t, 3.0, burst.obj(t)["burst"], "the override")
	assert.Equal(t, 3.0, burst.obj(t)["limits"].(map[string]any)["burst"], "the effective burst, through the plan table's rule")
	assert.Equal(t, 20.0, burst.obj(t)["limits"].(map[string]any)["requestsPerSecond"], "the sustained rate stays the plan's")
	burst = e.call("PATCH", "/admin/v1/orgs/"+orgID, `{"burst":-1}`)
	require.Equal(t, http.StatusUnprocessableEntity, burst.status, burst.raw)
	assert.Contains(t, burst.raw, "burst -1 is out of range")
	require.Equal(t, http.StatusOK, e.call("PATCH", "/admin/v1/orgs/"+orgID, `{"burst":0}`).status)

	k := e.call("POST", "/admin/v1/orgs/"+orgID+"/keys",
		`{"name":"production","environment":"live","permissions":["transactions:enrich"],"expiresInSeconds":86400}`)
	require.Equal(t, http.StatusCreated, k.status, k.raw)
	key := k.obj(t)
	plaintext, keyID := key["key"].(string), key["id"].(string)
	require.True(t, strings.HasPrefix(plaintext, "triq_"))
	assert.Equal(t, "active", key["status"])
	assert.NotNil(t, key["expiresAt"])

	list := e.call("GET", "/admin/v1/orgs/"+orgID+"/keys", "")
	require.Len(t, list.keys(t), 1)
	assert.NotContains(t, list.raw, plaintext, "a listing shows hints only")
	assert.NotContains(t, list.raw, keyward.Hash(plaintext).String(), "never a hash")
	assert.NotContains(t, list.keys(t)[0].(map[string]any), "key")

	got := e.call("GET", "/admin/v1/orgs/"+orgID+"/keys/"+keyID, "")
	assert.Equal(t, "production", got.obj(t)["name"])
	assert.NotContains(t, got.raw, plaintext)

	ch := e.call("PATCH", "/admin/v1/orgs/"+orgID+"/keys/"+keyID, `{"name":"prod","permissions":["transactions:*"]}`)
	require.Equal(t, http.StatusOK, ch.status, ch.raw)
	assert.Equal(t, "prod", ch.obj(t)["name"])
	assert.Equal(t, []any{"transactions:*"}, ch.obj(t)["permissions"])

	rot := e.call("POST", "/admin/v1/orgs/"+orgID+"/keys/"+keyID+"/rotate", `{"graceSeconds":3600}`)
	require.Equal(t, http.StatusCreated, rot.status, rot.raw)
	next := rot.obj(t)
	assert.Equal(t, keyID, next["predecessor"])
	assert.NotEqual(t, plaintext, next["key"])
	assert.Equal(t, "rotating", e.call("GET", "/admin/v1/orgs/"+orgID+"/keys/"+keyID, "").obj(t)["status"])
	e.call("POST", "/admin/v1/orgs/"+orgID+"/keys/"+keyID+"/rotate", `{}`).failed(t, 409, keyward.CodeValidation, "key_rotated")

	rev := e.call("POST", "/admin/v1/orgs/"+orgID+"/keys/"+keyID+"/revoke", `{}`)
	require.Equal(t, http.StatusOK, rev.status, rev.raw)
	assert.Equal(t, "revoked", rev.obj(t)["status"])
	rec, err := e.store.LookupKey(ctx, keyward.Hash(plaintext))
	require.NoError(t, err)
	assert.True(t, rec.Revoked(time.Now()), "the store has it revoked")
	e.call("PATCH", "/admin/v1/orgs/"+orgID+"/keys/"+keyID, `{"name":"x"}`).failed(t, 409, keyward.CodeValidation, "key_revoked")

	bal := e.call("GET", "/admin/v1/orgs/"+orgID+"/credits", "").obj(t)
	assert.Equal(t, 5.0, bal["allocation"])
	assert.NotEmpty(t, bal["periodEnd"])
	g := e.call("POST", "/admin/v1/orgs/"+orgID+"/credits/grants", `{"amount":40,"note":"support ticket 12"}`)
	require.Equal(t, http.StatusOK, g.status, g.raw)
	assert.Equal(t, 40.0, g.obj(t)["granted"])
	assert.Equal(t, 45.0, g.obj(t)["available"])

	// The ledger, a page at a time.
	for range 3 {
		require.Equal(t, 200, e.call("POST", "/admin/v1/orgs/"+orgID+"/credits/grants", `{"amount":1}`).status)
	}
	page1 := e.call("GET", "/admin/v1/orgs/"+orgID+"/credits/ledger?limit=2", "").obj(t)
	entries := page1["entries"].([]any)
	require.Len(t, entries, 2)
	assert.Equal(t, "grant", entries[0].(map[string]any)["kind"])
	before := int64(page1["nextBefore"].(float64))
	page2 := e.call("GET", fmt.Sprintf("/admin/v1/orgs/%s/credits/ledger?limit=200&before=%d", orgID, before), "").obj(t)
	rest := page2["entries"].([]any)
	assert.Nil(t, page2["nextBefore"], "the last page")
	var notes []string
	for _, x := range append(entries, rest...) {
		notes = append(notes, x.(map[string]any)["note"].(string))
	}
	assert.Contains(t, notes, "support ticket 12")

	// Usage by day, from the batched counters.
	r, err := e.store.LookupKey(ctx, keyward.Hash(next["key"].(string)))
	require.NoError(t, err)
	now := time.Now()
	e.store.RecordOutcome(r, usage.Served, 3, now)
	e.store.RecordOutcome(r, usage.Served, 2, now)
	e.store.RecordOutcome(r, usage.RateLimited, 0, now)
	require.NoError(t, e.store.FlushUsage(ctx))
	for _, path := range []string{"/usage?days=7", "/keys/" + r.ID + "/usage?days=7"} {
		days := e.call("GET", "/admin/v1/orgs/"+orgID+path, "").obj(t)["days"].([]any)
		require.Len(t, days, 7, path)
		today := days[6].(map[string]any)
		assert.Equal(t, now.UTC().Format(time.DateOnly), today["day"])
		assert.Equal(t, 2.0, today["requests"].(map[string]any)["served"], path)
		assert.Equal(t, 1.0, today["requests"].(map[string]any)["rate_limited"], path)
		assert.Equal(t, 5.0, today["credits"], path)
	}
	oldDays := e.call("GET", "/admin/v1/orgs/"+orgID+"/keys/"+keyID+"/usage", "").obj(t)["days"].([]any)
	assert.Len(t, oldDays, 30, "30 days by default")
	assert.Equal(t, 0.0, oldDays[29].(map[string]any)["requests"].(map[string]any)["served"], "the other key's calls are not its")

	// The OpenAPI document is served, to anyone.
	doc := e.call("GET", "/admin/v1/openapi.json", "", "Authorization", "")
	require.Equal(t, 200, doc.status)
	assert.Equal(t, "3.1.0", doc.body["openapi"])
}

// Self-service mode: every route is confined to the host's organization;
// another organization's ids are not found, as if they did not exist.
func TestSelfServiceIsConfinedToItsOrganization(t *testing.T) {
	t.Parallel()
	e := selfServiceEnv(t)
	mine, theirs := e.org("mine"), e.org("theirs")
	myKey, theirKey := e.key(mine.ID, "a"), e.key(theirs.ID, "b")
	as := []string{"X-Test-Org", mine.ID}
	before := e.snapshot()

	orgs := e.call("GET", "/admin/v1/orgs", "", as...).list(t)
	require.Len(t, orgs, 1)
	assert.Equal(t, mine.ID, orgs[0].(map[string]any)["id"])
	assert.Len(t, e.call("GET", "/admin/v1/orgs/"+mine.ID+"/keys", "", as...).keys(t), 1)

	for _, c := range []struct{ method, path, body string }{
		{"GET", "/admin/v1/orgs/" + theirs.ID, ""},
		{"GET", "/admin/v1/orgs/" + theirs.ID + "/keys", ""},
		{"POST", "/admin/v1/orgs/" + theirs.ID + "/keys", `{"name":"x"}`},
		{"GET", "/admin/v1/orgs/" + theirs.ID + "/keys/" + theirKey.Record.ID, ""},
		{"POST", "/admin/v1/orgs/" + theirs.ID + "/keys/" + theirKey.Record.ID + "/revoke", `{}`},
		{"GET", "/admin/v1/orgs/" + theirs.ID + "/credits", ""},
		{"GET", "/admin/v1/orgs/" + theirs.ID + "/usage", ""},
		{"GET", "/admin/v1/orgs/" + theirs.ID + "/credits/ledger", ""},
		{"POST", "/admin/v1/orgs/" + theirs.ID + "/credits/grants", `{"amount":5}`},
		{"PATCH", "/admin/v1/orgs/" + theirs.ID, `{"plan":"enterprise"}`},
		{"GET", "/admin/v1/orgs/no_such_org", ""},
	} {
		e.call(c.method, c.path, c.body, as...).failed(t, 404, "not_found", "organization_not_found")
	}
	// Their key, asked for under my organization: not found, not forbidden.
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/keys/" + theirKey.Record.ID, ""},
		{"PATCH", "/keys/" + theirKey.Record.ID, `{"name":"mine now"}`},
		{"POST", "/keys/" + theirKey.Record.ID + "/rotate", `{}`},
		{"POST", "/keys/" + theirKey.Record.ID + "/revoke", `{}`},
		{"GET", "/keys/" + theirKey.Record.ID + "/usage", ""},
		{"GET", "/keys/key_000000000000000000000000", ""},
	} {
		e.call(c.method, "/admin/v1/orgs/"+mine.ID+c.path, c.body, as...).failed(t, 404, "not_found", "key_not_found")
	}
	// The operator's routes, on my own organization.
	e.call("POST", "/admin/v1/orgs", `{"name":"new"}`, as...).failed(t, 403, keyward.CodeAuthorization, "operator_only")
	e.call("PATCH", "/admin/v1/orgs/"+mine.ID, `{"plan":"enterprise"}`, as...).failed(t, 403, keyward.CodeAuthorization, "operator_only")
	e.call("POST", "/admin/v1/orgs/"+mine.ID+"/credits/grants", `{"amount":5}`, as...).failed(t, 403, keyward.CodeAuthorization, "operator_only")
	// No organization: the host has not signed anyone in.
	e.call("GET", "/admin/v1/orgs", "").failed(t, 401, keyward.CodeAuthentication, "not_signed_in")
	assert.Equal(t, before, e.snapshot(), "nothing changed")

	// What my organization may do, it does.
	k := e.call("POST", "/admin/v1/orgs/"+mine.ID+"/keys/"+myKey.Record.ID+"/rotate", `{"graceSeconds":0}`, as...)
	require.Equal(t, http.StatusCreated, k.status, k.raw)
	assert.Equal(t, "revoked", e.call("GET", "/admin/v1/orgs/"+mine.ID+"/keys/"+myKey.Record.ID, "", as...).obj(t)["status"])
}

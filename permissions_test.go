package keyward_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEnforcePermissionsConstruction(t *testing.T) {
	t.Parallel()
	_, err := keyward.EnforcePermissions(keyward.PermissionConfig{})
	assert.ErrorContains(t, err, "Required")
	_, err = keyward.EnforcePermissions(keyward.PermissionConfig{Required: []string{"transactions", "transactions:*", "ok:read", "*"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"transactions"`)
	assert.Contains(t, err.Error(), `"transactions:*" is a wildcard`)
	assert.Contains(t, err.Error(), `"*" is a wildcard`)
	assert.NotContains(t, err.Error(), "ok:read")
}

func TestEnforcePermissions(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	check, err := keyward.EnforcePermissions(keyward.PermissionConfig{
		Required: []string{"transactions:enrich", "categories:read"}, Errors: f.errors})
	require.NoError(t, err)
	h := f.auth.Middleware(check.Middleware(okHandler))

	all := f.newKey(t, func(n *manage.KeySpec) { n.Permissions = []string{"*"} })
	some := f.newKey(t, func(n *manage.KeySpec) { n.Permissions = []string{"transactions:*"} })
	none := f.newKey(t, func(n *manage.KeySpec) { n.Permissions = nil })

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
	check, err := keyward.EnforcePermissions(keyward.PermissionConfig{Required: []string{"transactions:enrich"}})
	require.NoError(t, err)
	w := httptest.NewRecorder()
	called := false
	check.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true })).
		ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	assert.False(t, called)
	require.Equal(t, http.StatusInternalServerError, w.Code)
	env := decodeEnvelope(t, w)
	assert.Equal(t, "internal_error", env.Error.Code)
	assert.Contains(t, env.Error.Message, "misconfigured") // the problem is logged, not sent
}

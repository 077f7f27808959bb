package main

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// `keys create` past the organization's cap on working keys (--max-keys)
// fails, naming the cap, and makes no key; the demo API's /v1/usage lists
// keys a page at a time (?limit=, ?after=).
func TestKeyCapAndUsagePages(t *testing.T) {
	c := newCLI(t)
	org := c.org("--name", "acme", "--rps", "100")
	first := c.key(org, "--name", "a", "--permissions", "*")
	c.key(org, "--name", "b")
	_, errs, code := c.run("--max-keys", "2", "keys", "create", "--org", org, "--name", "c")
	assert.Equal(t, 1, code, errs)
	assert.Contains(t, errs, "most working keys it may have: 2")
	var keys []map[string]any
	c.json(&keys, "keys", "list", "--json", "--org", org)
	assert.Len(t, keys, 2, "no key was made")
	_, errs, code = c.run("--max-keys", "0", "keys", "list", "--org", org)
	assert.Equal(t, 2, code, errs)

	srv := c.serve()
	r := srv.do(t, http.MethodGet, "/v1/usage?limit=1", first.Key, "")
	require.Equal(t, http.StatusOK, r.status, r.raw)
	data := r.body["data"].(map[string]any)
	assert.Len(t, data["keys"], 1)
	next, _ := data["keysNextAfter"].(string)
	require.NotEmpty(t, next, r.raw)
	r = srv.do(t, http.MethodGet, "/v1/usage?limit=1&after="+next, first.Key, "")
	require.Equal(t, http.StatusOK, r.status, r.raw)
	data = r.body["data"].(map[string]any)
	assert.Len(t, data["keys"], 1)
	assert.Nil(t, data["keysNextAfter"])
	r = srv.do(t, http.MethodGet, "/v1/usage?limit=500", first.Key, "")
	require.Equal(t, http.StatusBadRequest, r.status, r.raw)
	assert.Equal(t, "invalid_parameter", r.reason(t))
}

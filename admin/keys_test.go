package admin_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/keyward/keyward/admin"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A self-service customer gives a key only permissions the operator
// offers (an offered wildcard covers its expansions), by the API and by
// the page, when creating and when changing a key; the rest are refused
// with a 422 naming them, and nothing changes. An operator gives any.
func TestSelfServiceGivesOnlyWhatIsOffered(t *testing.T) {
	t.Parallel()
	e := selfServiceEnv(t, "transactions:*", "categories:read")
	mine := e.org("mine")
	k := e.key(mine.ID, "k")
	as := []string{"X-Test-Org", mine.ID}
	keys := "/admin/v1/orgs/" + mine.ID + "/keys"
	before := e.snapshot()
	for _, perms := range []string{`["*"]`, `["billing:admin"]`, `["transactions:read","categories:*"]`, `["categories:write","*","transactions:read"]`} {
		a := e.call("POST", keys, `{"name":"x","permissions":`+perms+`}`, as...)
		a.failed(t, http.StatusUnprocessableEntity, "validation_error", admin.ReasonInvalidFields)
		a = e.call("PATCH", keys+"/"+k.Record.ID, `{"permissions":`+perms+`}`, as...)
		a.failed(t, http.StatusUnprocessableEntity, "validation_error", admin.ReasonInvalidFields)
	}
	a := e.call("POST", keys, `{"name":"x","permissions":["categories:write","*","transactions:read"]}`, as...)
	assert.Contains(t, a.raw, `not offered here: \"categories:write\", \"*\"`, "the refused ones are named")
	b := e.browser()
	page := b.do("GET", "/dashboard/orgs/"+mine.ID+"/keys/new", nil, as...)
	p := b.do("POST", "/dashboard/orgs/"+mine.ID+"/keys", url.Values{"csrf": {page.csrf(t)}, "name": {"x"}, "permissions": {"*"}}, as...)
	assert.Equal(t, http.StatusUnprocessableEntity, p.status, p.body)
	assert.Contains(t, p.body, "not offered here")
	assert.Equal(t, before, e.snapshot(), "nothing changed")

	a = e.call("POST", keys, `{"name":"x","permissions":["transactions:*","transactions:enrich","categories:read"]}`, as...)
	require.Equal(t, http.StatusCreated, a.status, a.raw)
	a = e.call("PATCH", keys+"/"+k.Record.ID, `{"permissions":["transactions:read"]}`, as...)
	require.Equal(t, http.StatusOK, a.status, a.raw)

	op := operatorEnv(t)
	o := op.org("acme")
	a = op.call("POST", "/admin/v1/orgs/"+o.ID+"/keys", `{"name":"x","permissions":["billing:admin"]}`)
	require.Equal(t, http.StatusCreated, a.status, a.raw)
}

// An organization has at most the store's cap of working keys: past it
// the API and the page answer 409 too_many_keys and make no key; a
// revoked key makes room.
func TestKeyCap(t *testing.T) {
	t.Parallel()
	e := &env{t: t, store: newStoreWith(t, sqlstore.Options{MaxKeys: 3})}
	e.serve(admin.Config{OrgFor: func(r *http.Request) (string, error) { return r.Header.Get("X-Test-Org"), nil }})
	o := e.org("acme")
	as := []string{"X-Test-Org", o.ID}
	keys := "/admin/v1/orgs/" + o.ID + "/keys"
	var first string
	for i := range 3 {
		a := e.call("POST", keys, `{"name":"k"}`, as...)
		require.Equal(t, http.StatusCreated, a.status, a.raw)
		if i == 0 {
			first = a.obj(t)["id"].(string)
		}
	}
	before := e.snapshot()
	e.call("POST", keys, `{"name":"k"}`, as...).failed(t, http.StatusConflict, "validation_error", admin.ReasonTooManyKeys)
	e.call("POST", keys+"/"+first+"/rotate", `{"graceSeconds":60}`, as...).failed(t, http.StatusConflict, "validation_error", admin.ReasonTooManyKeys)
	b := e.browser()
	page := b.do("GET", "/dashboard/orgs/"+o.ID+"/keys/new", nil, as...)
	p := b.do("POST", "/dashboard/orgs/"+o.ID+"/keys", url.Values{"csrf": {page.csrf(t)}, "name": {"x"}}, as...)
	assert.Equal(t, http.StatusConflict, p.status, p.body)
	assert.Contains(t, p.body, "as many working keys as it may have")
	assert.Equal(t, before, e.snapshot(), "nothing changed")

	require.Equal(t, http.StatusOK, e.call("POST", keys+"/"+first+"/revoke", `{}`, as...).status)
	require.Equal(t, http.StatusCreated, e.call("POST", keys, `{"name":"k"}`, as...).status)
}

// The API's and the page's key listings are paged: limit (default 50,
// at most 200) and after (a page's nextAfter); bad values are a 400.
func TestKeyListingsArePaged(t *testing.T) {
	t.Parallel()
	e := operatorEnv(t)
	o, other := e.org("acme"), e.org("other")
	theirs := e.key(other.ID, "theirs")
	var made []string
	for i := range 5 {
		made = append(made, e.key(o.ID, fmt.Sprint("k", i)).Record.ID)
	}
	all, err := e.store.ListKeys(context.Background(), o.ID, manage.KeyQuery{})
	require.NoError(t, err)
	keys := "/admin/v1/orgs/" + o.ID + "/keys"
	var got []string
	path := keys + "?limit=2"
	for range 5 {
		a := e.call("GET", path, "")
		require.Equal(t, http.StatusOK, a.status, a.raw)
		for _, k := range a.keys(t) {
			got = append(got, k.(map[string]any)["id"].(string))
		}
		next, _ := a.obj(t)["nextAfter"].(string)
		if next == "" {
			assert.Nil(t, a.obj(t)["nextAfter"])
			break
		}
		path = keys + "?limit=2&after=" + next
	}
	var want []string
	for _, k := range all {
		want = append(want, k.ID)
	}
	assert.Equal(t, want, got, "the pages are the listing")
	assert.ElementsMatch(t, made, got)
	assert.Len(t, e.call("GET", keys, "").keys(t), 5, "default: 50")
	for _, q := range []string{"limit=0", "limit=201", "limit=x", "limit=1&limit=2", "after=key_nope", "after=" + theirs.Record.ID, "after=" + strings.Repeat("a", 65)} {
		e.call("GET", keys+"?"+q, "").failed(t, http.StatusBadRequest, "validation_error", admin.ReasonInvalidParameter)
	}

	b := e.browser()
	b.signIn()
	first := b.do("GET", "/dashboard/orgs/"+o.ID+"?limit=2", nil)
	require.Equal(t, http.StatusOK, first.status)
	assert.Equal(t, 2, strings.Count(first.body, "data-key-id="))
	assert.Contains(t, first.body, `id="next-keys" href="?search=&amp;status=&amp;after=`+want[1]+`#keys-heading"`, "a link to the older keys")
	rest := b.do("GET", "/dashboard/orgs/"+o.ID+"?after="+want[1], nil)
	assert.Equal(t, 3, strings.Count(rest.body, "data-key-id="))
	assert.NotContains(t, rest.body, `id="next-keys"`)
	assert.Contains(t, rest.body, `id="first-keys"`)
}

// The API's key listing searches and filters by status; revoked keys are
// left out unless asked for; a whole key is never searched for.
func TestKeyListSearchAndStatus(t *testing.T) {
	t.Parallel()
	e := operatorEnv(t)
	o := e.org("acme")
	prod, staging := e.key(o.ID, "Production"), e.key(o.ID, "staging")
	require.NoError(t, e.store.RevokeKey(context.Background(), staging.Record.ID))
	keys := "/admin/v1/orgs/" + o.ID + "/keys"
	ids := func(q string) []string {
		t.Helper()
		var out []string
		for _, k := range e.call("GET", keys+q, "").keys(t) {
			out = append(out, k.(map[string]any)["id"].(string))
		}
		return out
	}
	assert.Equal(t, []string{prod.Record.ID}, ids(""), "revoked keys are hidden by default")
	assert.Equal(t, []string{staging.Record.ID}, ids("?status=revoked"))
	assert.Len(t, ids("?status=all"), 2)
	assert.Len(t, ids("?status=active,revoked"), 2)
	assert.Equal(t, []string{prod.Record.ID}, ids("?search=PRODUCT"))
	assert.Equal(t, []string{prod.Record.ID}, ids("?search="+url.QueryEscape(prod.Record.Hint[:8])))
	assert.Empty(t, ids("?search=staging"))
	for _, q := range []string{"?status=lost", "?search=" + prod.Key, "?search=a&search=b"} {
		a := e.call("GET", keys+q, "")
		a.failed(t, http.StatusBadRequest, "validation_error", admin.ReasonInvalidParameter)
		assert.NotContains(t, a.raw, prod.Key)
	}
}

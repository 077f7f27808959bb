package admin_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readTimeout is the stalled requests' server's ReadTimeout: a client has
// that long to send its whole request.
const readTimeout = 300 * time.Millisecond

// notDone asserts that a request whose body stalled was not reported as
// done: a 4xx (in the envelope on the API, a page on the dashboard), or
// the connection closed with no answer; never a 2xx or a 3xx.
func notDone(t *testing.T, s testenv.Stalled, api bool) {
	t.Helper()
	if s.Response == nil {
		return // closed with no status: the client knows nothing happened
	}
	code := s.Response.StatusCode
	require.True(t, code == http.StatusRequestTimeout || code == http.StatusBadRequest, "status %d: %q", code, s.Raw)
	if api {
		assert.Equal(t, "application/json; charset=utf-8", s.Response.Header.Get("Content-Type"))
		assert.Contains(t, s.Body, `"success":false`)
		assert.Contains(t, s.Body, `"code":"validation_error"`)
	} else {
		assert.Contains(t, s.Response.Header.Get("Content-Type"), "text/html")
	}
}

// A revoke whose body stalls (Content-Length 2, one byte sent) is not
// answered 200: the key was not revoked, and the answer says so.
func TestStalledBodyIsNotDoneOnTheAPI(t *testing.T) {
	t.Parallel()
	e := operatorEnv(t)
	org := e.org("acme")
	k := e.key(org.ID, "prod")
	addr := testenv.ServeReadTimeout(t, e.h, readTimeout)
	for _, tc := range []struct{ method, path string }{
		{"POST", "/admin/v1/orgs/" + org.ID + "/keys/" + k.Record.ID + "/revoke"},
		{"POST", "/admin/v1/orgs/" + org.ID + "/keys"},
		{"PATCH", "/admin/v1/orgs/" + org.ID + "/keys/" + k.Record.ID},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			head := tc.method + " " + tc.path + " HTTP/1.1\r\nHost: admin.example\r\nAuthorization: Bearer " + e.token +
				"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
			notDone(t, testenv.Stall(t, addr, head, "{", 10*readTimeout), true)
		})
	}
	t.Cleanup(func() {
		info, err := e.store.Key(context.Background(), "", k.Record.ID)
		require.NoError(t, err)
		assert.True(t, info.Record.RevokedAt.IsZero(), "the key was not revoked")
	})
}

// The same on the dashboard's forms, signed in and with the form's CSRF
// token: a page that says the form could not be read, never the redirect
// that means done.
func TestStalledBodyIsNotDoneOnTheDashboard(t *testing.T) {
	t.Parallel()
	e := operatorEnv(t)
	org := e.org("acme")
	k := e.key(org.ID, "prod")
	b := e.browser()
	b.signIn()
	csrf := b.do("GET", "/dashboard/orgs/"+org.ID+"/keys/new", nil).csrf(t)
	u, err := url.Parse(e.srv.URL + "/dashboard/")
	require.NoError(t, err)
	var cookies []string
	for _, c := range b.client.Jar.Cookies(u) {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	addr := testenv.ServeReadTimeout(t, e.h, readTimeout)
	before := e.snapshot()
	for _, path := range []string{
		"/dashboard/orgs/" + org.ID + "/keys/" + k.Record.ID + "/revoke",
		"/dashboard/orgs/" + org.ID + "/credits",
		"/dashboard/orgs/" + org.ID + "/keys",
	} {
		part := "csrf=" + url.QueryEscape(csrf) + "&"
		head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n",
			path, u.Host, strings.Join(cookies, "; "), len(part)+40)
		notDone(t, testenv.Stall(t, addr, head, part, 10*readTimeout), false)
	}
	assert.Equal(t, before, e.snapshot(), "nothing changed")
}

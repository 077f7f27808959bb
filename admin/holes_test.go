package admin_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/admin"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A CSRF token is bound to the session it was drawn for: a token and
// cookie taken anonymously (from the sign-in page), planted in an
// operator's browser, do not carry a form of the operator's session.
func TestCSRFTokenIsBoundToTheSession(t *testing.T) {
	t.Parallel()
	e := operatorEnv(t)
	org := e.org("acme")
	k := e.key(org.ID, "prod")
	attacker := e.browser()
	login := attacker.do("GET", "/dashboard/login", nil)
	srvURL, _ := url.Parse(e.srv.URL)
	var planted *http.Cookie
	for _, c := range attacker.client.Jar.Cookies(&url.URL{Scheme: "http", Host: srvURL.Host, Path: "/dashboard/"}) {
		if c.Name == "keyward_csrf" {
			planted = c
		}
	}
	require.NotNil(t, planted)

	victim := e.browser()
	victim.signIn()
	victim.do("GET", "/dashboard/", nil)
	victim.client.Jar.SetCookies(&url.URL{Scheme: "http", Host: srvURL.Host, Path: "/dashboard/"},
		[]*http.Cookie{{Name: "keyward_csrf", Value: planted.Value, Path: "/dashboard/"}})
	before := e.snapshot()
	p := victim.do("POST", "/dashboard/orgs/"+org.ID+"/keys/"+k.Record.ID+"/revoke", url.Values{"csrf": {login.csrf(t)}})
	assert.Equal(t, http.StatusForbidden, p.status, p.body)
	assert.Equal(t, before, e.snapshot(), "nothing changed")
}

// A form's Origin must be this dashboard's: the same host over the same
// scheme; an opaque "null" origin (a sandboxed frame, a data: page) is
// refused.
func TestFormOriginSchemeAndNull(t *testing.T) {
	t.Parallel()
	e := operatorEnv(t)
	org := e.org("acme")
	b := e.browser()
	b.signIn()
	csrf := b.do("GET", "/dashboard/orgs/"+org.ID+"/keys/new", nil).csrf(t)
	host := strings.TrimPrefix(e.srv.URL, "http://")
	before := e.snapshot()
	for _, origin := range []string{"null", "https://" + host, "http://" + host + ".evil.example", "ws://" + host} {
		p := b.do("POST", "/dashboard/orgs/"+org.ID+"/keys", url.Values{"csrf": {csrf}, "name": {"x"}}, "Origin", origin)
		assert.Equal(t, http.StatusForbidden, p.status, "Origin %s", origin)
	}
	assert.Equal(t, before, e.snapshot(), "nothing changed")
	p := b.do("POST", "/dashboard/orgs/"+org.ID+"/keys", url.Values{"csrf": {csrf}, "name": {"x"}}, "Origin", "http://"+host)
	assert.Equal(t, http.StatusSeeOther, p.status, p.body)
}

// Over TLS the dashboard's cookies are __Host- cookies (Secure, Path=/,
// no Domain): no sibling subdomain can plant them. Signing in works so.
func TestHostCookiesOverTLS(t *testing.T) {
	t.Parallel()
	e := &env{t: t, store: newStore(t)}
	e.path = filepath.Join(t.TempDir(), "admin-tokens")
	_, _, err := admin.CreateToken(e.path, "ops", time.Now())
	require.NoError(t, err)
	tokens, err := admin.OpenTokenFile(e.path)
	require.NoError(t, err)
	e.serve(admin.Config{Tokens: tokens})
	e.srv.Close()
	tlsSrv := httptest.NewUnstartedServer(e.srv.Config.Handler)
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	e.srv = tlsSrv
	b := e.browser()
	jar, _ := cookiejar.New(nil)
	b.client = &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	link, err := e.h.LoginLink(time.Minute)
	require.NoError(t, err)
	first := b.do("GET", link, nil)
	require.Equal(t, http.StatusOK, first.status)
	signed := b.openLink(link)
	require.Equal(t, http.StatusSeeOther, signed.status, signed.body)
	var names []string
	for _, p := range []pageAnswer{first, signed} {
		for _, line := range p.header.Values("Set-Cookie") {
			names = append(names, strings.SplitN(line, "=", 2)[0])
			assert.Contains(t, line, "Path=/;")
			assert.Contains(t, line, "Secure")
			assert.NotContains(t, line, "Domain")
		}
	}
	assert.ElementsMatch(t, []string{"__Host-keyward_csrf", "__Host-keyward_session"}, names)
	assert.Equal(t, http.StatusOK, b.do("GET", "/dashboard/", nil).status, "signed in")
}

// A login link opened from another site lands on the dashboard: its GET
// uses nothing (the browser would not send a SameSite=Strict cookie set
// on a cross-site navigation to where it is redirected), and its page's
// form, sent from this site, opens the session.
func TestLoginLinkFromAnotherSite(t *testing.T) {
	t.Parallel()
	e := operatorEnv(t)
	b := e.browser()
	link, err := e.h.LoginLink(time.Minute)
	require.NoError(t, err)
	for range 2 { // a cross-site GET, and again: nothing used up
		p := b.do("GET", link, nil, "Sec-Fetch-Site", "cross-site")
		require.Equal(t, http.StatusOK, p.status)
		assert.Contains(t, p.body, `<form class="stack" id="login-link" method="post" action="./login">`)
		assert.Empty(t, p.header.Get("Location"))
	}
	require.Equal(t, http.StatusSeeOther, b.openLink(link).status)
	assert.Equal(t, http.StatusOK, b.do("GET", "/dashboard/", nil).status)
}

// The dashboard's 405 names the methods its path takes, as the API's does.
func TestDashboard405HasAllow(t *testing.T) {
	t.Parallel()
	e := operatorEnv(t)
	b := e.browser()
	for path, allow := range map[string]string{"/dashboard/": "GET", "/dashboard/login": "GET, POST", "/dashboard/orgs/x/keys": "POST"} {
		p := b.do("DELETE", path, nil)
		assert.Equal(t, http.StatusMethodNotAllowed, p.status, path)
		assert.Equal(t, allow, p.header.Get("Allow"), path)
	}
}

// The API reads the documented fields only, in their case, each once:
// encoding/json alone would take "Name" for "name", and the last of two.
func TestJSONFieldsExactlyOnce(t *testing.T) {
	t.Parallel()
	e := operatorEnv(t)
	o := e.org("acme")
	before := e.snapshot()
	for _, body := range []string{`{"Name":"x"}`, `{"NAME":"x"}`, `{"name":"x","name":"y"}`, `{"name":"x","permissions":["*"],"permissions":[]}`,
		`{"name":"x","expiresinseconds":60}`} {
		e.call("POST", "/admin/v1/orgs/"+o.ID+"/keys", body).failed(t, http.StatusBadRequest, "validation_error", admin.ReasonMalformedJSON)
	}
	e.call("PATCH", "/admin/v1/orgs/"+o.ID, `{"Plan":"growth"}`).failed(t, http.StatusBadRequest, "validation_error", admin.ReasonMalformedJSON)
	e.call("POST", "/admin/v1/orgs/"+o.ID+"/credits/grants", `{"amount":1,"amount":1000000}`).
		failed(t, http.StatusBadRequest, "validation_error", admin.ReasonMalformedJSON)
	assert.Equal(t, before, e.snapshot(), "nothing changed")
	assert.Equal(t, http.StatusCreated, e.call("POST", "/admin/v1/orgs/"+o.ID+"/keys", `{"n\u0061me":"x"}`).status, "an escaped name is the name")
}

// A token file that becomes malformed is logged, with the line at fault:
// every token stops working (fail closed), and the operator is told why,
// once.
func TestMalformedTokenFileIsLogged(t *testing.T) {
	t.Parallel()
	e := &env{t: t, store: newStore(t)}
	e.path = filepath.Join(t.TempDir(), "admin-tokens")
	var err error
	e.token, _, err = admin.CreateToken(e.path, "ops", time.Now())
	require.NoError(t, err)
	tokens, err := admin.OpenTokenFile(e.path)
	require.NoError(t, err)
	var logs syncBuf
	cfg := admin.Config{Tokens: tokens}
	e.serve(cfg)
	// serve discards the log; make a handler that keeps it.
	h, err := admin.New(admin.Config{Tokens: tokens, Keys: e.store, Ledger: e.store, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Errors: &keyward.ErrorWriter{Logger: slog.New(slog.DiscardHandler)}})
	require.NoError(t, err)
	e.srv.Config.Handler = h
	require.Equal(t, http.StatusOK, e.call("GET", "/admin/v1/orgs", "").status)
	require.NoError(t, writeFile(e.path, "# tokens\nnot a token line\n"))
	for range 3 {
		assert.Equal(t, http.StatusUnauthorized, e.call("GET", "/admin/v1/orgs", "").status)
	}
	out := logs.String()
	assert.Contains(t, out, "admin token file")
	assert.Contains(t, out, "line 2")
	assert.Equal(t, 1, strings.Count(out, "line 2"), "logged once, not at every request: %s", out)
}

type syncBuf struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.lock()
	defer b.unlock()
	return b.buf.Write(p)
}

func (b *syncBuf) String() string {
	b.lock()
	defer b.unlock()
	return b.buf.String()
}

func (b *syncBuf) lock() {
	if b.mu == nil {
		b.mu = make(chan struct{}, 1)
	}
	b.mu <- struct{}{}
}
func (b *syncBuf) unlock() { <-b.mu }

// loads is a key store that remembers the organizations of the keys it
// loaded for the handler.
type loads struct {
	*sqlstore.Store
	mu   sync.Mutex
	orgs []string
}

func (l *loads) Key(ctx context.Context, orgID, keyID string) (manage.KeyInfo, error) {
	info, err := l.Store.Key(ctx, orgID, keyID)
	if err == nil {
		l.mu.Lock()
		l.orgs = append(l.orgs, info.Record.Org.ID)
		l.mu.Unlock()
	}
	return info, err
}

// Another organization's key id is not found by the same path as an
// absent one: the organization is part of the lookup, so the store never
// loads the other's key (whose loading made its answer ≈ 140 µs slower, a
// way to learn which ids exist).
func TestOtherOrganizationsKeyIsNeverLoaded(t *testing.T) {
	t.Parallel()
	e := &env{t: t, store: newStore(t)}
	l := &loads{Store: e.store}
	mine, theirs := e.org("mine"), e.org("theirs")
	theirKey := e.key(theirs.ID, "b")
	e.serve(admin.Config{OrgFor: func(r *http.Request) (string, error) { return mine.ID, nil }})
	h, err := admin.New(admin.Config{Keys: l, Ledger: e.store, OrgFor: func(r *http.Request) (string, error) { return mine.ID, nil },
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	e.srv.Config.Handler = h
	for _, path := range []string{"", "/usage", "/rotate", "/revoke"} {
		method, body := "GET", ""
		if path == "/rotate" || path == "/revoke" {
			method, body = "POST", "{}"
		}
		for _, id := range []string{theirKey.Record.ID, "key_0123456789abcdef01234567"} {
			a := e.call(method, "/admin/v1/orgs/"+mine.ID+"/keys/"+id+path, body)
			a.failed(t, http.StatusNotFound, admin.CodeNotFound, admin.ReasonKeyNotFound)
		}
	}
	assert.Empty(t, l.orgs, "no key was loaded")
}

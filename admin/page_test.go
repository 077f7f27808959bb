package admin_test

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/admin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// browser is an HTTP client with cookies that does not follow redirects.
type browser struct {
	t      *testing.T
	e      *env
	client *http.Client
}

func (e *env) browser() *browser {
	jar, err := cookiejar.New(nil)
	require.NoError(e.t, err)
	return &browser{t: e.t, e: e, client: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type pageAnswer struct {
	status int
	header http.Header
	body   string
}

func (b *browser) do(method, path string, form url.Values, header ...string) pageAnswer {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.e.srv.URL+path, body)
	require.NoError(b.t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := b.client.Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	if loc := resp.Header.Get("Location"); loc != "" {
		// The page's redirects are relative, as its links: resolved here
		// as a browser does, to the path they lead to.
		to, err := req.URL.Parse(loc)
		require.NoError(b.t, err)
		resp.Header.Set("Location", to.RequestURI())
	}
	return pageAnswer{status: resp.StatusCode, header: resp.Header, body: string(raw)}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token of a page's forms.
func (p pageAnswer) csrf(t *testing.T) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(p.body)
	require.NotNil(t, m, "no CSRF field in %s", p.body)
	return m[1]
}

var codeField = regexp.MustCompile(`name="code" value="([^"]+)"`)

// openLink opens a login link as a browser does: the link's page, then
// its form (which dashboard.js sends at once).
func (b *browser) openLink(link string) pageAnswer {
	b.t.Helper()
	p := b.do("GET", link, nil)
	require.Equal(b.t, http.StatusOK, p.status, p.body)
	m := codeField.FindStringSubmatch(p.body)
	require.NotNil(b.t, m, "no login link form in %s", p.body)
	return b.do("POST", "/dashboard/login", url.Values{"csrf": {p.csrf(b.t)}, "code": {html.UnescapeString(m[1])}})
}

// signIn opens a session with a one-time login link.
func (b *browser) signIn() {
	b.t.Helper()
	link, err := b.e.h.LoginLink(time.Minute)
	require.NoError(b.t, err)
	p := b.openLink(link)
	require.Equal(b.t, http.StatusSeeOther, p.status, p.body)
	require.Equal(b.t, "/dashboard/", p.header.Get("Location"))
}

// Every page carries the strict headers; a login link works once; a page
// without a session sends the browser to sign in.
func TestPageHeadersAndSignIn(t *testing.T) {
	t.Parallel()
	e := operatorEnv(t)
	b := e.browser()
	p := b.do("GET", "/dashboard/", nil)
	require.Equal(t, http.StatusSeeOther, p.status)
	assert.Equal(t, "/dashboard/login", p.header.Get("Location"))

	for _, bad := range []time.Duration{-time.Minute, 25 * time.Hour} {
		_, err := e.h.LoginLink(bad)
		require.Error(t, err, "a lifetime of %v", bad)
	}
	link, err := e.h.LoginLink(time.Minute)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, b.do("HEAD", link, nil).status, "a HEAD (a link preview) shows the page")
	assert.Equal(t, http.StatusOK, e.browser().do("GET", link, nil).status, "so does a GET (a prefetch)")
	require.Equal(t, http.StatusSeeOther, b.openLink(link).status, "and leaves the link usable")
	home := b.do("GET", "/dashboard/", nil)
	require.Equal(t, http.StatusOK, home.status)
	assert.Contains(t, home.body, "Organizations")
	csp := home.header.Get("Content-Security-Policy")
	assert.Contains(t, csp, "script-src 'self'")
	assert.NotContains(t, csp, "unsafe-inline")
	assert.Contains(t, csp, "frame-ancestors 'none'")
	assert.Equal(t, "no-store", home.header.Get("Cache-Control"))
	assert.Equal(t, "same-origin", home.header.Get("Referrer-Policy"), "no URL of the dashboard to another site, and its forms' Origin is not null")
	assert.NotRegexp(t, `<script>|<script [^>]*>[^<]|style="| on[a-z]+="`, home.body, "no inline script or style")

	other := e.browser()
	used := other.openLink(link)
	assert.Equal(t, http.StatusUnauthorized, used.status, "a login link works once")
	assert.Equal(t, http.StatusSeeOther, other.do("GET", "/dashboard/", nil).status)

	// The admin token signs in through the form, CSRF included.
	login := other.do("GET", "/dashboard/login", nil)
	bad := other.do("POST", "/dashboard/login", url.Values{"csrf": {login.csrf(t)}, "token": {"kwadmin_wrong"}})
	assert.Equal(t, http.StatusUnauthorized, bad.status)
	good := other.do("POST", "/dashboard/login", url.Values{"csrf": {login.csrf(t)}, "token": {e.token}})
	require.Equal(t, http.StatusSeeOther, good.status, good.body)
	assert.NotContains(t, good.body+bad.body, e.token)
	assert.Equal(t, http.StatusOK, other.do("GET", "/dashboard/", nil).status)

	css := b.do("GET", "/dashboard/static/dashboard.css", nil)
	assert.Equal(t, http.StatusOK, css.status)
	assert.Contains(t, css.header.Get("Content-Type"), "text/css")
	assert.Equal(t, http.StatusNotFound, b.do("GET", "/dashboard/static/admin.go", nil).status)
	ranged := b.do("GET", "/dashboard/static/dashboard.css", nil, "Range", "bytes=999999-")
	assert.Equal(t, http.StatusOK, ranged.status, "a range is ignored: the whole file")
	for _, path := range []string{"/dashboard/static/", "/dashboard/static/nope.js"} {
		missing := b.do("GET", path, nil)
		assert.Equal(t, http.StatusNotFound, missing.status, path)
		assert.NotContains(t, missing.body, `<a href="dashboard.css">`, "%s: no directory listing", path)
		assert.Contains(t, missing.body, "<!doctype html>", "%s: the dashboard's own 404 page", path)
	}
	escape := b.do("GET", "/dashboard/static/../../admin/admin.go", nil)
	assert.NotEqual(t, http.StatusOK, escape.status)
	assert.NotContains(t, escape.body, "package admin")
}

// The cookies are Secure on every request with SecureCookies (TLS ended
// by a proxy in front), and only on TLS requests without it.
func TestSecureCookies(t *testing.T) {
	t.Parallel()
	for _, secure := range []bool{false, true} {
		e := &env{t: t, store: newStore(t)}
		e.path = filepath.Join(t.TempDir(), "admin-tokens")
		_, _, err := admin.CreateToken(e.path, "ops", time.Now())
		require.NoError(t, err)
		tokens, err := admin.OpenTokenFile(e.path)
		require.NoError(t, err)
		e.serve(admin.Config{Tokens: tokens, SecureCookies: secure})
		resp, err := http.Get(e.srv.URL + "/dashboard/login") // plain HTTP
		require.NoError(t, err)
		resp.Body.Close()
		cookies := resp.Cookies()
		require.NotEmpty(t, cookies)
		for _, c := range cookies {
			assert.Equal(t, secure, c.Secure, "SecureCookies %v: %s", secure, c.Name)
			assert.True(t, c.HttpOnly)
		}
	}
}

// A dashboard session lives no longer than the admin token that opened
// it: once the token's line is deleted, the session's next page or form is
// refused and changes nothing, and the session stays ended if the line
// comes back. A session from a login link is not tied to a token.
func TestRevokedTokenEndsItsSessions(t *testing.T) {
	t.Parallel()
	e := operatorEnv(t)
	org := e.org("acme")
	byToken, byLink := e.browser(), e.browser()
	login := byToken.do("GET", "/dashboard/login", nil)
	require.Equal(t, http.StatusSeeOther, byToken.do("POST", "/dashboard/login", url.Values{"csrf": {login.csrf(t)}, "token": {e.token}}).status)
	link, err := e.h.LoginLink(0)
	require.NoError(t, err)
	require.Equal(t, http.StatusSeeOther, byLink.openLink(link).status)
	orgPage := byToken.do("GET", "/dashboard/orgs/"+org.ID, nil)
	require.Equal(t, http.StatusOK, orgPage.status)

	saved, err := os.ReadFile(e.path)
	require.NoError(t, err)
	require.NoError(t, writeFile(e.path, "# every token removed\n"))
	assert.Equal(t, http.StatusUnauthorized, e.call("GET", "/admin/v1/orgs", "").status)
	before := e.snapshot()
	made := byToken.do("POST", "/dashboard/orgs/"+org.ID+"/keys", url.Values{"csrf": {orgPage.csrf(t)}, "name": {"backdoor"}, "permissions": {"*"}})
	assert.NotEqual(t, http.StatusOK, made.status, made.body)
	assert.NotContains(t, made.body, "triq_")
	assert.Equal(t, before, e.snapshot(), "nothing changed")
	assert.Equal(t, http.StatusSeeOther, byToken.do("GET", "/dashboard/", nil).status, "sent to sign in")
	assert.Equal(t, http.StatusOK, byLink.do("GET", "/dashboard/", nil).status, "a login link's session is not a token's")

	require.NoError(t, writeFile(e.path, string(saved)))
	assert.Equal(t, http.StatusSeeOther, byToken.do("GET", "/dashboard/", nil).status, "the ended session stays ended")
}

// A form without its CSRF token, with another browser's, or from another
// site changes nothing.
func TestFormsNeedTheirCSRFToken(t *testing.T) {
	t.Parallel()
	e := operatorEnv(t)
	org := e.org("acme")
	k := e.key(org.ID, "prod")
	b, other := e.browser(), e.browser()
	b.signIn()
	other.signIn()
	theirs := other.do("GET", "/dashboard/", nil).csrf(t)
	mine := b.do("GET", "/dashboard/orgs/"+org.ID, nil).csrf(t)
	before := e.snapshot()
	revoke := "/dashboard/orgs/" + org.ID + "/keys/" + k.Record.ID + "/revoke"
	for name, c := range map[string]struct {
		form   url.Values
		header []string
	}{
		"no token":          {url.Values{}, nil},
		"another's token":   {url.Values{"csrf": {theirs}}, nil},
		"forged token":      {url.Values{"csrf": {strings.Repeat("A", 43)}}, nil},
		"another origin":    {url.Values{"csrf": {mine}}, []string{"Origin", "https://evil.example"}},
		"a cross-site form": {url.Values{"csrf": {mine}}, []string{"Sec-Fetch-Site", "cross-site"}},
	} {
		for _, path := range []string{revoke, "/dashboard/orgs", "/dashboard/orgs/" + org.ID + "/credits", "/dashboard/orgs/" + org.ID + "/keys"} {
			form := url.Values{"name": {"x"}, "amount": {"5"}}
			for k, v := range c.form {
				form[k] = v
			}
			p := b.do("POST", path, form, c.header...)
			assert.Equal(t, http.StatusForbidden, p.status, "%s %s", name, path)
			assert.Contains(t, p.body, "not sent from this dashboard", name)
		}
	}
	assert.Equal(t, before, e.snapshot(), "nothing changed")

	// With its token, the same form works.
	p := b.do("POST", revoke, url.Values{"csrf": {mine}})
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	info, err := e.store.Key(context.Background(), "", k.Record.ID)
	require.NoError(t, err)
	assert.False(t, info.Record.RevokedAt.IsZero())
}

// Through the page: create a key (shown once, never stored by the
// browser), rotate it, revoke the old one; the keys list shows hints only.
func TestPageKeyLifecycle(t *testing.T) {
	t.Parallel()
	e := operatorEnv(t)
	b := e.browser()
	b.signIn()
	home := b.do("GET", "/dashboard/", nil)
	created := b.do("POST", "/dashboard/orgs", url.Values{"csrf": {home.csrf(t)}, "name": {"acme"}, "plan": {"starter"}})
	require.Equal(t, http.StatusSeeOther, created.status, created.body)
	orgPath := created.header.Get("Location")
	orgPage := b.do("GET", orgPath, nil)
	require.Equal(t, http.StatusOK, orgPage.status)
	assert.Contains(t, orgPage.body, "300 requests/min")
	assert.Contains(t, orgPage.body, "No calls yet")
	form := b.do("GET", orgPath+"/keys/new", nil)

	made := b.do("POST", orgPath+"/keys", url.Values{"csrf": {form.csrf(t)}, "name": {"prod"}, "environment": {"live"},
		"permissions": {"transactions:enrich", "transactions:read"}, "expiresInDays": {"30"}})
	require.Equal(t, http.StatusSeeOther, made.status, made.body)
	assert.NotContains(t, made.body+made.header.Get("Location"), "triq_", "the key is not in the redirect")
	reveal := b.do("GET", made.header.Get("Location"), nil)
	require.Equal(t, http.StatusOK, reveal.status, reveal.body)
	assert.Equal(t, "no-store", reveal.header.Get("Cache-Control"))
	key := regexp.MustCompile(`id="new-key">(triq_[A-Za-z0-9]+)<`).FindStringSubmatch(reveal.body)
	require.NotNil(t, key, reveal.body)
	assert.Contains(t, reveal.body, "Key created.", "the flash confirms the action")
	again := b.do("GET", made.header.Get("Location"), nil)
	assert.NotContains(t, again.body, key[1], "a reload shows the key no more")
	assert.Contains(t, again.body, `id="already-shown"`)
	assert.NotContains(t, again.body, "Key created.", "a flash is shown once")
	list := b.do("GET", orgPath, nil)
	assert.NotContains(t, list.body, key[1], "the list shows the hint only")
	keyID := regexp.MustCompile(`data-key-id="([^"]+)"`).FindStringSubmatch(list.body)[1]
	detail := b.do("GET", orgPath+"/keys/"+keyID, nil)
	assert.Contains(t, detail.body, "transactions:enrich")

	rot := b.do("POST", orgPath+"/keys/"+keyID+"/rotate", url.Values{"csrf": {detail.csrf(t)}, "grace": {"3600"}})
	require.Equal(t, http.StatusSeeOther, rot.status, rot.body)
	assert.Contains(t, b.do("GET", rot.header.Get("Location"), nil).body, "keeps working for 1 hour")
	assert.Contains(t, b.do("GET", orgPath+"/keys/"+keyID, nil).body, "rotating</span> until")
	confirm := b.do("GET", orgPath+"/keys/"+keyID+"/revoke", nil)
	require.Equal(t, http.StatusOK, confirm.status)
	assert.Contains(t, confirm.body, "cannot be undone")
	done := b.do("POST", orgPath+"/keys/"+keyID+"/revoke", url.Values{"csrf": {confirm.csrf(t)}})
	require.Equal(t, http.StatusSeeOther, done.status)
	after := b.do("GET", done.header.Get("Location"), nil)
	assert.Contains(t, after.body, "Key revoked")
	assert.NotContains(t, after.body, keyID, "revoked keys are hidden by default")
	assert.Contains(t, b.do("GET", orgPath+"?status=revoked", nil).body, keyID)

	// A form with bad fields says so and changes nothing.
	before := e.snapshot()
	bad := b.do("POST", orgPath+"/keys", url.Values{"csrf": {form.csrf(t)}, "name": {""}, "environment": {"test"},
		"expiresInDays": {"99999999999"}})
	assert.Equal(t, http.StatusUnprocessableEntity, bad.status)
	assert.Regexp(t, `aria-invalid="true">\s*<span class="field-error" role="alert">key name is empty`, bad.body, "the problem beside its field")
	assert.Regexp(t, `value="test" checked`, bad.body, "what was typed is kept")
	assert.Equal(t, before, e.snapshot())
}

// In self-service mode the page shows the host's organization only.
func TestSelfServicePage(t *testing.T) {
	t.Parallel()
	e := selfServiceEnv(t)
	mine, theirs := e.org("mine"), e.org("theirs")
	theirKey := e.key(theirs.ID, "b")
	b := e.browser()
	assert.Equal(t, http.StatusUnauthorized, b.do("GET", "/dashboard/", nil).status, "not signed in by the host")
	as := []string{"X-Test-Org", mine.ID}
	home := b.do("GET", "/dashboard/", nil, as...)
	require.Equal(t, http.StatusSeeOther, home.status)
	assert.Equal(t, "/dashboard/orgs/"+mine.ID, home.header.Get("Location"))
	page := b.do("GET", "/dashboard/orgs/"+mine.ID, nil, as...)
	require.Equal(t, http.StatusOK, page.status)
	assert.NotContains(t, page.body, `id="grant"`, "operators grant credits")
	assert.NotContains(t, page.body, mine.ID+"</code>", "a customer is shown no ids")
	assert.Contains(t, page.body, "<li>5 requests per second</li>", "limits in words")
	page = b.do("GET", "/dashboard/orgs/"+mine.ID+"/keys/new", nil, as...)
	assert.Equal(t, http.StatusNotFound, b.do("GET", "/dashboard/orgs/"+theirs.ID, nil, as...).status)
	assert.Equal(t, http.StatusNotFound, b.do("GET", "/dashboard/orgs/"+mine.ID+"/keys/"+theirKey.Record.ID+"/revoke", nil, as...).status)
	before := e.snapshot()
	p := b.do("POST", "/dashboard/orgs/"+mine.ID+"/keys/"+theirKey.Record.ID+"/revoke", url.Values{"csrf": {page.csrf(t)}}, as...)
	assert.Equal(t, http.StatusNotFound, p.status)
	g := b.do("POST", "/dashboard/orgs/"+mine.ID+"/credits", url.Values{"csrf": {page.csrf(t)}, "amount": {"100"}}, as...)
	assert.Equal(t, http.StatusForbidden, g.status)
	assert.Equal(t, before, e.snapshot())
	assert.Equal(t, http.StatusNotFound, b.do("GET", "/dashboard/login", nil).status, "no sign-in of its own")
}

package e2e

import (
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// A login link opened from another site (a chat, a mail client on the
// web) lands on the dashboard, signed in: the browser sends no
// SameSite=Strict cookie on a cross-site navigation, so the link's page
// uses it with a form sent from the dashboard's own site.
func TestLoginLinkFromAnotherSite(t *testing.T) {
	b := newBrowser(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "keyward.db")
	tokens := filepath.Join(dir, "admin-tokens")
	run(t, "--db", db, "init")
	run(t, "admin", "token", "create", "--admin-tokens", tokens, "--name", "browser test")
	s := serve(t, "--db", db, "--admin-tokens", tokens)

	// Another site: localhost is not 127.0.0.1's site.
	other := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><title>chat</title><a id="link" href="` + s.login + `">sign in</a>`))
	}))
	l, err := net.Listen("tcp", "localhost:0")
	if err != nil {
		t.Fatal(err)
	}
	other.Listener = l
	other.Start()
	t.Cleanup(other.Close)
	_, port, _ := net.SplitHostPort(l.Addr().String())

	b.do(chromedp.Navigate("http://localhost:"+port+"/"), chromedp.Click(chromedp.CSS("#link")),
		chromedp.WaitVisible(chromedp.CSS("#create-org")))
	if got := b.eval(`location.pathname`); got != "/dashboard/" {
		t.Fatalf("landed on %s", got)
	}
	if strings.Contains(b.text("body"), "Sign in") && !strings.Contains(b.text("body"), "Organizations") {
		t.Fatal("landed on Sign in")
	}
	b.noConsoleErrors()
}

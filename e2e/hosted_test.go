package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/keyward/keyward"
	"github.com/keyward/keyward/admin"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/keyward/keyward/sqlstore/sqlite"
)

// host is a test host that gives keyward's dashboard to its customers:
// its own brand, mounted under /portal, shown in a frame of its own page,
// its sign-in naming the organization and the person (a cookie here), and
// an API whose calls the usage charts count.
type host struct {
	srv   *httptest.Server
	store *sqlstore.Store
	h     *admin.Handler
	logs  *syncBuffer
	org   keyward.Organization
}

func newHost(t *testing.T) *host {
	t.Helper()
	ctx := context.Background()
	store, err := sqlstore.Open(ctx, sqlite.DSN(filepath.Join(t.TempDir(), "keyward.db")),
		sqlstore.Options{MaxKeys: 1000, FlushInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	origin := "http://" + ln.Addr().String()
	hs := &host{store: store, logs: &syncBuffer{}}
	logger := slog.New(slog.NewTextHandler(hs.logs, nil))
	hs.h, err = admin.New(admin.Config{Keys: store, Ledger: store, Usage: store, History: store, Plans: store.Plans,
		Permissions: []string{"transactions:enrich", "transactions:read"},
		OrgFor: func(r *http.Request) (string, error) {
			c, err := r.Cookie("host_org")
			if err != nil {
				return "", err
			}
			return c.Value, nil
		},
		ActorFor: func(r *http.Request) string {
			if c, err := r.Cookie("host_user"); err == nil {
				return c.Value
			}
			return ""
		},
		Brand:  admin.Brand{Name: "Acme Cloud", Accent: "#6b2fa0", LogoURL: "/assets/logo.svg"},
		Prefix: "/portal", FrameAncestors: []string{origin},
		Errors: &keyward.ErrorWriter{Logger: logger}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	// As the README wires a host: the store as Usage records each call
	// and the key's last use.
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: store, Prefix: "triq_", Usage: store})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(hs.h.PagePath(), hs.h)
	mux.Handle(hs.h.APIPath(), hs.h)
	mux.HandleFunc("GET /assets/logo.svg", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/svg+xml")
		_, _ = w.Write([]byte(`<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><circle cx="14" cy="14" r="12" fill="#fff"/></svg>`))
	})
	mux.HandleFunc("GET /signin", func(w http.ResponseWriter, r *http.Request) { // the host's sign-in, in a test
		http.SetCookie(w, &http.Cookie{Name: "host_org", Value: hs.org.ID, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		http.SetCookie(w, &http.Cookie{Name: "host_user", Value: "ada@globex.example", Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		http.Redirect(w, r, "/portal/dashboard/", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /account", func(w http.ResponseWriter, r *http.Request) { // the host's page, framing the dashboard
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><link rel="icon" href="data:,"><title>Acme account</title><h1>Your account</h1>`+
			`<iframe id="portal" title="API keys" src="/portal/dashboard/" width="1000" height="700"></iframe>`)
	})
	mux.Handle("/v1/", auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	})))
	hs.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: mux}}
	hs.srv.Start()
	t.Cleanup(hs.srv.Close)
	hs.org, err = store.CreateOrg(ctx, manage.OrgSpec{Name: "Globex Corporation", Plan: "starter"})
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// signIn is the host's sign-in: cookies the host's OrgFor and ActorFor
// read.
func (hs *host) signIn(t *testing.T, b *browser) {
	t.Helper()
	b.do(chromedp.Navigate(hs.srv.URL+"/signin"), chromedp.WaitVisible(chromedp.CSS("#brand-name")))
}

// fits checks, at the viewport's width, that the page does not scroll
// sideways.
func (b *browser) fits(page string, width int) {
	b.t.Helper()
	sw, _ := strconv.Atoi(b.eval(`String(document.documentElement.scrollWidth)`))
	if sw > width {
		b.t.Errorf("%s at %d px: the document is %d px wide", page, width, sw)
	}
}

// TestHostedDashboard is the host's dashboard in a real browser, at a
// phone's width and a desktop's: branded and mounted under the host's
// prefix with relative links only, framed by the host's page; 500 keys
// paged and searched; a key made through the page and shown once (a
// reload creates nothing); its calls in its own usage chart; every page
// fitting the screen; the change recorded with the person who made it.
func TestHostedDashboard(t *testing.T) {
	hs := newHost(t)
	ctx := context.Background()
	for i := range 500 {
		if _, err := hs.store.CreateKey(ctx, manage.KeySpec{OrgID: hs.org.ID, Name: fmt.Sprintf("service %03d", i),
			Permissions: []string{"transactions:read"}}); err != nil {
			t.Fatal(err)
		}
	}
	b := newBrowser(t)
	hs.signIn(t, b)
	base := hs.srv.URL + "/portal/dashboard/"
	orgURL := base + "orgs/" + hs.org.ID
	shots := map[string]string{} // page → URL, shot at both widths at the end

	// The first page of 500 keys, in under 300 ms of server time.
	start := time.Now()
	b.do(chromedp.Navigate(orgURL), chromedp.WaitVisible(chromedp.CSS("#keys")))
	if rows := b.eval(`String(document.querySelectorAll("#keys tr[data-key-id]").length)`); rows != "25" {
		t.Errorf("the first page lists %s keys, want 25", rows)
	}
	timing := b.eval(`String(performance.getEntriesByType("navigation")[0].responseStart - performance.getEntriesByType("navigation")[0].requestStart)`)
	if ms, _ := strconv.ParseFloat(timing, 64); ms > 300 {
		t.Errorf("the first page of 500 keys took %.0f ms (wall %v)", ms, time.Since(start))
	} else {
		t.Logf("the first page of 500 keys: %.0f ms from request to response", ms)
	}
	if got := b.text("#brand-name"); got != "Acme Cloud" {
		t.Errorf("the header says %q", got)
	}
	if title := b.eval(`document.title`); !strings.HasSuffix(title, "· Acme Cloud") {
		t.Errorf("the title is %q", title)
	}
	absolute := `Array.from(document.querySelectorAll("[href],[src],[action]")).map(e => e.getAttribute("href") ?? e.getAttribute("src") ?? e.getAttribute("action")).filter(u => /^(\/|[a-z]+:)/i.test(u) && u !== "/assets/logo.svg").join(" ")`
	if abs := b.eval(absolute); abs != "" {
		t.Errorf("absolute links on the page: %s", abs)
	}
	if strings.Contains(b.eval(`document.body.innerText`), hs.org.ID) {
		t.Error("the customer is shown the organization's id")
	}
	shots["keys"] = orgURL

	// Find a key by search.
	b.do(chromedp.SetValue(chromedp.CSS("#search"), "SERVICE 417"), chromedp.Click(chromedp.CSS("#key-search button")))
	b.waitURL("search=SERVICE")
	if got := b.eval(`Array.from(document.querySelectorAll("#keys a.key-link")).map(a => a.textContent).join("|")`); got != "service 417" {
		t.Errorf("a search for SERVICE 417 lists %q", got)
	}
	b.do(chromedp.Navigate(orgURL + "?after=" + b.eval(`document.querySelector("#keys tr[data-key-id]")?.dataset.keyId || ""`)))

	// Create a key through the page: "Create key" is at the top.
	b.do(chromedp.Navigate(orgURL), chromedp.Click(chromedp.CSS("#create-key-link")), chromedp.WaitVisible(chromedp.CSS("#create-key")))
	shots["create-key"] = b.eval(`location.href`)
	b.do(chromedp.SetValue(chromedp.CSS("#key-name"), "mobile app"),
		chromedp.Click(chromedp.CSS(`input[name=permissions][value="transactions:enrich"]`)),
		chromedp.Click(chromedp.CSS("#create-key button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#new-key")))
	key := b.text("#new-key")
	revealURL := b.eval(`location.href`)
	keyID := b.eval(`document.querySelector("#to-key").dataset.keyId`)
	if !strings.HasPrefix(key, "triq_") || !strings.HasSuffix(revealURL, "/reveal") {
		t.Fatalf("the reveal page %s shows %q", revealURL, key)
	}
	if !strings.Contains(b.text("#flash"), "Key created") {
		t.Errorf("no flash confirms the creation")
	}
	b.screenshotAt("reveal", 1280)
	keysBefore, _ := hs.store.ListKeys(ctx, hs.org.ID, manage.KeyQuery{})
	b.do(chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#already-shown")))
	if strings.Contains(b.eval(`document.body.innerText`), key) {
		t.Error("a reload shows the key again")
	}
	keysAfter, _ := hs.store.ListKeys(ctx, hs.org.ID, manage.KeyQuery{})
	if len(keysAfter) != len(keysBefore) {
		t.Errorf("a reload of the reveal page made %d keys", len(keysAfter)-len(keysBefore))
	}
	shots["already-shown"] = revealURL

	// Calls with the key appear in its own usage chart.
	for range 3 {
		req, _ := http.NewRequest("GET", hs.srv.URL+"/v1/things", nil)
		req.Header.Set("X-API-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("a call with the new key: %d", resp.StatusCode)
		}
	}
	keyURL := orgURL + "/keys/" + keyID
	deadline := time.Now().Add(20 * time.Second)
	for {
		b.do(chromedp.Navigate(keyURL+"?range=24h"), chromedp.WaitVisible(chromedp.CSS("#key-facts")))
		got := b.eval(`String([...document.querySelectorAll('svg.chart-requests g.bucket')].reduce((n, g) => n + Number(g.getAttribute("data-served")), 0))`)
		if got == "3" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the key's chart of the last 24 hours shows %s served calls, want 3", got)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if n := b.eval(`String(document.querySelectorAll('svg.chart-requests g.bucket').length)`); n != "24" {
		t.Errorf("the last 24 hours in %s bars", n)
	}
	if used := b.eval(`[...document.querySelectorAll('#key-facts dt')].find(dt => dt.textContent === "Last used").nextElementSibling.textContent`); used == "never" {
		t.Error("the key's page says it was never used, after its calls")
	}
	shots["key"] = keyURL + "?range=24h"
	other := orgURL + "/keys/" + keysBefore[len(keysBefore)-1].ID
	b.do(chromedp.Navigate(other), chromedp.WaitVisible(chromedp.CSS("#usage-empty")))
	if !strings.Contains(b.text("#usage-empty"), "No calls yet") {
		t.Error("an unused key's usage does not say so")
	}

	// Edit the key; revoke it: each confirmed, the change recorded with
	// the person who made it.
	b.do(chromedp.Navigate(keyURL), chromedp.SetValue(chromedp.CSS("#edit-name"), "mobile app v2"),
		chromedp.Click(chromedp.CSS("#edit-key button[type=submit]")), chromedp.WaitVisible(chromedp.CSS("#flash")))
	if got := b.text("#key-name-heading"); got != "mobile app v2" {
		t.Errorf("after the edit the key is named %q", got)
	}
	b.do(chromedp.Click(chromedp.CSS("#revoke")), chromedp.WaitVisible(chromedp.CSS("#confirm-revoke")))
	shots["revoke"] = b.eval(`location.href`)
	b.do(chromedp.Click(chromedp.CSS("#confirm-revoke button")), chromedp.WaitVisible(chromedp.CSS("#flash")))
	if !strings.Contains(b.text("#flash"), "revoked") {
		t.Errorf("the flash says %q", b.text("#flash"))
	}
	logs := hs.logs.String()
	if !strings.Contains(logs, `actor=ada@globex.example action="key revoked" target=`+keyID) {
		t.Errorf("the revocation is not recorded with its actor:\n%s", logs)
	}
	if strings.Contains(logs, key) {
		t.Error("a key was logged")
	}

	// Framed by the host's own page.
	b.do(chromedp.Navigate(hs.srv.URL+"/account"), chromedp.Sleep(time.Second))
	if got := b.eval(`document.getElementById("portal").contentDocument?.getElementById("brand-name")?.textContent || ""`); got != "Acme Cloud" {
		t.Errorf("the framed dashboard shows %q", got)
	}

	// Every page fits a phone's width and a desktop's.
	for _, width := range []int{390, 1280} {
		b.do(chromedp.EmulateViewport(int64(width), 844))
		for name, u := range shots {
			b.do(chromedp.Navigate(u), chromedp.WaitReady(chromedp.CSS("main")))
			b.fits(name, width)
			b.screenshotAt(name, width)
		}
	}
	// The README's picture: the organization's page, as a desktop first
	// shows it.
	b.do(chromedp.EmulateViewport(1280, 1000), chromedp.Navigate(orgURL), chromedp.WaitVisible(chromedp.CSS("#keys")))
	shotCtx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	png, err := chromedp.Run(shotCtx, chromedp.CaptureScreenshot())
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, "dashboard.png"), png, 0o600); err != nil {
		t.Fatal(err)
	}
	b.noConsoleErrors()
	if out := os.Getenv("KEYWARD_SCREENSHOTS"); out != "" {
		copyScreenshots(t, b.dir, out)
	}
}

// waitURL waits until the page's URL contains part and the page is loaded.
func (b *browser) waitURL(part string) {
	b.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.eval(`location.href.includes(`+strconv.Quote(part)+`) && document.readyState === "complete" ? "yes" : "no"`) != "yes" {
		if time.Now().After(deadline) {
			b.t.Fatalf("the page did not reach a URL with %q", part)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// screenshotAt saves the page as name-WIDTH.
func (b *browser) screenshotAt(name string, width int) string {
	return b.screenshot(name + "-" + strconv.Itoa(width))
}

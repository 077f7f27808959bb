package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser is a headless Chromium with a fresh profile whose console is
// watched for errors.
type browser struct {
	t    *testing.T
	ctx  context.Context
	dir  string // screenshots
	shot int

	mu       sync.Mutex
	problems []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		acancel()
	})
	b := &browser{t: t, ctx: ctx, dir: t.TempDir()}
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting Chromium: %v", err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.mu.Lock()
				b.problems = append(b.problems, m.String()+" at "+m.URL)
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// do runs actions, with a bound on how long they may take.
func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("browser: text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

func (b *browser) eval(expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("browser: %s: %v", expr, err)
	}
	return s
}

// screenshot saves the page as the test's next PNG.
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	b.shot++
	path := filepath.Join(b.dir, fmt.Sprintf("%02d-%s.png", b.shot, name))
	if err := os.WriteFile(path, png, 0o600); err != nil {
		b.t.Fatal(err)
	}
	return path
}

// forget drops the console messages so far that contain what, expected
// ones.
func (b *browser) forget(what string) {
	time.Sleep(200 * time.Millisecond) // messages travel on their own
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems = slices.DeleteFunc(b.problems, func(m string) bool { return strings.Contains(m, what) })
}

// noConsoleErrors fails the test if a page wrote an error or threw.
func (b *browser) noConsoleErrors() {
	b.t.Helper()
	time.Sleep(200 * time.Millisecond) // messages travel on their own
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.problems) > 0 {
		b.t.Errorf("console errors:\n%s", strings.Join(b.problems, "\n"))
	}
}

// The whole dashboard, in a real browser against a real `keyward serve`:
// sign in with the login link, create an organization and a key through
// the page, read the key, call the API with it, see the call in the usage
// chart, rotate the key, revoke the old one, and get 401 revoked_api_key.
func TestDashboardInABrowser(t *testing.T) {
	b := newBrowser(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "keyward.db")
	tokens := filepath.Join(dir, "admin-tokens")
	run(t, "--db", db, "init")
	run(t, "admin", "token", "create", "--admin-tokens", tokens, "--name", "browser test")
	s := serve(t, "--db", db, "--admin-tokens", tokens)

	// Sign in: the link opens a session and lands on the organizations.
	b.do(chromedp.Navigate(s.login), chromedp.WaitVisible(chromedp.CSS("#create-org")))
	b.screenshot("organizations")

	// Create an organization through the form.
	b.do(
		chromedp.SetValue(chromedp.CSS("#org-name"), "Browser Corp"),
		chromedp.SetValue(chromedp.CSS("#org-plan"), "starter"),
		chromedp.Click(chromedp.CSS("#create-org button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#org-id")),
	)
	if got := b.text("h1"); got != "Browser Corp" {
		t.Fatalf("organization page is of %q", got)
	}
	orgURL := b.eval(`location.href`)
	b.screenshot("organization")

	// Create a key with the enrich permission; read it from the page.
	b.do(
		chromedp.Click(chromedp.CSS("#create-key-link")),
		chromedp.WaitVisible(chromedp.CSS("#create-key")),
		chromedp.SetValue(chromedp.CSS("#key-name"), "production"),
		chromedp.Click(chromedp.CSS(`input[name=permissions][value="transactions:enrich"]`)),
		chromedp.Click(chromedp.CSS("#create-key button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#new-key")),
	)
	key, keyID := b.text("#new-key"), b.text("#new-key-id")
	if !strings.HasPrefix(key, "triq_") {
		t.Fatalf("the page shows %q as the key", key)
	}
	b.screenshot("new-key")
	b.do(chromedp.Click(chromedp.CSS("button[data-copy]")))

	// The key works on the API.
	enrich := `{"title":"STARBUCKS STORE 1234 SEATTLE","country":"US","type":"expense"}`
	if status, reason := s.call(t, "POST", "/v1/transactions/enrich", key, enrich); status != 200 {
		t.Fatalf("a call with the new key: %d %s", status, reason)
	}
	// It lacks transactions:read: a 403 the chart shows apart.
	if status, _ := s.call(t, "GET", "/v1/transactions", key, ""); status != 403 {
		t.Fatalf("a call without the permission: %d", status)
	}

	// The calls appear in the usage chart once the counters are flushed.
	today := time.Now().UTC().Format(time.DateOnly)
	bar := fmt.Sprintf(`(document.querySelector('svg.chart-requests g.bucket[data-start="%s"]')||{getAttribute:()=>"0"})`, today)
	credits := fmt.Sprintf(`(document.querySelector('svg.chart-credits g.bucket[data-start="%s"]')||{getAttribute:()=>"0"})`, today)
	deadline := time.Now().Add(30 * time.Second)
	for {
		b.do(chromedp.Navigate(orgURL), chromedp.WaitVisible(chromedp.CSS("#org-id")))
		served, _ := strconv.Atoi(b.eval(bar + `.getAttribute("data-served")`))
		forbidden, _ := strconv.Atoi(b.eval(bar + `.getAttribute("data-forbidden")`))
		if served == 1 && forbidden == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the chart shows %d served and %d forbidden for %s, want 1 and 1", served, forbidden, today)
		}
		time.Sleep(time.Second)
	}
	if c := b.eval(credits + `.getAttribute("data-credits")`); c != "1" {
		t.Errorf("the chart shows %s credits spent today, want 1", c)
	}
	if used := b.text("#credits-text"); !strings.HasPrefix(used, "1 spent") {
		t.Errorf("credits: %q", used)
	}
	b.screenshot("usage")

	// Change the plan, the limits and overage on the organization's page:
	// choosing a plan with custom rates opens the limits; sent without
	// its rate, the form comes back with the problem beside the field and
	// the plan chosen kept; with it, the page shows the new settings.
	b.do(chromedp.Navigate(orgURL), chromedp.WaitVisible(chromedp.CSS("#org-settings")))
	b.eval(`(() => { const p = document.querySelector("#org-settings select[name=plan]"); p.value = "enterprise";
		p.dispatchEvent(new Event("change")); return "" })()`)
	if open := b.eval(`String(document.getElementById("limits").open)`); open != "true" {
		t.Error("choosing a plan with custom rates leaves the limits closed")
	}
	b.do(
		chromedp.Click(chromedp.CSS("#org-settings button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS(`#rate-minute[aria-invalid="true"] + .field-error`)),
	)
	if plan := b.eval(`document.querySelector("#org-settings select[name=plan]").value`); plan != "enterprise" {
		t.Errorf("the refused form shows the plan %q, want the one chosen", plan)
	}
	b.screenshot("org-refused")
	b.forget("status of 422") // the refused form's own answer, as a browser reports every 4xx
	b.do(
		chromedp.SetValue(chromedp.CSS("#rate-minute"), "6000"),
		chromedp.SetValue(chromedp.CSS("#monthly-credits"), "50000"),
		chromedp.Click(chromedp.CSS(`#org-settings input[name=allowOverage]`)),
		chromedp.Click(chromedp.CSS("#org-settings button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#flash")),
	)
	if plan := b.text("#org-plan-name"); plan != "enterprise" {
		t.Errorf("the organization's plan is %q after the change", plan)
	}
	if facts := b.eval(`document.querySelector(".facts").innerText`); !strings.Contains(facts, "6000") && !strings.Contains(facts, "6,000") ||
		!strings.Contains(facts, "allowed") {
		t.Errorf("the organization's facts after the change: %q", facts)
	}

	// Rotate from the key's page: a new key, the old one working for its
	// grace period.
	keyURL := orgURL + "/keys/" + keyID
	b.do(
		chromedp.Navigate(keyURL),
		chromedp.Click(chromedp.CSS("#rotate button")),
		chromedp.WaitVisible(chromedp.CSS("#new-key")),
	)
	rotated := b.text("#new-key")
	if !strings.HasPrefix(rotated, "triq_") || rotated == key {
		t.Fatalf("the rotated key is %q", rotated)
	}
	b.screenshot("rotated-key")
	if status, _ := s.call(t, "POST", "/v1/transactions/enrich", key, enrich); status != 200 {
		t.Fatalf("the old key during its grace period: %d", status)
	}
	if status, _ := s.call(t, "POST", "/v1/transactions/enrich", rotated, enrich); status != 200 {
		t.Fatalf("the rotated key: %d", status)
	}

	// Revoke the old key through its page, confirming.
	b.do(
		chromedp.Navigate(keyURL),
		chromedp.Click(chromedp.CSS("#revoke")),
		chromedp.WaitVisible(chromedp.CSS("#confirm-revoke")),
	)
	b.screenshot("confirm-revoke")
	b.do(
		chromedp.Click(chromedp.CSS("#confirm-revoke button")),
		chromedp.WaitVisible(chromedp.CSS("#flash")),
		chromedp.Navigate(keyURL),
		chromedp.WaitVisible(chromedp.CSS("#key-status")),
	)
	if status := b.text("#key-status"); status != "revoked" {
		t.Errorf("the page shows the old key as %q", status)
	}
	b.screenshot("revoked")
	if status, reason := s.call(t, "POST", "/v1/transactions/enrich", key, enrich); status != 401 || reason != "revoked_api_key" {
		t.Fatalf("the revoked key: %d %s, want 401 revoked_api_key", status, reason)
	}
	if status, _ := s.call(t, "POST", "/v1/transactions/enrich", rotated, enrich); status != 200 {
		t.Fatalf("the rotated key after the old one was revoked: %d", status)
	}
	// Every operator page fits a phone's width and a desktop's too.
	orgsURL, _, _ := strings.Cut(orgURL, "/orgs/")
	pages := map[string]string{"organizations": orgsURL + "/", "organization": orgURL, "key": keyURL,
		"create-key": orgURL + "/keys/new", "not-found": orgURL + "/keys/key_absent"}
	for _, width := range []int{390, 1280} {
		b.do(chromedp.EmulateViewport(int64(width), 844))
		for name, u := range pages {
			b.do(chromedp.Navigate(u), chromedp.WaitReady(chromedp.CSS("main")))
			b.fits(name, width)
		}
	}
	b.forget("status of 404") // the not-found page's own answer
	b.noConsoleErrors()
	if out := os.Getenv("KEYWARD_SCREENSHOTS"); out != "" { // for the README
		copyScreenshots(t, b.dir, out)
	}
	if strings.Contains(s.logs.String(), key) || strings.Contains(s.logs.String(), rotated) {
		t.Error("the server logged a key")
	}
}

func copyScreenshots(t *testing.T, from, to string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(from, "*.png"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil {
			err = os.WriteFile(filepath.Join(to, filepath.Base(f)), b, 0o644)
		}
		if err != nil {
			t.Error(err)
		}
	}
}

package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/keyward/keyward"
	"github.com/keyward/keyward/admin"
	"github.com/keyward/keyward/sqlstore"
	"github.com/keyward/keyward/sqlstore/sqlite"
	"github.com/keyward/keyward/usage"
)

// checker validates each answer of the admin API against the OpenAPI
// document the handler serves, and counts the operations it saw answer
// with success.
type checker struct {
	t      *testing.T
	doc    *openapi3.T
	router routers.Router
	next   http.Handler

	mu   sync.Mutex
	seen map[string]int // operationId → 2xx answers
	errs []string
}

func newChecker(t *testing.T, next http.Handler) *checker {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(admin.OpenAPI())
	if err != nil {
		t.Fatalf("loading the OpenAPI document: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("the document is OpenAPI %s, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the OpenAPI document is invalid: %v", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &checker{t: t, doc: doc, router: router, next: next, seen: map[string]int{}}
}

func (c *checker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	c.next.ServeHTTP(rec, r)
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
	if err := c.validate(r, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
		c.mu.Lock()
		c.errs = append(c.errs, fmt.Sprintf("%s %s → %d: %v\n%s", r.Method, r.URL, rec.Code, err, rec.Body.String()))
		c.mu.Unlock()
	}
}

// validate checks one answer against the document: its status is one the
// operation documents (or the default error), its body the schema's.
func (c *checker) validate(r *http.Request, status int, header http.Header, body []byte) error {
	route, params, err := c.router.FindRoute(r)
	if err != nil {
		// A route the document does not have must answer keyward's 404
		// or 405 envelope.
		if status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
			return fmt.Errorf("undocumented route answered: %v", err)
		}
		return c.validateError(header, body)
	}
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		return err
	}
	if status < 300 {
		c.mu.Lock()
		c.seen[route.Operation.OperationID]++
		c.mu.Unlock()
	}
	return nil
}

// validateError checks body against the document's error envelope.
func (c *checker) validateError(header http.Header, body []byte) error {
	if !strings.HasPrefix(header.Get("Content-Type"), "application/json") {
		return fmt.Errorf("content type %q", header.Get("Content-Type"))
	}
	v, err := decodeJSON(body)
	if err != nil {
		return err
	}
	return c.doc.Components.Schemas["ErrorEnvelope"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020())
}

func decodeJSON(b []byte) (any, error) {
	var v any
	err := jsonUnmarshal(b, &v)
	return v, err
}

// Every answer of the admin API, success and failure, on every route,
// matches the OpenAPI document the handler serves; every operation of the
// document answered with success at least once.
func TestAdminAPIMatchesItsOpenAPIDocument(t *testing.T) {
	ctx := context.Background()
	store, err := sqlstore.Open(ctx, sqlite.DSN(filepath.Join(t.TempDir(), "keyward.db")), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	tokenFile := filepath.Join(t.TempDir(), "admin-tokens")
	token, _, err := admin.CreateToken(tokenFile, "openapi", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := admin.OpenTokenFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	h, err := admin.New(admin.Config{Keys: store, Ledger: store, Usage: store, History: store, Plans: store.Plans, Tokens: tokens,
		Errors: &keyward.ErrorWriter{Logger: logger}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	c := newChecker(t, h)
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)

	call := func(method, path, body string, header ...string) map[string]any {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		v, _ := decodeJSON(raw)
		m, _ := v.(map[string]any)
		data, _ := m["data"].(map[string]any)
		return data
	}
	org := call("POST", "/admin/v1/orgs", `{"name":"acme","plan":"starter"}`)["id"].(string)
	o := "/admin/v1/orgs/" + org
	key := call("POST", o+"/keys", `{"name":"prod","permissions":["transactions:enrich"],"expiresInSeconds":3600}`)
	keyID := key["id"].(string)
	k := o + "/keys/" + keyID
	rec, err := store.LookupKey(ctx, keyward.Hash(key["key"].(string)))
	if err != nil {
		t.Fatal(err)
	}
	store.RecordOutcome(rec, usage.Served, 1, time.Now())
	store.RecordOutcome(rec, usage.RateLimited, 0, time.Now())
	if err := store.FlushUsage(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/admin/v1/openapi.json", ""},
		{"GET", "/admin/v1/orgs", ""},
		{"GET", o, ""},
		{"PATCH", o, `{"allowOverage":true,"monthlyCredits":50}`},
		{"GET", o + "/keys", ""}, {"GET", o + "/keys?search=pro&status=active,revoked&limit=5", ""}, {"GET", o + "/keys?status=all", ""},
		{"GET", k, ""},
		{"PATCH", k, `{"name":"production"}`},
		{"GET", o + "/usage?days=3", ""},
		{"GET", k + "/usage", ""},
		{"GET", o + "/credits", ""},
		{"POST", o + "/credits/grants", `{"amount":10,"note":"welcome"}`},
		{"GET", o + "/credits/ledger?limit=1", ""},
		{"POST", k + "/rotate", `{"graceSeconds":60}`},
		{"GET", k, ""}, // now with a successor
		{"POST", k + "/revoke", `{}`},
		// Failures: each status the API answers with.
		{"GET", "/admin/v1/orgs/org_unknown", ""},
		{"GET", o + "/keys/key_unknown", ""},
		{"POST", "/admin/v1/orgs", `{"name":`},
		{"POST", "/admin/v1/orgs", `{"name":""}`},
		{"POST", "/admin/v1/orgs", strings.Repeat(" ", admin.DefaultMaxBody+1)},
		{"POST", k + "/rotate", `{}`},
		{"GET", o + "/usage?days=0", ""},
		{"GET", "/admin/v1/nothing", ""},
		{"DELETE", k, ""},
	} {
		call(r.method, r.path, r.body)
	}
	call("GET", "/admin/v1/orgs", "", "Authorization", "Bearer kwadmin_wrong")
	call("POST", k+"/revoke", `{}`, "Content-Type", "text/plain")

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.errs {
		t.Error(e)
	}
	var missing []string
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			if c.seen[op.OperationID] == 0 {
				missing = append(missing, method+" "+path)
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("operations never answered with success: %v", missing)
	}
}

// The validator is not lenient: an answer with a member the document does
// not have, such as a key's hash, or without a required one, fails.
func TestTheValidatorRefusesWhatTheDocumentDoesNot(t *testing.T) {
	c := newChecker(t, http.NotFoundHandler())
	good := `{"success":true,"data":{"id":"key_1","orgId":"org_1","name":"n","environment":"live","hint":"triq_AbCd…wXyZ",
		"permissions":[],"ratePerMinute":0,"status":"active","createdAt":"2026-11-29T10:00:00Z","expiresAt":null,"revokedAt":null,
		"lastUsedAt":null},"meta":{"generatedAt":"2026-11-29T10:00:00Z","requestId":"r","version":"1.0.0"}}`
	req := httptest.NewRequest("GET", "/admin/v1/orgs/org_1/keys/key_1", nil)
	h := http.Header{"Content-Type": {"application/json"}}
	if err := c.validate(req, 200, h, []byte(good)); err != nil {
		t.Fatalf("a valid answer was refused: %v", err)
	}
	for name, bad := range map[string]string{
		"a hash":           strings.Replace(good, `"hint"`, `"hash":"ab12","hint"`, 1),
		"no status":        strings.Replace(good, `"status":"active",`, ``, 1),
		"an unknown state": strings.Replace(good, `"active"`, `"paused"`, 1),
		"no envelope":      `{"id":"key_1"}`,
	} {
		if err := c.validate(req, 200, h, []byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := c.validate(req, 418, h, []byte(`{"success":false}`)); err == nil {
		t.Error("an error that is not the envelope: accepted")
	}
}

package keywardtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
	"github.com/keyward/keyward/rate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ConformanceNow is the kit's clock: every clock of the Stack is stopped
// here, in the middle of a rate-limit window, so that the rate-limit
// headers, Retry-After and meta.generatedAt are the same in every run.
var ConformanceNow = time.Date(2026, 1, 19, 10, 30, 30, 0, time.UTC)

// ConformanceVersion is meta.version in the kit's error envelopes.
const ConformanceVersion = "1.0.0"

// conformance is one run's fixtures.
type conformance struct {
	stack   Stack
	store   *memstore.Store
	ledger  *memstore.Ledger
	orgs    []keyward.Organization
	keys    map[string]string // name → plaintext key
	keyOrg  map[string]keyward.Organization
	format  keyward.KeyFormat
	entered chan struct{} // the slow handler has started
	proceed chan struct{} // the slow handler may answer
}

// failingKeys is a KeyStore that fails for the hashes in down and asks
// store for the others.
type failingKeys struct {
	store keyward.KeyStore
	mu    sync.Mutex
	down  map[keyward.KeyHash]bool
}

func (f *failingKeys) LookupKey(ctx context.Context, h keyward.KeyHash) (*keyward.KeyRecord, error) {
	f.mu.Lock()
	down := f.down[h]
	f.mu.Unlock()
	if down {
		return nil, errors.New("keywardtest: key store unreachable")
	}
	return f.store.LookupKey(ctx, h)
}

// failingLedger is a credit.Ledger whose Reserve fails for one organization.
type failingLedger struct {
	credit.Ledger
	downOrg string
}

func (f *failingLedger) Reserve(ctx context.Context, req credit.ReserveRequest) (credit.Reservation, error) {
	if req.Account.OrgID == f.downOrg {
		return credit.Reservation{}, errors.New("keywardtest: ledger unreachable")
	}
	return f.Ledger.Reserve(ctx, req)
}

func newConformance(t *testing.T) *conformance {
	t.Helper()
	ctx := context.Background()
	clock := NewClock(ConformanceNow)
	discard := slog.New(slog.DiscardHandler)
	c := &conformance{
		keys:    map[string]string{},
		keyOrg:  map[string]keyward.Organization{},
		entered: make(chan struct{}),
		proceed: make(chan struct{}),
	}
	var err error
	c.store, err = memstore.New(memstore.Options{Prefix: "triq_", Now: clock.Now})
	require.NoError(t, err)
	c.format = c.store.Format()
	keys := &failingKeys{store: c.store, down: map[keyward.KeyHash]bool{}}
	cache, err := keyward.NewCache(keys, keyward.CacheConfig{TTL: time.Hour})
	require.NoError(t, err)
	t.Cleanup(cache.Close)
	c.store.Watch(cache)
	c.ledger, err = memstore.NewLedger(memstore.LedgerOptions{Now: clock.Now})
	require.NoError(t, err)

	ew := &keyward.ErrorWriter{
		Version: ConformanceVersion,
		Now:     func() time.Time { return ConformanceNow },
		RequestID: func(r *http.Request) string {
			if id := r.Header.Get("X-Request-Id"); id != "" {
				return id
			}
			return "req_conformance"
		},
		Logger: discard,
	}
	newOrg := func(n manage.OrgSpec) keyward.Organization {
		o, err := c.store.CreateOrg(ctx, n)
		require.NoError(t, err)
		c.orgs = append(c.orgs, o)
		return o
	}
	// The kit's requests share one instant: a per-second rate that never
	// binds, so that the per-minute quota of "tight" is the limit met.
	acme := newOrg(manage.OrgSpec{Name: "acme", Plan: "growth", MonthlyCredits: 1000, RatePerSecond: 1000})
	tight := newOrg(manage.OrgSpec{Name: "tight", Plan: "free", RatePerMinute: 2, RatePerSecond: 100})
	broke := newOrg(manage.OrgSpec{Name: "broke", Plan: "free", MonthlyCredits: 1, RatePerSecond: 100})
	down := newOrg(manage.OrgSpec{Name: "ledger-down", Plan: "free", RatePerSecond: 100})
	newKey := func(name string, org keyward.Organization, mutate func(*manage.KeySpec)) manage.CreatedKey {
		n := manage.KeySpec{OrgID: org.ID, Name: name, Permissions: []string{"transactions:enrich", "transactions:read"}}
		if mutate != nil {
			mutate(&n)
		}
		k, err := c.store.CreateKey(ctx, n)
		require.NoError(t, err)
		c.keys[name], c.keyOrg[name] = k.Key, org
		return k
	}
	newKey("production", acme, nil)
	newKey("read-only", acme, func(n *manage.KeySpec) { n.Permissions = []string{"transactions:read"} })
	newKey("test-env", acme, func(n *manage.KeySpec) { n.Environment = keyward.EnvTest })
	require.NoError(t, c.store.RevokeKey(ctx, newKey("revoked", acme, nil).Record.ID))
	clock.Set(ConformanceNow.Add(-2 * time.Hour))
	newKey("expired", acme, func(n *manage.KeySpec) { n.ExpiresIn = time.Hour })
	clock.Set(ConformanceNow)
	keys.down[newKey("store-down", acme, nil).Record.Hash] = true
	newKey("tight", tight, nil)
	newKey("broke", broke, nil)
	newKey("ledger-down", down, nil)

	s := &c.stack
	s.Errors = ew
	s.Auth, err = keyward.RequireAPIKey(keyward.AuthConfig{
		Keys: cache, Prefix: "triq_", Errors: ew, Now: clock.Now,
		Environments: []keyward.Environment{keyward.EnvLive},
	})
	require.NoError(t, err)
	s.Limiter, err = keyward.RateLimitByOrg(keyward.RateLimitConfig{Store: new(rate.Memory), Errors: ew, Now: clock.Now, Logger: discard})
	require.NoError(t, err)
	enrich, err := keyward.EnforcePermissions(keyward.PermissionConfig{Required: []string{"transactions:enrich"}, Errors: ew})
	require.NoError(t, err)
	ledger := &failingLedger{Ledger: c.ledger, downOrg: down.ID}
	s.Routes = c.routes(enrich, func(cfg keyward.CreditConfig) *keyward.Charger {
		cfg.Ledger, cfg.Errors, cfg.MaxIdempotentBody = ledger, ew, 64
		ch, err := keyward.ChargeCredits(cfg)
		require.NoError(t, err)
		return ch
	})
	return c
}

// appBody is what the kit's application handlers answer: who called, as
// keyward.FromContext sees it, and whether the call is being charged.
type appBody struct {
	OK      bool   `json:"ok"`
	Org     string `json:"org"`
	Key     string `json:"key"`
	Plan    string `json:"plan"`
	Charged bool   `json:"charged"`
	Cost    int64  `json:"cost,omitempty"`
	Bytes   int    `json:"bytes,omitempty"`
}

func answer(w http.ResponseWriter, r *http.Request, status int) {
	p, ok := keyward.FromContext(r.Context())
	body := appBody{OK: ok && status < 300}
	if ok {
		body.Org, body.Key, body.Plan = p.Org.Name, p.Name, p.Org.Plan
	}
	if ch, ok := keyward.ChargeFromContext(r.Context()); ok {
		body.Charged, body.Cost = true, ch.Cost()
	}
	if r.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		body.Bytes = len(b)
	}
	out, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(append(out, '\n'))
}

func (c *conformance) routes(enrich *keyward.PermissionChecker, charger func(keyward.CreditConfig) *keyward.Charger) []Route {
	one := charger(keyward.CreditConfig{Cost: 1})
	ew := c.stack.Errors
	status := func(code int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { answer(w, r, code) })
	}
	charged := func(path string, h http.Handler) Route {
		return Route{Method: http.MethodPost, Path: path, Auth: true, Limit: true, Charge: one, Handler: h}
	}
	return []Route{
		{Method: http.MethodPost, Path: "/v1/transactions/enrich", Auth: true, Permissions: enrich, Limit: true,
			Charge: one, Handler: status(http.StatusOK)},
		{Method: http.MethodGet, Path: "/v1/categories", Auth: true, Limit: true, Handler: status(http.StatusOK)},
		{Method: http.MethodGet, Path: "/v1/misconfigured", Limit: true, Handler: status(http.StatusOK)},
		charged("/v1/fail/500", status(http.StatusInternalServerError)),
		charged("/v1/fail/422", status(http.StatusUnprocessableEntity)),
		charged("/v1/panic", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			panic("keywardtest: the handler panicked")
		})),
		{Method: http.MethodPost, Path: "/v1/native", Auth: true, Limit: true, Charge: one,
			NativeFailure: http.StatusUnprocessableEntity},
		charged("/v1/empty", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})),
		charged("/v1/created", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusCreated)
		})),
		charged("/v1/stream", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_ = http.NewResponseController(w).Flush()
			_, _ = io.WriteString(w, "chunk\n")
		})),
		charged("/v1/gone", http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			cancelRequest(r.Context()) // the client goes away; nothing is written
		})),
		charged("/v1/slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(c.entered)
			<-c.proceed
			answer(w, r, http.StatusOK)
		})),
		charged("/v1/batch", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, _ := strconv.ParseInt(r.Header.Get("X-Batch-Size"), 10, 64)
			if err := keyward.SetCost(r.Context(), n); err != nil {
				ew.WriteError(w, r, err)
				return
			}
			answer(w, r, http.StatusOK)
		})),
		{Method: http.MethodPost, Path: "/v1/estimate", Auth: true, Limit: true,
			Charge: charger(keyward.CreditConfig{CostFunc: func(r *http.Request) (int64, error) {
				n, err := strconv.ParseInt(r.Header.Get("X-Cost"), 10, 64)
				if err != nil {
					return 0, keyward.Validation(http.StatusBadRequest, "X-Cost must be a whole number.", nil)
				}
				return n, nil
			}}),
			Handler: status(http.StatusOK)},
	}
}

// req describes one request of a case.
type req struct {
	method, path, key, body string
	header                  map[string]string
}

// want is what a case must get.
type want struct {
	status   int
	code     string // error.code; "" for a success
	reason   string // details.reason
	spent    int64
	credits  bool // X-Credits-Remaining is set, to the org's available credits
	limited  bool // the rate-limit headers are set
	panicked bool
	check    func(t *testing.T, rec *httptest.ResponseRecorder, env map[string]any)
}

type confCase struct {
	name string
	req  req
	want want
}

// RunConformance builds fresh fixtures and a Stack, builds the server with
// build, and sends it every case of the catalogue, one after the other: a
// 401 for each reason, 403 (permissions and environment), 429 with its
// headers, 402, 503 for a failing key store and ledger, 500 for a
// misconfiguration, the idempotency failures (400, 409, 413, 422), and
// successes with their rate-limit and credit headers; credits settled on
// the status actually sent (2xx committed; 4xx, 5xx, a panic, a
// framework's own failure and a client that went away released) and costs
// set by CostFunc and SetCost. Each case is a subtest that checks the answer
// against the catalogue; the Transcript returned lets a test compare two
// servers (SameTranscript).
func RunConformance(t *testing.T, build Builder) Transcript {
	t.Helper()
	c := newConformance(t)
	h, err := build(c.stack)
	require.NoError(t, err)
	var out Transcript
	for i, cc := range c.cases() {
		t.Run(cc.name, func(t *testing.T) {
			if cc.req.path == "/v1/slow" {
				out = append(out, c.runInFlight(t, h, i, cc)...)
				return
			}
			out = append(out, c.run(t, h, i, cc))
		})
	}
	return out
}

func (c *conformance) cases() []confCase {
	const enrich, categories = "/v1/transactions/enrich", "/v1/categories"
	wellFormed, _ := c.format.Generate()
	good := c.keys["production"]
	badSum := good[:len(good)-1] + "A" // the checksum no longer matches
	if strings.HasSuffix(good, "A") {
		badSum = good[:len(good)-1] + "B"
	}
	unauth := func(reason string) want {
		return want{status: 401, code: keyward.CodeAuthentication, reason: reason, check: func(t *testing.T, rec *httptest.ResponseRecorder, _ map[string]any) {
			assert.Equal(t, `APIKey header="X-API-Key"`, rec.Header().Get("Www-Authenticate"))
		}}
	}
	ok := want{status: 200, limited: true}
	charged := want{status: 200, limited: true, credits: true, spent: 1}
	released := func(status int) want { return want{status: status, limited: true} }
	return []confCase{
		{"401 missing key", req{path: categories}, unauth(keyward.ReasonMissingAPIKey)},
		{"401 blank key", req{path: categories, header: map[string]string{"X-API-Key": "  "}}, unauth(keyward.ReasonMissingAPIKey)},
		{"401 two keys", req{path: categories, key: "production", header: map[string]string{"X-API-Key": good}}, unauth(keyward.ReasonInvalidAPIKey)},
		{"401 wrong prefix", req{path: categories, header: map[string]string{"X-API-Key": "sk_live_0123456789abcdef"}}, unauth(keyward.ReasonInvalidAPIKeyFormat)},
		{"401 bad checksum", req{path: categories, header: map[string]string{"X-API-Key": badSum}}, unauth(keyward.ReasonInvalidAPIKey)},
		{"401 unknown key", req{path: categories, header: map[string]string{"X-API-Key": wellFormed}}, unauth(keyward.ReasonInvalidAPIKey)},
		{"401 revoked key", req{path: categories, key: "revoked"}, unauth(keyward.ReasonRevokedAPIKey)},
		{"401 expired key", req{path: categories, key: "expired"}, unauth(keyward.ReasonExpiredAPIKey)},
		{"403 environment", req{path: categories, key: "test-env"}, want{status: 403, code: keyward.CodeAuthorization, reason: keyward.ReasonEnvironmentNotAllowed}},
		{"403 permissions", req{method: http.MethodPost, path: enrich, key: "read-only"}, want{status: 403, code: keyward.CodeAuthorization, reason: keyward.ReasonMissingPermissions,
			check: func(t *testing.T, _ *httptest.ResponseRecorder, env map[string]any) {
				assert.Equal(t, []any{"transactions:enrich"}, details(env)["missing"])
			}}},
		{"503 key store down", req{path: categories, key: "store-down"}, want{status: 503, code: keyward.CodeServiceUnavailable,
			check: func(t *testing.T, rec *httptest.ResponseRecorder, _ map[string]any) {
				assert.Equal(t, "1", rec.Header().Get("Retry-After"))
			}}},
		{"500 limiter without RequireAPIKey", req{path: "/v1/misconfigured", key: "production"}, want{status: 500, code: keyward.CodeInternal}},
		{"200 not charged", req{path: categories, key: "production"}, ok},
		{"200 charged", req{method: http.MethodPost, path: enrich, key: "production", body: `{"title":"coffee"}`}, charged},
		{"200 tight 1", req{path: categories, key: "tight"}, ok},
		{"200 tight 2", req{path: categories, key: "tight"}, ok},
		{"429 tight 3", req{path: categories, key: "tight"}, want{status: 429, code: keyward.CodeRateLimited, limited: true,
			check: func(t *testing.T, rec *httptest.ResponseRecorder, env map[string]any) {
				assert.Equal(t, "60", rec.Header().Get("Retry-After"), "until the two calls are a minute old")
				assert.Equal(t, "rpm", rec.Header().Get("X-RateLimit-Scope"))
				assert.Equal(t, "0", rec.Header().Get("X-RateLimit-Remaining"), "the quota's, the limit that refused")
				assert.Equal(t, "2", rec.Header().Get("X-RateLimit-Limit"))
				assert.Equal(t, "2026-01-19T10:31:30Z", rec.Header().Get("X-RateLimit-Reset"), "when the quota admits again")
				assert.Contains(t, rec.Header().Get("RateLimit"), `"rpm";r=0;t=60`)
				d := details(env)
				assert.Equal(t, "rpm", d["scope"])
				assert.EqualValues(t, 2, d["limit"])
				assert.Equal(t, "2026-01-19T10:31:30Z", d["resetAt"])
				assert.EqualValues(t, 60, d["retryAfter"])
				assert.EqualValues(t, 60000, d["retryAfterMs"])
			}}},
		{"200 broke 1", req{method: http.MethodPost, path: enrich, key: "broke"}, charged},
		{"402 broke 2", req{method: http.MethodPost, path: enrich, key: "broke"}, want{status: 402, code: keyward.CodeInsufficientCredits, limited: true,
			check: func(t *testing.T, _ *httptest.ResponseRecorder, env map[string]any) {
				assert.EqualValues(t, 1, details(env)["creditsRequired"])
				assert.EqualValues(t, 0, details(env)["creditsRemaining"])
			}}},
		{"503 ledger down", req{method: http.MethodPost, path: enrich, key: "ledger-down"}, want{status: 503, code: keyward.CodeServiceUnavailable, limited: true}},
		{"400 bad idempotency key", req{method: http.MethodPost, path: enrich, key: "production", header: map[string]string{"Idempotency-Key": "not a key!"}},
			want{status: 400, code: keyward.CodeValidation, reason: keyward.ReasonInvalidIdempotencyKey, limited: true}},
		{"400 two idempotency keys", req{method: http.MethodPost, path: enrich, key: "production", header: map[string]string{"Idempotency-Key": "a", "X-Idempotency-Key": "b"}},
			want{status: 400, code: keyward.CodeValidation, reason: keyward.ReasonConflictingIdempotencyKeys, limited: true}},
		{"200 idempotent first", req{method: http.MethodPost, path: enrich, key: "production", body: `{"n":1}`, header: map[string]string{"Idempotency-Key": "order-1"}}, charged},
		{"200 idempotent replay", req{method: http.MethodPost, path: enrich, key: "production", body: `{"n":1}`, header: map[string]string{"Idempotency-Key": "order-1"}},
			want{status: 200, limited: true, credits: true, check: func(t *testing.T, rec *httptest.ResponseRecorder, _ map[string]any) {
				assert.Equal(t, "true", rec.Header().Get("Idempotent-Replayed"))
			}}},
		{"422 idempotency key reused", req{method: http.MethodPost, path: enrich, key: "production", body: `{"n":2}`, header: map[string]string{"Idempotency-Key": "order-1"}},
			want{status: 422, code: keyward.CodeValidation, reason: keyward.ReasonIdempotencyKeyReused, limited: true}},
		{"413 idempotent body too large", req{method: http.MethodPost, path: enrich, key: "production", body: strings.Repeat("x", 65), header: map[string]string{"Idempotency-Key": "order-2"}},
			want{status: 413, code: keyward.CodeValidation, reason: keyward.ReasonIdempotentBodyTooLarge, limited: true}},
		{"409 idempotency key in use", req{method: http.MethodPost, path: "/v1/slow", key: "production", header: map[string]string{"Idempotency-Key": "order-3"}},
			want{status: 409, code: keyward.CodeValidation, reason: keyward.ReasonIdempotencyKeyInUse, limited: true}},
		{"500 from handler released", req{method: http.MethodPost, path: "/v1/fail/500", key: "production"}, released(500)},
		{"422 from handler released", req{method: http.MethodPost, path: "/v1/fail/422", key: "production"}, released(422)},
		{"panic released", req{method: http.MethodPost, path: "/v1/panic", key: "production"}, want{status: 200, limited: true, panicked: true}},
		{"native 422 released", req{method: http.MethodPost, path: "/v1/native", key: "production"}, released(422)},
		{"200 nothing written charged", req{method: http.MethodPost, path: "/v1/empty", key: "production"}, charged},
		{"201 no body charged", req{method: http.MethodPost, path: "/v1/created", key: "production"}, want{status: 201, limited: true, credits: true, spent: 1}},
		{"200 flushed charged", req{method: http.MethodPost, path: "/v1/stream", key: "production"}, charged},
		{"client gone released", req{method: http.MethodPost, path: "/v1/gone", key: "production"}, released(200)},
		{"SetCost 5 charged", req{method: http.MethodPost, path: "/v1/batch", key: "production", header: map[string]string{"X-Batch-Size": "5"}},
			want{status: 200, limited: true, credits: true, spent: 5}},
		{"SetCost above balance 402 released", req{method: http.MethodPost, path: "/v1/batch", key: "production", header: map[string]string{"X-Batch-Size": "100000"}},
			want{status: 402, code: keyward.CodeInsufficientCredits, limited: true}},
		{"CostFunc 2 charged", req{method: http.MethodPost, path: "/v1/estimate", key: "production", header: map[string]string{"X-Cost": "2"}},
			want{status: 200, limited: true, credits: true, spent: 2}},
		{"CostFunc error 400", req{method: http.MethodPost, path: "/v1/estimate", key: "production", header: map[string]string{"X-Cost": "many"}},
			want{status: 400, code: keyward.CodeValidation, limited: true}},
		{"CostFunc negative 500", req{method: http.MethodPost, path: "/v1/estimate", key: "production", header: map[string]string{"X-Cost": "-1"}},
			want{status: 500, code: keyward.CodeInternal, limited: true}},
	}
}

func details(env map[string]any) map[string]any {
	e, _ := env["error"].(map[string]any)
	d, _ := e["details"].(map[string]any)
	return d
}

// request builds the request of case i.
func (c *conformance) request(i int, q req) (*http.Request, context.CancelFunc, string) {
	method := q.method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if q.body != "" {
		body = strings.NewReader(q.body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ctx = context.WithValue(ctx, cancelKey{}, cancel)
	r := httptest.NewRequestWithContext(ctx, method, q.path, body)
	r.Header.Set("X-Request-Id", fmt.Sprintf("req_%02d", i))
	presented := ""
	if q.key != "" {
		presented = c.keys[q.key]
		r.Header.Add("X-API-Key", presented)
	}
	for k, v := range q.header {
		r.Header.Add(k, v)
		if k == "X-API-Key" && strings.TrimSpace(v) != "" {
			presented = v
		}
	}
	return r, cancel, presented
}

// serve sends r to h as a server does, noting a panic that went on.
func serve(h http.Handler, r *http.Request) (rec *httptest.ResponseRecorder, panicked bool) {
	rec = httptest.NewRecorder()
	defer func() {
		if v := recover(); v != nil {
			panicked = true
		}
	}()
	h.ServeHTTP(rec, r)
	return rec, false
}

func (c *conformance) spent(t *testing.T) (spent int64) {
	t.Helper()
	for _, o := range c.orgs {
		b, err := c.ledger.Balance(context.Background(), o.Account())
		require.NoError(t, err)
		assert.Zero(t, b.Reserved, "credits still reserved for %s after the call", o.Name)
		spent += b.Spent
	}
	return spent
}

func (c *conformance) available(t *testing.T, o keyward.Organization) int64 {
	t.Helper()
	b, err := c.ledger.Balance(context.Background(), o.Account())
	require.NoError(t, err)
	return b.Available
}

func (c *conformance) run(t *testing.T, h http.Handler, i int, cc confCase) Exchange {
	t.Helper()
	before := c.spent(t)
	r, cancel, presented := c.request(i, cc.req)
	defer cancel()
	rec, panicked := serve(h, r)
	x := c.record(t, cc, rec, panicked, c.spent(t)-before)
	c.check(t, cc, rec, x, presented)
	return x
}

// runInFlight sends the case's request while the same request is in
// flight: the first is held in its handler until the second is answered.
func (c *conformance) runInFlight(t *testing.T, h http.Handler, i int, cc confCase) []Exchange {
	t.Helper()
	before := c.spent(t)
	first, cancel1, _ := c.request(i, cc.req)
	defer cancel1()
	done := make(chan *httptest.ResponseRecorder)
	go func() {
		rec, _ := serve(h, first)
		done <- rec
	}()
	select {
	case <-c.entered:
	case rec := <-done:
		t.Fatalf("the first request was answered %d without reaching its handler", rec.Code)
	case <-time.After(10 * time.Second):
		t.Fatal("the first request neither reached its handler nor was answered in 10s")
	}
	second, cancel2, presented := c.request(i, cc.req)
	defer cancel2()
	rec, panicked := serve(h, second)
	close(c.proceed)
	firstRec := <-done
	spent := c.spent(t) - before

	in := confCase{name: cc.name + " (the call in flight)", req: cc.req, want: want{status: 200, limited: true, credits: true, spent: 1}}
	x1 := c.record(t, in, firstRec, false, spent)
	c.check(t, in, firstRec, x1, presented)
	x2 := c.record(t, cc, rec, panicked, 0)
	c.check(t, cc, rec, x2, presented)
	return []Exchange{x2, x1}
}

func (c *conformance) record(t *testing.T, cc confCase, rec *httptest.ResponseRecorder, panicked bool, spent int64) Exchange {
	t.Helper()
	res := rec.Result()
	x := Exchange{Case: cc.name, Status: res.StatusCode, Header: res.Header, Body: rec.Body.String(), Spent: spent, Panicked: panicked}
	if c.native(cc.req.path) {
		x.Header, x.Body = onlyKeywardHeaders(res.Header), ""
	}
	return x
}

func (c *conformance) native(path string) bool {
	for _, rt := range c.stack.Routes {
		if rt.Path == path {
			return rt.NativeFailure != 0
		}
	}
	return false
}

// check holds an answer to the catalogue.
func (c *conformance) check(t *testing.T, cc confCase, rec *httptest.ResponseRecorder, x Exchange, presented string) {
	t.Helper()
	w := cc.want
	if x.Status == http.StatusNotFound && w.status != http.StatusNotFound {
		t.Error(errNoRoute)
	}
	assert.Equal(t, w.status, x.Status, "status; body: %s", x.Body)
	assert.Equal(t, w.panicked, x.Panicked, "a panic goes on past keyward")
	assert.Equal(t, w.spent, x.Spent, "credits spent")
	h := rec.Result().Header
	if presented != "" {
		assert.NotContains(t, x.Body, presented, "the key is echoed in the body")
		for k, vs := range h {
			for _, v := range vs {
				assert.NotContains(t, v, presented, "the key is echoed in header %s", k)
			}
		}
	}
	if w.limited {
		assert.NotEmpty(t, h.Get("X-RateLimit-Limit"), "X-RateLimit-Limit")
		if w.status != http.StatusTooManyRequests { // a 429's are the refusing limit's: its case checks them
			assert.Equal(t, "2026-01-19T10:30:31Z", h.Get("X-RateLimit-Reset"), "ISO-8601: when the per-second bucket is full")
		}
		assert.NotEmpty(t, h.Get("X-RateLimit-Concurrency-Limit"))
		assert.NotEmpty(t, h.Get("X-RateLimit-Concurrency-Remaining"))
		assert.Contains(t, h.Get("RateLimit-Policy"), `"rps";q=`)
		assert.Contains(t, h.Get("RateLimit-Policy"), `"concurrency";q=`)
		assert.Contains(t, h.Get("RateLimit"), `"rpm";r=`)
	} else {
		assert.Empty(t, h.Get("X-RateLimit-Limit"), "X-RateLimit-Limit on a response that did not pass the limiter")
	}
	if w.credits {
		org := c.keyOrg[cc.req.key]
		assert.Equal(t, strconv.FormatInt(c.available(t, org), 10), h.Get("X-Credits-Remaining"), "X-Credits-Remaining")
	} else {
		assert.Empty(t, h.Get("X-Credits-Remaining"), "X-Credits-Remaining on a call not charged")
	}
	var env map[string]any
	if w.code != "" {
		assert.Equal(t, "application/json; charset=utf-8", h.Get("Content-Type"))
		assert.Equal(t, "no-store", h.Get("Cache-Control"))
		assert.True(t, strings.HasPrefix(h.Get("X-Request-Id"), "req_"), "X-Request-Id %q", h.Get("X-Request-Id"))
		if assert.NoError(t, json.Unmarshal(rec.Body.Bytes(), &env), "body: %s", x.Body) {
			assert.Equal(t, false, env["success"])
			e, _ := env["error"].(map[string]any)
			assert.Equal(t, w.code, e["code"])
			if w.reason != "" {
				assert.Equal(t, w.reason, details(env)["reason"])
			}
			meta, _ := env["meta"].(map[string]any)
			assert.Equal(t, ConformanceNow.Format(time.RFC3339), meta["generatedAt"])
			assert.Equal(t, ConformanceVersion, meta["version"])
			assert.Equal(t, h.Get("X-Request-Id"), meta["requestId"])
		}
	} else if w.status == http.StatusOK && !w.panicked && x.Body != "" && strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		var body appBody
		if assert.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body)) {
			assert.True(t, body.OK, "the handler saw no Principal")
			assert.Equal(t, c.keyOrg[cc.req.key].Name, body.Org)
		}
	}
	if w.check != nil {
		w.check(t, rec, env)
	}
}

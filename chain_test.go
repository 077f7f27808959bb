package keyward_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
	"github.com/keyward/keyward/rate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// uniqueID returns an id no other test (nor another run of this one in
// the process) uses: the in-process rate-limit counters are shared by the
// whole process.
func uniqueID(prefix string) string {
	return prefix + strconv.FormatInt(uniqueIDs.Add(1), 10) + "_" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

var uniqueIDs atomic.Int64

// recovered runs h and turns a panic into a test failure.
func recovered(t *testing.T, h http.Handler, r *http.Request) (w *httptest.ResponseRecorder) {
	t.Helper()
	w = httptest.NewRecorder()
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("the handler panicked: %v", p)
		}
	}()
	h.ServeHTTP(w, r)
	return w
}

type foreignKey struct{}

// logLine returns the line of logs that carries requestID.
func logLine(t *testing.T, logs, requestID string) string {
	t.Helper()
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, requestID) {
			return l
		}
	}
	t.Fatalf("no log line has request id %s in:\n%s", requestID, logs)
	return ""
}

// Every handler that needs a caller answers 500 internal_error, naming the
// misconfiguration, when the request's context carries no usable key:
// none, a nil one, a hand-made record without an id, an organization id or
// limits, or a record under some other context key. None panics, none
// calls the next handler. RequireAPIKey makes its own state, whatever the
// context carried.
func TestHandlersRefuseAnUnusableKey(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 100, false)
	perms, err := keyward.EnforcePermissions(keyward.PermissionConfig{Required: []string{"transactions:enrich"}, Errors: f.errors})
	require.NoError(t, err)
	limiter, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{Errors: f.errors})
	require.NoError(t, err)
	charger := f.chargerFor(t, 1)

	limits := keyward.Limits{RequestsPerMinute: 60, MonthlyCredits: 100}
	rec := func(mutate func(*keyward.KeyRecord)) *keyward.KeyRecord {
		k := &keyward.KeyRecord{ID: uniqueID("key_"), Environment: keyward.EnvLive, Permissions: []string{"*"},
			Org: keyward.Organization{ID: uniqueID("org_"), Plan: "free", Limits: limits}}
		mutate(k)
		return k
	}
	noLimits := rec(func(k *keyward.KeyRecord) { k.Org.Limits = keyward.Limits{} })
	// A KeyStore of the host's may resolve limits no plan table allows:
	// out of range is misconfigured, never a panic nor served unlimited.
	huge := rec(func(k *keyward.KeyRecord) {
		k.Org.Limits = keyward.Limits{RequestsPerSecond: math.MaxInt64, RequestsPerMinute: math.MaxInt64, Concurrency: math.MaxInt64, MonthlyCredits: 100}
	})
	hugeKey := rec(func(k *keyward.KeyRecord) {
		k.Org.Limits = keyward.Limits{RequestsPerSecond: 1, RequestsPerMinute: 60, Concurrency: 1, MonthlyCredits: 100}
		k.RatePerMinute = keyward.MaxRatePerMinute + 1
	})
	const (
		noKey    = "needs RequireAPIKey in front of it"
		noIDs    = "without a key id or an organization id"
		noRate   = "has no limits"
		outRange = "at most rate.MaxPerMinute a minute"
		unpriced = "names the organization" // a 500 that names the organization
		served   = ""                       // the handler has nothing to object to
		internal = "internal_error"
	)
	for _, tc := range []struct {
		name string
		ctx  func(context.Context) context.Context
		// want is, per handler, the substring the 500's message must have,
		// or served.
		perms, limiter, charger string
		org                     string // named in the limiter's message
	}{
		{name: "no key", ctx: func(c context.Context) context.Context { return c },
			perms: noKey, limiter: noKey, charger: noKey},
		{name: "WithKey nil", ctx: func(c context.Context) context.Context { return keyward.WithKey(c, nil) },
			perms: noKey, limiter: noKey, charger: noKey},
		{name: "empty key id", ctx: func(c context.Context) context.Context {
			return keyward.WithKey(c, rec(func(k *keyward.KeyRecord) { k.ID = "" }))
		}, perms: noIDs, limiter: noIDs, charger: noIDs},
		{name: "empty organization id", ctx: func(c context.Context) context.Context {
			return keyward.WithKey(c, rec(func(k *keyward.KeyRecord) { k.Org.ID = "" }))
		}, perms: noIDs, limiter: noIDs, charger: noIDs},
		{name: "zero record", ctx: func(c context.Context) context.Context { return keyward.WithKey(c, &keyward.KeyRecord{}) },
			perms: noIDs, limiter: noIDs, charger: noIDs},
		{name: "no limits", ctx: func(c context.Context) context.Context { return keyward.WithKey(c, noLimits) },
			perms: served, limiter: noRate, charger: unpriced, org: noLimits.Org.ID},
		{name: "limits out of range", ctx: func(c context.Context) context.Context { return keyward.WithKey(c, huge) },
			perms: served, limiter: outRange, charger: served, org: huge.Org.ID},
		{name: "key's limit out of range", ctx: func(c context.Context) context.Context { return keyward.WithKey(c, hugeKey) },
			perms: served, limiter: outRange, charger: served, org: hugeKey.Org.ID},
		{name: "record under a foreign context key", ctx: func(c context.Context) context.Context {
			return context.WithValue(c, foreignKey{}, rec(func(*keyward.KeyRecord) {}))
		}, perms: noKey, limiter: noKey, charger: noKey},
		{name: "foreign context around WithKey nil", ctx: func(c context.Context) context.Context {
			return context.WithValue(keyward.WithKey(c, nil), foreignKey{}, 1)
		}, perms: noKey, limiter: noKey, charger: noKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, h := range []struct {
				name, want string
				mw         func(http.Handler) http.Handler
			}{
				{"EnforcePermissions", tc.perms, perms.Middleware},
				{"RateLimitByOrg", tc.limiter, limiter.Middleware},
				{"ChargeCredits", tc.charger, charger.Middleware},
			} {
				t.Run(h.name, func(t *testing.T) {
					var called bool
					next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called = true })
					r := httptest.NewRequest(http.MethodGet, "/v1/transactions", nil)
					r = r.WithContext(tc.ctx(r.Context()))
					w := recovered(t, h.mw(next), r)
					if h.want == served {
						assert.Equal(t, http.StatusOK, w.Code, w.Body.String())
						assert.True(t, called)
						return
					}
					require.Equal(t, http.StatusInternalServerError, w.Code, w.Body.String())
					assert.False(t, called, "the next handler ran")
					env := decodeEnvelope(t, w)
					assert.Equal(t, internal, env.Error.Code)
					assert.Contains(t, env.Error.Message, "misconfigured")
					// The client learns no more; the log names the problem,
					// under the same request id.
					logged := logLine(t, f.logs.String(), env.Meta.RequestID)
					switch h.want {
					case unpriced: // the organization is named below
					case noRate, outRange:
						assert.Contains(t, logged, h.want)
					default:
						assert.Contains(t, logged, h.want)
						assert.Contains(t, logged, h.name, "the log names the handler")
						assert.NotContains(t, env.Error.Message, h.want, "the client is not told the internals")
					}
					if tc.org != "" {
						assert.Contains(t, logged, tc.org, "the log names the organization")
					}
					assert.Empty(t, w.Header().Get("X-RateLimit-Limit"))
					assert.Empty(t, w.Header().Get(keyward.HeaderCreditsRemaining))
				})
			}
			// RequireAPIKey makes its own state: the caller it passes on is
			// the presented key, whatever the context carried.
			t.Run("RequireAPIKey", func(t *testing.T) {
				var got *keyward.KeyRecord
				h := f.auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					got, _ = keyward.FromContext(r.Context())
				}))
				r := f.request(context.Background(), "", nil)
				r = r.WithContext(tc.ctx(r.Context()))
				w := recovered(t, h, r)
				require.Equal(t, http.StatusOK, w.Code, w.Body.String())
				require.NotNil(t, got)
				assert.Equal(t, f.key.Record.ID, got.ID)
				assert.Equal(t, f.org.ID, got.Org.ID)
			})
		})
	}
	assert.Zero(t, f.balance(t).Spent)
	assert.Zero(t, f.balance(t).OpenReservations)
}

// A foreign middleware that wraps the request's context, between any two
// of keyward's handlers (or between all of them), changes nothing: the
// same answers, the same headers and the same charges.
func TestForeignMiddlewareAnywhereInTheChain(t *testing.T) {
	t.Parallel()
	type ctxKey struct{}
	foreign := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, 1)))
		})
	}
	same := func(h http.Handler) http.Handler { return h }
	type exchange struct {
		Code   int
		Header http.Header
		Body   string
	}
	type outcome struct {
		exchanges []exchange
		spent     int64
		available int64
	}
	// run serves one scripted conversation through the chain, with the
	// foreign middleware at the positions asked for: 0 between
	// RequireAPIKey and EnforcePermissions, 1 before RateLimitByOrg, 2
	// before ChargeCredits, 3 before the handler.
	run := func(t *testing.T, at ...int) outcome {
		f := newCreditFixture(t, 10, false)
		f.org.RatePerMinute, f.org.RatePerSecond = 5, 100 // the minute binds
		require.NoError(t, f.store.UpdateOrg(context.Background(), f.org))
		var err error
		f.org, err = f.store.Org(context.Background(), f.org.ID)
		require.NoError(t, err)
		bare := f.newKey(t, func(n *manage.KeySpec) { n.Permissions = nil })
		ew := &keyward.ErrorWriter{
			Now:       func() time.Time { return time.Date(2036, 1, 19, 10, 30, 0, 0, time.UTC) },
			RequestID: func(*http.Request) string { return "req" },
			Logger:    f.errors.Logger,
		}
		perms, err := keyward.EnforcePermissions(keyward.PermissionConfig{Required: []string{"transactions:enrich"}, Errors: ew})
		require.NoError(t, err)
		limiter, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{Store: new(rate.Memory), Errors: ew, Now: f.now.Now})
		require.NoError(t, err)
		charger, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: f.ledger, Errors: ew})
		require.NoError(t, err)
		wrap := [4]func(http.Handler) http.Handler{same, same, same, same}
		for _, i := range at {
			wrap[i] = foreign
		}
		handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Context().Value(ctxKey{}) == nil && len(at) > 0 {
				t.Error("the foreign middleware's value was lost")
			}
			k, ok := keyward.FromContext(r.Context())
			if !ok {
				t.Error("no key behind the chain")
				return
			}
			ch, ok := keyward.ChargeFromContext(r.Context())
			if !ok {
				t.Error("no charge behind the chain")
				return
			}
			if err := keyward.SetCost(r.Context(), 3); err != nil {
				ew.WriteError(w, r, err)
				return
			}
			fmt.Fprintf(w, "%t %t cost %d", k.Org.ID == f.org.ID, k.ID == f.key.Record.ID, ch.Cost())
		})
		h := f.auth.Middleware(wrap[0](perms.Middleware(wrap[1](limiter.Middleware(wrap[2](charger.Middleware(wrap[3](handler))))))))
		var out outcome
		// Three calls of 3 credits; the fourth and fifth cannot pay their
		// 3 (one credit left): 402 from SetCost; a key without the
		// permission: 403 (not counted); the sixth counted call: 429.
		for _, key := range []string{f.key.Key, f.key.Key, f.key.Key, f.key.Key, f.key.Key, bare.Key, f.key.Key} {
			r := httptest.NewRequest(http.MethodPost, "/v1/transactions", nil)
			r.Header.Set("X-API-Key", key)
			r.Header.Set("X-Request-Id", "req")
			w := recovered(t, h, r)
			out.exchanges = append(out.exchanges, exchange{w.Code, w.Header(), w.Body.String()})
		}
		b := f.balance(t)
		out.spent, out.available = b.Spent, b.Available
		assert.Zero(t, b.OpenReservations)
		return out
	}
	want := run(t)
	// The script does what it says, so that the comparisons below are
	// worth something.
	codes := make([]int, len(want.exchanges))
	for i, e := range want.exchanges {
		codes[i] = e.Code
	}
	require.Equal(t, []int{200, 200, 200, 402, 402, 403, 429}, codes)
	assert.Equal(t, "true true cost 3", want.exchanges[0].Body)
	assert.Equal(t, []string{"7"}, want.exchanges[0].Header[keyward.HeaderCreditsRemaining])
	assert.Equal(t, []string{"1"}, want.exchanges[2].Header[keyward.HeaderCreditsRemaining])
	for _, name := range []string{"X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset", "X-Ratelimit-Concurrency-Limit",
		"X-Ratelimit-Concurrency-Remaining", "Ratelimit-Policy", "Ratelimit"} {
		assert.NotEmpty(t, want.exchanges[0].Header[name], name)
		assert.NotEmpty(t, want.exchanges[6].Header[name], name)
	}
	assert.Equal(t, []string{"100"}, want.exchanges[0].Header["X-Ratelimit-Limit"])
	assert.Equal(t, []string{"99"}, want.exchanges[0].Header["X-Ratelimit-Remaining"])
	assert.Equal(t, []string{"rpm"}, want.exchanges[6].Header["X-Ratelimit-Scope"])
	assert.Equal(t, int64(9), want.spent)
	assert.Equal(t, int64(1), want.available)

	for _, at := range [][]int{{0}, {1}, {2}, {3}, {0, 1, 2, 3}} {
		t.Run(fmt.Sprint("at=", at), func(t *testing.T) {
			t.Parallel()
			got := run(t, at...)
			require.Len(t, got.exchanges, len(want.exchanges))
			for i := range want.exchanges {
				assert.Equal(t, want.exchanges[i].Code, got.exchanges[i].Code, "call %d", i)
				assert.Equal(t, want.exchanges[i].Header, got.exchanges[i].Header, "call %d", i)
				assert.Equal(t, want.exchanges[i].Body, got.exchanges[i].Body, "call %d", i)
			}
			assert.Equal(t, want.spent, got.spent)
			assert.Equal(t, want.available, got.available)
		})
	}
}

// Two RateLimiters without a Store (two routes) count one organization's
// requests in one budget: the process's. A clock of their own is only a
// clock: it does not decide whether they share.
func TestRateLimitersShareTheProcessCounters(t *testing.T) {
	t.Parallel()
	for name, now := range map[string]func() time.Time{"system clock": nil, "a clock of their own": time.Now} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testRateLimitersShare(t, keyward.RateLimitConfig{Now: now})
		})
	}
}

func testRateLimitersShare(t *testing.T, cfg keyward.RateLimitConfig) {
	f := newFixture(t) // a free organization: one a second
	k := f.newKey(t)
	a, err := keyward.RateLimitByOrg(cfg)
	require.NoError(t, err)
	b, err := keyward.RateLimitByOrg(cfg)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("GET /a", f.auth.Middleware(a.Middleware(okHandler)))
	mux.Handle("GET /b", f.auth.Middleware(b.Middleware(okHandler)))
	call := func(path string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.Header.Set("X-API-Key", k.Key)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}
	w := call("/a")
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "1", w.Header().Get("X-RateLimit-Limit"))
	require.Equal(t, http.StatusOK, call("/a").Code, "free: a burst of 2")
	w = call("/b")
	require.Equal(t, http.StatusTooManyRequests, w.Code, "the tokens /a took are the organization's")
	assert.Equal(t, "rps", w.Header().Get("X-RateLimit-Scope"))
	assert.Contains(t, w.Header().Get("RateLimit"), `"rpm";r=58;`)
}

// A nil plan table is DefaultPlans() everywhere: in Plans' methods, in
// manage.NewOrg and in memstore, and so in what the handlers enforce.
func TestNilPlansAreTheDefaults(t *testing.T) {
	t.Parallel()
	var nilPlans *keyward.Plans
	growth := keyward.Organization{ID: "o", Name: "g", Plan: "growth"}
	l, err := nilPlans.Resolve(growth)
	require.NoError(t, err)
	assert.Equal(t, keyward.Limits{RequestsPerSecond: 10, RequestsPerMinute: 600, Burst: 10, Concurrency: 10, MonthlyCredits: 25_000}, l)
	p, ok := nilPlans.Plan("business")
	assert.True(t, ok)
	assert.Equal(t, keyward.Limits{RequestsPerSecond: 20, RequestsPerMinute: 1_200, Concurrency: 20, MonthlyCredits: 100_000}, p.Limits,
		"the burst is the default")
	_, err = nilPlans.Resolve(keyward.Organization{Plan: "platinum"})
	assert.Error(t, err)

	o, err := manage.NewOrg("org_1", manage.OrgSpec{Name: "g", Plan: "growth"}, nil)
	require.NoError(t, err)
	assert.Equal(t, keyward.Limits{RequestsPerSecond: 10, RequestsPerMinute: 600, Burst: 10, Concurrency: 10, MonthlyCredits: 25_000}, o.Limits)
	assert.NoError(t, manage.CheckOrg(growth, nil))

	store, err := memstore.New(memstore.Options{Prefix: "triq_", Plans: nil})
	require.NoError(t, err)
	org, err := store.CreateOrg(context.Background(), manage.OrgSpec{Name: "g", Plan: "growth"})
	require.NoError(t, err)
	assert.Equal(t, keyward.Limits{RequestsPerSecond: 10, RequestsPerMinute: 600, Burst: 10, Concurrency: 10, MonthlyCredits: 25_000}, org.Limits)
	key, err := store.CreateKey(context.Background(), manage.KeySpec{OrgID: org.ID, Name: "k"})
	require.NoError(t, err)
	rec, err := store.LookupKey(context.Background(), key.Record.Hash)
	require.NoError(t, err)
	assert.Equal(t, keyward.Limits{RequestsPerSecond: 10, RequestsPerMinute: 600, Burst: 10, Concurrency: 10, MonthlyCredits: 25_000}, rec.Org.Limits)
	assert.Equal(t, int64(25_000), rec.Org.Account().Allocation)

	// And the handlers enforce them.
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: store, Prefix: "triq_"})
	require.NoError(t, err)
	limiter, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{})
	require.NoError(t, err)
	ledger, err := memstore.NewLedger(memstore.LedgerOptions{})
	require.NoError(t, err)
	charger, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: ledger})
	require.NoError(t, err)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-API-Key", key.Key)
	w := httptest.NewRecorder()
	auth.Middleware(limiter.Middleware(charger.Middleware(okHandler))).ServeHTTP(w, r)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.Equal(t, "10", w.Header().Get("X-RateLimit-Limit"))
	assert.Equal(t, "24999", w.Header().Get(keyward.HeaderCreditsRemaining))
}

// The plan table refuses what it cannot resolve, all at once.
func TestNewPlansReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := keyward.NewPlans(
		keyward.Plan{Name: "x", Limits: keyward.Limits{RequestsPerMinute: -1}},
		keyward.Plan{Name: "y", Limits: keyward.Limits{MonthlyCredits: -5}},
		keyward.Plan{Name: "y"},
		keyward.Plan{},
	)
	require.Error(t, err)
	var ce *keyward.ConfigError
	assert.ErrorAs(t, err, &ce)
	for _, want := range []string{`Plans["x"] has a limit out of range: rate -1`, `Plans["y"] has a limit out of range: credits -5`, `Plans["y"] is named twice`, "without a name"} {
		assert.Contains(t, err.Error(), want)
	}
	_, err = keyward.NewPlans()
	assert.ErrorContains(t, err, "empty")
}

func TestPlansResolve(t *testing.T) {
	t.Parallel()
	plans, err := keyward.NewPlans(
		keyward.Plan{Name: "pro", Limits: keyward.Limits{RequestsPerMinute: 10, MonthlyCredits: 50}},
		keyward.Plan{Name: "custom"},
		keyward.Plan{Name: "basic", Limits: keyward.Limits{RequestsPerMinute: 1}},
		keyward.Plan{Name: "steady", Limits: keyward.Limits{RequestsPerSecond: 4, RequestsPerMinute: 240, Burst: 1, Concurrency: 3}},
	)
	require.NoError(t, err)
	for _, tc := range []struct {
		org  keyward.Organization
		want keyward.Limits
		err  string
	}{
		// A per-second rate, in-flight cap and burst not given are derived:
		// the minute spread over 60 s, rounded up; that, at least 2; the
		// larger of the two (what may be in flight may start together).
		{keyward.Organization{Plan: "pro"}, keyward.Limits{RequestsPerSecond: 1, RequestsPerMinute: 10, Burst: 2, Concurrency: 2, MonthlyCredits: 50}, ""},
		{keyward.Organization{Plan: "pro", RatePerMinute: 99}, keyward.Limits{RequestsPerSecond: 2, RequestsPerMinute: 99, Burst: 2, Concurrency: 2, MonthlyCredits: 50}, ""},
		{keyward.Organization{Plan: "pro", RatePerMinute: 6000}, keyward.Limits{RequestsPerSecond: 100, RequestsPerMinute: 6000, Burst: 100, Concurrency: 100, MonthlyCredits: 50}, ""},
		{keyward.Organization{Plan: "pro", RatePerSecond: 7, Concurrency: 3}, keyward.Limits{RequestsPerSecond: 7, RequestsPerMinute: 10, Burst: 7, Concurrency: 3, MonthlyCredits: 50}, ""},
		{keyward.Organization{Plan: "pro", RatePerSecond: 1, Concurrency: 5}, keyward.Limits{RequestsPerSecond: 1, RequestsPerMinute: 10, Burst: 5, Concurrency: 5, MonthlyCredits: 50}, ""},
		{keyward.Organization{Plan: "pro", Burst: 9}, keyward.Limits{RequestsPerSecond: 1, RequestsPerMinute: 10, Burst: 9, Concurrency: 2, MonthlyCredits: 50}, ""},
		{keyward.Organization{Plan: "pro", MonthlyCredits: 7}, keyward.Limits{RequestsPerSecond: 1, RequestsPerMinute: 10, Burst: 2, Concurrency: 2, MonthlyCredits: 7}, ""},
		{keyward.Organization{Plan: "custom", RatePerMinute: 5}, keyward.Limits{RequestsPerSecond: 1, RequestsPerMinute: 5, Burst: 2, Concurrency: 2}, ""},
		// A plan's burst holds, whatever its rate; an organization's override wins.
		{keyward.Organization{Plan: "steady"}, keyward.Limits{RequestsPerSecond: 4, RequestsPerMinute: 240, Burst: 1, Concurrency: 3}, ""},
		{keyward.Organization{Plan: "steady", Burst: 6}, keyward.Limits{RequestsPerSecond: 4, RequestsPerMinute: 240, Burst: 6, Concurrency: 3}, ""},
		{keyward.Organization{Plan: "pro", Burst: -1}, keyward.Limits{}, "burst -1 is out of range"},
		{keyward.Organization{Plan: "pro", Burst: keyward.MaxRatePerMinute + 1}, keyward.Limits{}, "burst 1000000001 is out of range"},
		{keyward.Organization{Plan: "pro", RatePerSecond: -1}, keyward.Limits{}, "rate -1/s is out of range"},
		{keyward.Organization{Plan: "pro", RatePerSecond: keyward.MaxRatePerMinute/60 + 1}, keyward.Limits{}, "out of range"},
		{keyward.Organization{Plan: "pro", Concurrency: -1}, keyward.Limits{}, "in-flight cap -1 is out of range"},
		{keyward.Organization{Plan: "custom"}, keyward.Limits{}, "custom rate"},
		{keyward.Organization{Plan: "free"}, keyward.Limits{}, `"free"`},
		{keyward.Organization{Plan: "pro", RatePerMinute: -1}, keyward.Limits{}, "out of range"},
		{keyward.Organization{Plan: "pro", MonthlyCredits: -1}, keyward.Limits{}, "out of range"},
	} {
		got, err := plans.Resolve(tc.org)
		if tc.err != "" {
			assert.ErrorContains(t, err, tc.err, "%+v", tc.org)
			continue
		}
		require.NoError(t, err, "%+v", tc.org)
		assert.Equal(t, tc.want, got, "%+v", tc.org)
	}
	// The store resolves with its own table.
	store, err := memstore.New(memstore.Options{Prefix: "triq_", Plans: plans})
	require.NoError(t, err)
	_, err = store.CreateOrg(context.Background(), manage.OrgSpec{Name: "a", Plan: "free"})
	assert.ErrorContains(t, err, `"free"`)
	org, err := store.CreateOrg(context.Background(), manage.OrgSpec{Name: "a", Plan: "pro", MonthlyCredits: 7})
	require.NoError(t, err)
	assert.Equal(t, keyward.Limits{RequestsPerSecond: 1, RequestsPerMinute: 10, Burst: 2, Concurrency: 2, MonthlyCredits: 7}, org.Limits)
	assert.True(t, strings.HasPrefix(org.ID, "org_"))
}

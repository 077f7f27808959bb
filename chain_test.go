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

// Zero values of the exported decisions answer 500; none lets a request
// through or panics.
func TestZeroDecisionsAnswer500(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.newKey(t)
	rec, err := f.store.LookupKey(context.Background(), keyward.Hash(k.Key))
	require.NoError(t, err)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-API-Key", k.Key)
	r = keyward.AttachKey(r, rec)
	for name, mw := range map[string]func(http.Handler) http.Handler{
		"Authenticator":     new(keyward.Authenticator).Middleware,
		"PermissionChecker": new(keyward.PermissionChecker).Middleware,
		"Charger":           new(keyward.Charger).Middleware,
	} {
		w := httptest.NewRecorder()
		require.NotPanics(t, func() {
			mw(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Errorf("%s let a request through", name) })).ServeHTTP(w, r)
		}, name)
		assert.Equal(t, http.StatusInternalServerError, w.Code, name)
	}
	w := httptest.NewRecorder()
	new(keyward.RateLimiter).Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(w, r)
	assert.Equal(t, http.StatusOK, w.Code, "a zero RateLimiter counts in the process's counters")
	var ch keyward.Charge
	assert.ErrorIs(t, ch.Settle(200), keyward.ErrNoCharge)
	assert.ErrorIs(t, ch.SetCost(1), keyward.ErrNoCharge)
	_, err = new(keyward.RateLimiter).Allow(context.Background(), nil, time.Now())
	assert.Error(t, err)

	// A zero Charge runs next and settles nothing; a panic in next goes on.
	ran := false
	require.NotPanics(t, func() { ch.Run(func() { ran = true }, nil) })
	assert.True(t, ran)
	assert.PanicsWithValue(t, "boom", func() { ch.Run(func() { panic("boom") }, nil) })

	// A zero Cache answers a misconfiguration, directly and behind
	// RequireAPIKey, instead of crashing the process from the lookup's
	// goroutine.
	_, err = new(keyward.Cache).LookupKey(context.Background(), keyward.Hash(k.Key))
	var ke *keyward.Error
	require.ErrorAs(t, err, &ke)
	assert.Equal(t, http.StatusInternalServerError, ke.Status)
	a, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: new(keyward.Cache), Prefix: "triq_"})
	require.NoError(t, err)
	w = httptest.NewRecorder()
	a.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("served") })).ServeHTTP(w, r)
	assert.Equal(t, http.StatusServiceUnavailable, w.Code, "the key store's failure, as for any store")

	// An error with no status an error can have is written as a 500, not a
	// panic (0) or a success (200); a typed nil *Error too.
	var nilErr *keyward.Error
	for name, err := range map[string]error{"status 0": keyward.Validation(0, "x", nil),
		"status 200": keyward.Validation(http.StatusOK, "x", nil), "typed nil": nilErr} {
		w := httptest.NewRecorder()
		require.NotPanics(t, func() { new(keyward.ErrorWriter).WriteError(w, httptest.NewRequest(http.MethodGet, "/", nil), err) }, name)
		assert.Equal(t, http.StatusInternalServerError, w.Code, name)
		assert.Contains(t, w.Body.String(), `"code":"internal_error"`, name)
	}
}

// Test keys look different (triq_test_…), are valid only as test keys,
// and neither count against the organization's live limits nor spend its
// live credits: they have a budget of their own, with the same limits.
func TestTestKeysHaveTheirOwnBudget(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 3, false) // 3 live credits, 60 requests a minute
	test := f.newKey(t, func(k *manage.KeySpec) { k.Environment = keyward.EnvTest })
	require.True(t, strings.HasPrefix(test.Key, "triq_test_"), test.Key)
	format, err := keyward.NewKeyFormat("triq_")
	require.NoError(t, err)
	assert.True(t, format.Valid(test.Key))
	assert.True(t, format.Valid(f.key.Key))
	assert.False(t, format.Valid("triq_"+test.Key[len("triq_test_"):]), "a test key's body is no live key")
	assert.Equal(t, "triq_test_"+test.Key[10:14]+"…"+test.Key[len(test.Key)-4:], format.Hint(test.Key))

	limiter, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{Store: new(rate.Memory), Now: f.now.Now})
	require.NoError(t, err)
	h := f.auth.Middleware(limiter.Middleware(f.charger.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))))
	call := func(key string) int {
		f.now.Advance(time.Second) // the free plan's one request a second
		r := f.request(context.Background(), "", nil)
		r.Header.Set("X-API-Key", key)
		w, _ := serve(h, r)
		return w.Code
	}
	for range 3 {
		require.Equal(t, http.StatusOK, call(f.key.Key))
	}
	require.Equal(t, http.StatusPaymentRequired, call(f.key.Key), "the live credits are spent")
	for range 3 {
		require.Equal(t, http.StatusOK, call(test.Key), "the test budget is untouched by live calls")
	}
	require.Equal(t, http.StatusPaymentRequired, call(test.Key), "and has the same allocation")
	live := f.balance(t)
	assert.Equal(t, int64(3), live.Spent, "test calls spent no live credit")
	testKey, err := f.store.LookupKey(context.Background(), keyward.Hash(test.Key))
	require.NoError(t, err)
	tb, err := f.ledger.Balance(context.Background(), testKey.Account())
	require.NoError(t, err)
	assert.Equal(t, int64(3), tb.Spent)
	assert.Equal(t, f.org.ID+":test", testKey.Account().OrgID)
}

package keyward_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/store/memory"
)

// flakyStore is a real limiter store that can be made to fail.
type flakyStore struct {
	limiter.Store
	fail atomic.Bool
}

func (s *flakyStore) Get(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	if s.fail.Load() {
		return limiter.Context{}, errors.New("dial tcp 127.0.0.1:6379: connection refused")
	}
	return s.Store.Get(ctx, key, rate)
}

type limited struct {
	*fixture
	limiter  *keyward.RateLimiter
	counters *flakyStore
	h        http.Handler
}

func newLimited(t testing.TB, mutate ...func(*keyward.RateLimitConfig)) *limited {
	t.Helper()
	f := newFixture(t)
	// Mid-window, so that a test's requests never straddle two windows;
	// and ahead of the system clock: the in-process counters sweep the
	// windows that ended by the system clock, never those ahead of it.
	f.now.Set(limitedNow)
	store := &flakyStore{Store: memory.NewStore()}
	cfg := keyward.RateLimitConfig{Store: store, Errors: f.errors, Logger: f.errors.Logger, Now: f.now.Now}
	for _, m := range mutate {
		m(&cfg)
	}
	l, err := keyward.RateLimitByOrg(cfg)
	require.NoError(t, err)
	return &limited{fixture: f, limiter: l, counters: store, h: f.auth.Middleware(l.Middleware(okHandler))}
}

func (l *limited) call(key string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/v1/transactions", nil)
	r.Header.Set("X-API-Key", key)
	w := httptest.NewRecorder()
	l.h.ServeHTTP(w, r)
	return w
}

func TestRateLimitHeadersAndThe61stCall(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"default", "limiter.Store"} {
		t.Run("store="+store, func(t *testing.T) {
			t.Parallel()
			l := newLimited(t, func(c *keyward.RateLimitConfig) {
				if store == "default" {
					c.Store = nil
				}
			})
			testThe61stCall(t, l)
		})
	}
}

// limitedNow is the limiter tests' clock: 42 s before the end of a window,
// far ahead of the system clock.
var limitedNow = time.Date(2036, 1, 19, 10, 30, 18, 0, time.UTC)

func testThe61stCall(t *testing.T, l *limited) {
	k := l.newKey(t)
	reset := strconv.FormatInt(time.Date(2036, 1, 19, 10, 31, 0, 0, time.UTC).Unix(), 10)
	for i := 1; i <= 60; i++ {
		w := l.call(k.Key)
		require.Equal(t, http.StatusOK, w.Code, "call %d", i)
		h := w.Header()
		assert.Equal(t, []string{"60"}, h.Values("X-RateLimit-Limit"))
		assert.Equal(t, []string{strconv.Itoa(60 - i)}, h.Values("X-RateLimit-Remaining"))
		assert.Equal(t, []string{reset}, h.Values("X-RateLimit-Reset"))
		assert.Equal(t, []string{`"org";q=60;w=60`}, h.Values("RateLimit-Policy"))
		assert.Equal(t, []string{`"org";r=` + strconv.Itoa(60-i) + `;t=42`}, h.Values("RateLimit"))
	}
	w := l.call(k.Key)
	require.Equal(t, http.StatusTooManyRequests, w.Code)
	env := decodeEnvelope(t, w)
	assert.Equal(t, "rate_limited", env.Error.Code)
	assert.Equal(t, "Rate limit exceeded. Maximum 60 requests per minute. Retry after 42 seconds.", env.Error.Message)
	assert.Equal(t, map[string]any{"limit": 60.0, "remaining": 0.0, "resetAt": "2036-01-19T10:31:00Z", "retryAfter": 42.0}, env.Error.Details)
	assert.Equal(t, []string{"42"}, w.Header().Values("Retry-After"))
	assert.Equal(t, []string{"0"}, w.Header().Values("X-RateLimit-Remaining"))
	assert.Equal(t, []string{`"org";r=0;t=42`}, w.Header().Values("RateLimit"))

	// The next window starts afresh.
	l.now.Set(time.Date(2036, 1, 19, 10, 31, 0, 0, time.UTC))
	w = l.call(k.Key)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "59", w.Header().Get("X-RateLimit-Remaining"))
}

func TestRateLimitIsPerOrganization(t *testing.T) {
	t.Parallel()
	l := newLimited(t)
	a1, a2 := l.newKey(t), l.newKey(t)
	orgB, err := l.store.CreateOrg(context.Background(), manage.OrgSpec{Name: "b"})
	require.NoError(t, err)
	b := l.newKey(t, func(n *manage.KeySpec) { n.OrgID = orgB.ID })

	for i := range 60 {
		k := a1
		if i%2 == 1 {
			k = a2
		}
		require.Equal(t, http.StatusOK, l.call(k.Key).Code)
	}
	// Both keys of org A share one budget…
	assert.Equal(t, http.StatusTooManyRequests, l.call(a1.Key).Code)
	assert.Equal(t, http.StatusTooManyRequests, l.call(a2.Key).Code)
	// …and org B has its own.
	w := l.call(b.Key)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "59", w.Header().Get("X-RateLimit-Remaining"))
}

func TestPerKeyLimitStricterThanThePlan(t *testing.T) {
	t.Parallel()
	l := newLimited(t)
	strict := l.newKey(t, func(n *manage.KeySpec) { n.RatePerMinute = 5 })
	other := l.newKey(t)
	for i := 1; i <= 5; i++ {
		w := l.call(strict.Key)
		require.Equal(t, http.StatusOK, w.Code)
		assert.Equal(t, "5", w.Header().Get("X-RateLimit-Limit"), "the key's limit binds")
		assert.Equal(t, strconv.Itoa(5-i), w.Header().Get("X-RateLimit-Remaining"))
		assert.Equal(t, `"org";q=60;w=60, "key";q=5;w=60`, w.Header().Get("RateLimit-Policy"))
		assert.Equal(t, `"org";r=`+strconv.Itoa(60-i)+`;t=42, "key";r=`+strconv.Itoa(5-i)+`;t=42`, w.Header().Get("RateLimit"))
	}
	w := l.call(strict.Key)
	require.Equal(t, http.StatusTooManyRequests, w.Code)
	assert.Contains(t, decodeEnvelope(t, w).Error.Message, "Maximum 5 requests per minute")
	// The refused call did not spend the organization's budget: 55 left.
	w = l.call(other.Key)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "54", w.Header().Get("X-RateLimit-Remaining"))
	assert.Equal(t, "60", w.Header().Get("X-RateLimit-Limit"))
}

func TestPlanChangeTakesEffect(t *testing.T) {
	t.Parallel()
	l := newLimited(t)
	k := l.newKey(t)
	for range 60 {
		require.Equal(t, http.StatusOK, l.call(k.Key).Code)
	}
	require.Equal(t, http.StatusTooManyRequests, l.call(k.Key).Code)
	org := l.org
	org.Plan = "growth"
	require.NoError(t, l.store.UpdateOrg(context.Background(), org))
	w := l.call(k.Key)
	require.Equal(t, http.StatusOK, w.Code, "the upgrade applies at once on this instance")
	assert.Equal(t, "600", w.Header().Get("X-RateLimit-Limit"))
	assert.Equal(t, "538", w.Header().Get("X-RateLimit-Remaining"), "the window's count carries over: 62 calls so far")
}

func TestCustomRateOverridesThePlan(t *testing.T) {
	t.Parallel()
	l := newLimited(t)
	big, err := l.store.CreateOrg(context.Background(), manage.OrgSpec{Name: "big", Plan: "enterprise", RatePerMinute: 5000})
	require.NoError(t, err)
	k := l.newKey(t, func(n *manage.KeySpec) { n.OrgID = big.ID })
	w := l.call(k.Key)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "5000", w.Header().Get("X-RateLimit-Limit"))
}

// withoutLimits is a KeyStore whose organizations have no resolved
// limits: a store that does not fill KeyRecord.Org.Limits.
type withoutLimits struct{ keyward.KeyStore }

func (s withoutLimits) LookupKey(ctx context.Context, h keyward.KeyHash) (*keyward.KeyRecord, error) {
	rec, err := s.KeyStore.LookupKey(ctx, h)
	if err != nil {
		return nil, err
	}
	cp := *rec
	cp.Org.Limits = keyward.Limits{}
	return &cp, nil
}

// An organization without a rate is a misconfiguration of the key store:
// 500, naming the organization and its plan; nothing is counted.
func TestOrganizationWithoutRateIsAMisconfiguration(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"default", "limiter.Store"} {
		t.Run("store="+store, func(t *testing.T) {
			t.Parallel()
			l := newLimited(t, func(c *keyward.RateLimitConfig) {
				if store == "default" {
					c.Store = nil
				}
			})
			auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: withoutLimits{l.store}, Prefix: "triq_", Errors: l.errors})
			require.NoError(t, err)
			l.h = auth.Middleware(l.limiter.Middleware(okHandler))
			k := l.newKey(t)
			w := l.call(k.Key)
			require.Equal(t, http.StatusInternalServerError, w.Code)
			env := decodeEnvelope(t, w)
			assert.Equal(t, "internal_error", env.Error.Code)
			logged := logLine(t, l.logs.String(), env.Meta.RequestID) // the details are the log's
			assert.Contains(t, logged, `plan \"free\"`)
			assert.Contains(t, logged, l.org.ID)
			assert.NotContains(t, env.Error.Message, l.org.ID, "the client is not told the internals")
			assert.Empty(t, w.Header().Get("X-RateLimit-Limit"))
		})
	}
}

func TestRateLimitStoreFailure(t *testing.T) {
	t.Parallel()
	t.Run("fail open", func(t *testing.T) {
		t.Parallel()
		l := newLimited(t)
		k := l.newKey(t)
		l.counters.fail.Store(true)
		for range 100 {
			w := l.call(k.Key)
			require.Equal(t, http.StatusOK, w.Code)
			assert.Empty(t, w.Header().Get("X-RateLimit-Limit"), "no headers invented")
			assert.Empty(t, w.Header().Get("RateLimit"))
		}
		assert.Contains(t, l.logs.String(), "fail open")
		assert.Contains(t, l.logs.String(), "connection refused")
		assert.Equal(t, 1, strings.Count(l.logs.String(), "fail open"), "logged at most once a second")
		l.counters.fail.Store(false)
		w := l.call(k.Key)
		assert.Equal(t, "59", w.Header().Get("X-RateLimit-Remaining"))
	})
	t.Run("fail closed", func(t *testing.T) {
		t.Parallel()
		l := newLimited(t, func(c *keyward.RateLimitConfig) { c.FailClosed = true })
		k := l.newKey(t)
		l.counters.fail.Store(true)
		w := l.call(k.Key)
		require.Equal(t, http.StatusServiceUnavailable, w.Code)
		env := decodeEnvelope(t, w)
		assert.Equal(t, "service_unavailable", env.Error.Code)
		assert.Contains(t, env.Error.Message, "rate limiter")
		assert.Empty(t, w.Header().Get("X-RateLimit-Limit"))
		l.counters.fail.Store(false)
		assert.Equal(t, http.StatusOK, l.call(k.Key).Code)
	})
}

func TestRateLimitWithoutRequireAPIKey(t *testing.T) {
	t.Parallel()
	l, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{})
	require.NoError(t, err)
	w := httptest.NewRecorder()
	l.Middleware(okHandler).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	require.Equal(t, http.StatusInternalServerError, w.Code)
	assert.Contains(t, decodeEnvelope(t, w).Error.Message, "misconfigured") // the problem is logged, not sent
}

func TestRateLimitHeadersAreSetNotAppended(t *testing.T) {
	t.Parallel()
	l := newLimited(t)
	k := l.newKey(t)
	// Two limiters in one chain (a mistake, but a harmless one): one set of
	// headers, from the inner one.
	twice := l.auth.Middleware(l.limiter.Middleware(l.limiter.Middleware(okHandler)))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-API-Key", k.Key)
	w := httptest.NewRecorder()
	twice.ServeHTTP(w, r)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, []string{"58"}, w.Header().Values("X-RateLimit-Remaining"))
	assert.Len(t, w.Header().Values("RateLimit-Policy"), 1)
}

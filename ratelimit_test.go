package keyward_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/rate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/ulule/limiter/v3/drivers/store/memory"
)

// flakyStore is a real rate store that can be made to fail.
type flakyStore struct {
	rate.Store
	fail atomic.Bool
}

func (s *flakyStore) Take(ctx context.Context, req rate.Request) (rate.Result, error) {
	if s.fail.Load() {
		return rate.Result{}, errors.New("dial tcp 127.0.0.1:6379: connection refused")
	}
	return s.Store.Take(ctx, req)
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
	f.now.Set(limitedNow)
	store := &flakyStore{Store: new(rate.Memory)}
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

// limitedNow is the limiter tests' clock: 42 s before the end of a
// minute.
var limitedNow = time.Date(2036, 1, 19, 10, 30, 18, 0, time.UTC)

// The free plan: one request a second, a burst of 2, 60 a minute, two in
// flight; the headers as Triqai's clients read them.
func TestRateLimitHeadersOfThePerSecondBucket(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"memory", "ulule"} {
		t.Run("store="+store, func(t *testing.T) {
			t.Parallel()
			l := newLimited(t, func(c *keyward.RateLimitConfig) {
				if store == "ulule" {
					c.Store = rate.Ulule(memory.NewStore())
				}
			})
			k := l.newKey(t)
			w := l.call(k.Key)
			require.Equal(t, http.StatusOK, w.Code)
			h := w.Header()
			assert.Equal(t, []string{"1"}, h.Values("X-RateLimit-Limit"), "requests per second, as Triqai's client paces itself")
			assert.Equal(t, []string{"1"}, h.Values("X-RateLimit-Remaining"), "the burst is 2")
			assert.Equal(t, []string{"2036-01-19T10:30:19Z"}, h.Values("X-RateLimit-Reset"), "ISO-8601: when the bucket is full")
			assert.Equal(t, []string{"2"}, h.Values("X-RateLimit-Concurrency-Limit"))
			assert.Equal(t, []string{"1"}, h.Values("X-RateLimit-Concurrency-Remaining"), "this request holds one slot")
			assert.Empty(t, h.Values("X-RateLimit-Scope"), "no limit refused")
			assert.Equal(t, []string{`"rps";q=1;w=1, "rpm";q=60;w=60, "concurrency";q=2;qu="concurrent-requests"`}, h.Values("RateLimit-Policy"))
			if store == "memory" {
				assert.Equal(t, []string{`"rps";r=1;t=1, "rpm";r=59;t=60, "concurrency";r=1`}, h.Values("RateLimit"))
			} else {
				assert.Equal(t, []string{`"rps";r=1;t=1, "rpm";r=59;t=42, "concurrency";r=1`}, h.Values("RateLimit"), "ulule's fixed window ends at the minute")
			}
			w = l.call(k.Key)
			require.Equal(t, http.StatusOK, w.Code, "the two requests a free plan may have in flight may start together")
			assert.Equal(t, []string{"0"}, w.Header().Values("X-RateLimit-Remaining"))
			assert.Equal(t, []string{"2036-01-19T10:30:20Z"}, w.Header().Values("X-RateLimit-Reset"), "two tokens take two seconds")

			l.now.Advance(766 * time.Millisecond)
			w = l.call(k.Key)
			require.Equal(t, http.StatusTooManyRequests, w.Code)
			env := decodeEnvelope(t, w)
			assert.Equal(t, "rate_limited", env.Error.Code)
			assert.Equal(t, "Rate limit exceeded. Maximum 1 request per second. Retry after 234 milliseconds.", env.Error.Message)
			assert.Equal(t, map[string]any{"scope": "rps", "limit": 1.0, "remaining": 0.0, "resetAt": "2036-01-19T10:30:19Z",
				"retryAfter": 1.0, "retryAfterMs": 234.0}, env.Error.Details)
			assert.Equal(t, []string{"1"}, w.Header().Values("Retry-After"), "whole seconds, at least 1")
			assert.Equal(t, []string{"rps"}, w.Header().Values("X-RateLimit-Scope"))
			assert.Equal(t, []string{"0"}, w.Header().Values("X-RateLimit-Remaining"))
			assert.Equal(t, []string{"2036-01-19T10:30:19Z"}, w.Header().Values("X-RateLimit-Reset"), "when a token is back")
			assert.Equal(t, []string{"2"}, w.Header().Values("X-RateLimit-Concurrency-Remaining"), "nothing in flight")

			l.now.Advance(234 * time.Millisecond)
			assert.Equal(t, http.StatusOK, l.call(k.Key).Code, "the token is back after the wait the 429 gave")
		})
	}
}

func TestUnixReset(t *testing.T) {
	t.Parallel()
	l := newLimited(t, func(c *keyward.RateLimitConfig) { c.UnixReset = true })
	w := l.call(l.newKey(t).Key)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, strconv.FormatInt(limitedNow.Unix()+1, 10), w.Header().Get("X-RateLimit-Reset"))
}

// fastOrg returns a key of an organization whose per-minute quota binds
// before its bucket: 100 a second, 60 a minute.
func fastOrg(t *testing.T, l *limited, name string, mutate ...func(*manage.KeySpec)) manage.CreatedKey {
	t.Helper()
	org, err := l.store.CreateOrg(context.Background(), manage.OrgSpec{Name: name, RatePerSecond: 100, Concurrency: 10})
	require.NoError(t, err)
	return l.newKey(t, append([]func(*manage.KeySpec){func(n *manage.KeySpec) { n.OrgID = org.ID }}, mutate...)...)
}

func TestTheMinuteQuotaAndThe61stCall(t *testing.T) {
	t.Parallel()
	l := newLimited(t)
	k := fastOrg(t, l, "fast")
	for i := 1; i <= 60; i++ {
		l.now.Advance(10 * time.Millisecond)
		w := l.call(k.Key)
		require.Equal(t, http.StatusOK, w.Code, "call %d", i)
		assert.Contains(t, w.Header().Get("RateLimit"), `"rpm";r=`+strconv.Itoa(60-i)+";t=60")
	}
	w := l.call(k.Key)
	require.Equal(t, http.StatusTooManyRequests, w.Code)
	env := decodeEnvelope(t, w)
	assert.Equal(t, "rpm", env.Error.Details["scope"])
	assert.Equal(t, "Rate limit exceeded. Maximum 60 requests per minute. Retry after 60 seconds.", env.Error.Message)
	assert.Equal(t, []string{"rpm"}, w.Header().Values("X-RateLimit-Scope"))
	assert.Equal(t, []string{"60"}, w.Header().Values("Retry-After"))

	// Across the minute's end: still nothing until the calls are 60 s old.
	l.now.Set(time.Date(2036, 1, 19, 10, 31, 0, 0, time.UTC))
	assert.Equal(t, http.StatusTooManyRequests, l.call(k.Key).Code, "a new aligned minute is no new quota")
	l.now.Set(limitedNow.Add(time.Minute))
	assert.Equal(t, http.StatusOK, l.call(k.Key).Code, "60 s after the first calls")
}

func TestRateLimitIsPerOrganization(t *testing.T) {
	t.Parallel()
	l := newLimited(t)
	a1 := fastOrg(t, l, "a")
	org := a1.Record.Org
	a2 := l.newKey(t, func(n *manage.KeySpec) { n.OrgID = org.ID })
	b := fastOrg(t, l, "b")

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
	assert.Equal(t, "99", w.Header().Get("X-RateLimit-Remaining"))
}

func TestPerKeyLimitStricterThanThePlan(t *testing.T) {
	t.Parallel()
	l := newLimited(t)
	strict := fastOrg(t, l, "org", func(n *manage.KeySpec) { n.RatePerMinute = 5 })
	org := strict.Record.Org
	other := l.newKey(t, func(n *manage.KeySpec) { n.OrgID = org.ID })
	for i := 1; i <= 5; i++ {
		w := l.call(strict.Key)
		require.Equal(t, http.StatusOK, w.Code)
		assert.Equal(t, `"rps";q=100;w=1, "rpm";q=60;w=60, "key";q=5;w=60, "concurrency";q=10;qu="concurrent-requests"`, w.Header().Get("RateLimit-Policy"))
		assert.Equal(t, `"rps";r=`+strconv.Itoa(100-i)+`;t=1, "rpm";r=`+strconv.Itoa(60-i)+`;t=60, "key";r=`+strconv.Itoa(5-i)+`;t=60, "concurrency";r=9`, w.Header().Get("RateLimit"))
	}
	w := l.call(strict.Key)
	require.Equal(t, http.StatusTooManyRequests, w.Code)
	env := decodeEnvelope(t, w)
	assert.Equal(t, "key", env.Error.Details["scope"])
	assert.Contains(t, env.Error.Message, "Maximum 5 requests per minute for this API key")
	// The refused call did not spend the organization's quota: 55 left.
	w = l.call(other.Key)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Contains(t, w.Header().Get("RateLimit"), `"rpm";r=54;`)
}

func TestInFlightCap(t *testing.T) {
	t.Parallel()
	l := newLimited(t)
	k := fastOrg(t, l, "slow") // 10 in flight
	release := make(chan struct{})
	var running, most atomic.Int64
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-release
		running.Add(-1)
	})
	l.h = l.auth.Middleware(l.limiter.Middleware(slow))
	var wg sync.WaitGroup
	codes := make(chan int, 30)
	for range 30 {
		wg.Go(func() { codes <- l.call(k.Key).Code })
	}
	require.Eventually(t, func() bool { return len(codes) == 20 }, 5*time.Second, time.Millisecond, "20 refused while 10 run")
	w := l.call(k.Key)
	require.Equal(t, http.StatusTooManyRequests, w.Code)
	env := decodeEnvelope(t, w)
	assert.Equal(t, "concurrency", env.Error.Details["scope"])
	assert.Equal(t, "Too many requests in flight. Maximum 10 concurrent requests. Retry after 1 second.", env.Error.Message)
	assert.Equal(t, "0", w.Header().Get("X-RateLimit-Concurrency-Remaining"))
	close(release)
	wg.Wait()
	close(codes)
	counts := map[int]int{}
	for c := range codes {
		counts[c]++
	}
	assert.Equal(t, map[int]int{200: 10, 429: 20}, counts)
	assert.Equal(t, int64(10), most.Load())
	l.h = l.auth.Middleware(l.limiter.Middleware(okHandler))
	w = l.call(k.Key)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "9", w.Header().Get("X-RateLimit-Concurrency-Remaining"), "every slot came back")
}

func TestSlotComesBackOnPanic(t *testing.T) {
	t.Parallel()
	l := newLimited(t)
	k := l.newKey(t) // free: 2 in flight
	boom := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })
	l.h = l.auth.Middleware(l.limiter.Middleware(boom))
	for range 3 {
		l.now.Advance(time.Second)
		assert.Panics(t, func() { l.call(k.Key) })
	}
	l.h = l.auth.Middleware(l.limiter.Middleware(okHandler))
	l.now.Advance(time.Second)
	w := l.call(k.Key)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "1", w.Header().Get("X-RateLimit-Concurrency-Remaining"))
}

func TestPlanChangeTakesEffect(t *testing.T) {
	t.Parallel()
	l := newLimited(t)
	k := l.newKey(t)
	require.Equal(t, http.StatusOK, l.call(k.Key).Code)
	require.Equal(t, http.StatusOK, l.call(k.Key).Code, "free: a burst of 2")
	require.Equal(t, http.StatusTooManyRequests, l.call(k.Key).Code)
	org := l.org
	org.Plan = "growth"
	require.NoError(t, l.store.UpdateOrg(context.Background(), org))
	w := l.call(k.Key)
	require.Equal(t, http.StatusOK, w.Code, "the upgrade applies at once on this instance")
	assert.Equal(t, "10", w.Header().Get("X-RateLimit-Limit"))
	assert.Equal(t, "7", w.Header().Get("X-RateLimit-Remaining"), "the two tokens spent on free are two of growth's")
	assert.Equal(t, "10", w.Header().Get("X-RateLimit-Concurrency-Limit"))
}

func TestCustomRateOverridesThePlan(t *testing.T) {
	t.Parallel()
	l := newLimited(t)
	big, err := l.store.CreateOrg(context.Background(), manage.OrgSpec{Name: "big", Plan: "enterprise", RatePerMinute: 5000})
	require.NoError(t, err)
	k := l.newKey(t, func(n *manage.KeySpec) { n.OrgID = big.ID })
	w := l.call(k.Key)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "84", w.Header().Get("X-RateLimit-Limit"), "5000/min spread over the minute, rounded up")
	assert.Equal(t, "84", w.Header().Get("X-RateLimit-Concurrency-Limit"))
	assert.Contains(t, w.Header().Get("RateLimit-Policy"), `"rpm";q=5000;w=60`)
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
	for _, store := range []string{"memory", "ulule"} {
		t.Run("store="+store, func(t *testing.T) {
			t.Parallel()
			l := newLimited(t, func(c *keyward.RateLimitConfig) {
				c.Store = nil
				if store == "ulule" {
					c.Store = rate.Ulule(memory.NewStore())
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
		assert.Equal(t, "1", w.Header().Get("X-RateLimit-Remaining"), "free: a burst of 2")
		assert.Contains(t, w.Header().Get("RateLimit"), `"rpm";r=59;`, "nothing was counted while the store failed")
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
	k := fastOrg(t, l, "twice")
	// Two limiters in one chain (a mistake, but a harmless one): one set of
	// headers, from the inner one.
	twice := l.auth.Middleware(l.limiter.Middleware(l.limiter.Middleware(okHandler)))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-API-Key", k.Key)
	w := httptest.NewRecorder()
	twice.ServeHTTP(w, r)
	require.Equal(t, http.StatusOK, w.Code)
	for _, name := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-RateLimit-Concurrency-Limit",
		"X-RateLimit-Concurrency-Remaining", "RateLimit-Policy", "RateLimit"} {
		assert.Len(t, w.Header().Values(name), 1, name)
	}
	assert.Equal(t, "8", w.Header().Get("X-RateLimit-Concurrency-Remaining"), "the inner limiter's: two slots held")
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

// RateLimiter.Check is the whole decision an adapter needs: what to set,
// and whether to serve or write an error.
func TestRateLimiterCheck(t *testing.T) {
	t.Parallel()
	keyed := func(l *limited, key string) *http.Request {
		t.Helper()
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("X-API-Key", key)
		k, err := l.auth.Authenticate(r)
		require.NoError(t, err)
		return keyward.AttachKey(r, k)
	}
	t.Run("allowed", func(t *testing.T) {
		t.Parallel()
		l := newLimited(t)
		r := keyed(l, l.newKey(t).Key)
		d, err := l.limiter.Check(r)
		require.NoError(t, err)
		assert.True(t, d.Allowed)
		h := http.Header{}
		d.WriteHeaders(h)
		assert.Equal(t, "1", h.Get("X-RateLimit-Remaining"), "free: a burst of 2")
		assert.Equal(t, "1", h.Get("X-RateLimit-Concurrency-Remaining"))
		d.Done()
		d.Done() // twice: nothing more
		d, err = l.limiter.Allow(context.Background(), mustKey(r), l.now.Now().Add(time.Minute))
		require.NoError(t, err)
		assert.Equal(t, int64(1), d.InFlight, "the slot came back, once")
		d.Done()
	})
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		l := newLimited(t)
		r := keyed(l, l.newKey(t).Key)
		for range 2 { // free: a burst of 2
			ok, err := l.limiter.Check(r)
			require.NoError(t, err)
			defer ok.Done()
		}
		d, err := l.limiter.Check(r)
		assert.ErrorIs(t, err, &keyward.Error{Code: keyward.CodeRateLimited})
		assert.False(t, d.Allowed)
		assert.Equal(t, rate.PerSecond, d.Scope)
		d.Done() // a refused decision holds nothing
		h := http.Header{}
		d.WriteHeaders(h)
		assert.Equal(t, "0", h.Get("X-RateLimit-Remaining"), "a 429 carries the headers too")
	})
	t.Run("fail open serves without headers", func(t *testing.T) {
		t.Parallel()
		l := newLimited(t)
		r := keyed(l, l.newKey(t).Key)
		l.counters.fail.Store(true)
		d, err := l.limiter.Check(r)
		require.NoError(t, err)
		assert.True(t, d.Allowed)
		h := http.Header{}
		d.WriteHeaders(h)
		assert.Empty(t, h)
	})
	t.Run("fail closed", func(t *testing.T) {
		t.Parallel()
		l := newLimited(t, func(c *keyward.RateLimitConfig) { c.FailClosed = true })
		r := keyed(l, l.newKey(t).Key)
		l.counters.fail.Store(true)
		_, err := l.limiter.Check(r)
		assert.ErrorIs(t, err, &keyward.Error{Code: keyward.CodeServiceUnavailable})
	})
	t.Run("no key", func(t *testing.T) {
		t.Parallel()
		l := newLimited(t)
		_, err := l.limiter.Check(httptest.NewRequest(http.MethodGet, "/", nil))
		assert.ErrorIs(t, err, &keyward.Error{Code: keyward.CodeInternal})
	})
}

// Rate limits count test keys apart too: a live request leaves the test
// budget whole.
func TestTestKeysCountApart(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	live := f.newKey(t)
	test := f.newKey(t, func(k *manage.KeySpec) { k.Environment = keyward.EnvTest })
	limiter, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{Store: new(rate.Memory), Now: f.now.Now})
	require.NoError(t, err)
	h := f.auth.Middleware(limiter.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	f.handler = h
	require.Equal(t, http.StatusOK, f.do(withKey(live.Key)).Code)
	require.Equal(t, http.StatusOK, f.do(withKey(live.Key)).Code)
	require.Equal(t, http.StatusTooManyRequests, f.do(withKey(live.Key)).Code, "free: a burst of 2")
	w := f.do(withKey(test.Key))
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, `"rps";r=1;t=1, "rpm";r=59;t=60, "concurrency";r=1`, w.Header().Get("RateLimit"), "a whole budget of its own")
}

func mustKey(r *http.Request) *keyward.KeyRecord {
	k, _ := keyward.FromContext(r.Context())
	return k
}

// A 429's X-RateLimit-Limit, -Remaining and -Reset describe the limit
// named by X-RateLimit-Scope: its limit, 0, and when it admits again (as
// the body's resetAt), so that a client trusting Remaining stops sending.
// They described the per-second bucket: a 429 by the per-minute quota said
// Remaining: 98. (redislimit's TestRefusalHeadersOfEachScope is this on
// Redis.)
func TestRefusalHeadersOfEachScope(t *testing.T) {
	t.Parallel()
	// limitedNow is 10:30:18: a quota whose requests all came now is
	// whole again at 10:31:18.
	for _, tc := range []struct {
		scope, limit, reset string
		org                 manage.OrgSpec
		keyLimit            int64
		calls               int // served before the refusal
	}{
		{"rps", "1", "2036-01-19T10:30:19Z", manage.OrgSpec{Plan: "free"}, 0, 2},
		{"rpm", "2", "2036-01-19T10:31:18Z", manage.OrgSpec{Plan: "free", RatePerSecond: 100, RatePerMinute: 2}, 0, 2},
		{"key", "1", "2036-01-19T10:31:18Z", manage.OrgSpec{Plan: "growth"}, 1, 1},
		{"concurrency", "1", "2036-01-19T10:30:19Z", manage.OrgSpec{Plan: "growth", Concurrency: 1}, 0, 1},
	} {
		t.Run(tc.scope, func(t *testing.T) {
			t.Parallel()
			l := newLimited(t)
			tc.org.Name = tc.scope
			org, err := l.store.CreateOrg(context.Background(), tc.org)
			require.NoError(t, err)
			k := l.newKey(t, func(n *manage.KeySpec) { n.OrgID, n.RatePerMinute = org.ID, tc.keyLimit })
			// The requests served stay in flight until the end, so that the
			// in-flight cap refuses the next.
			release := make(chan struct{})
			held := make(chan struct{}, tc.calls)
			l.h = l.auth.Middleware(l.limiter.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
				held <- struct{}{}
				<-release
			})))
			done := make(chan int, tc.calls)
			defer close(release)
			for i := range tc.calls {
				go func() { done <- l.call(k.Key).Code }()
				select {
				case <-held:
				case code := <-done:
					t.Fatalf("call %d of %d was answered %d, not served", i+1, tc.calls, code)
				}
			}
			w := l.call(k.Key)
			require.Equal(t, http.StatusTooManyRequests, w.Code, w.Body.String())
			h := w.Header()
			assert.Equal(t, tc.scope, h.Get("X-RateLimit-Scope"))
			assert.Equal(t, tc.limit, h.Get("X-RateLimit-Limit"), "the refusing limit")
			assert.Equal(t, "0", h.Get("X-RateLimit-Remaining"), "nothing left of the refusing limit")
			assert.Equal(t, tc.reset, h.Get("X-RateLimit-Reset"), "when the refusing limit admits again")
			env := decodeEnvelope(t, w)
			assert.Equal(t, tc.reset, env.Error.Details["resetAt"], "the body says the same")
			reset, err := time.Parse(time.RFC3339, tc.reset)
			require.NoError(t, err)
			assert.Equal(t, reset.Sub(l.now.Now()).Seconds(), env.Error.Details["retryAfter"], "and Retry-After agrees")
		})
	}
}

// A request served still describes the per-second bucket, whatever limit
// binds next.
func TestSuccessHeadersDescribeTheBucket(t *testing.T) {
	t.Parallel()
	l := newLimited(t)
	org, err := l.store.CreateOrg(context.Background(), manage.OrgSpec{Name: "q", Plan: "free", RatePerSecond: 100, RatePerMinute: 2})
	require.NoError(t, err)
	k := l.newKey(t, func(n *manage.KeySpec) { n.OrgID = org.ID })
	w := l.call(k.Key)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "100", w.Header().Get("X-RateLimit-Limit"))
	assert.Equal(t, "99", w.Header().Get("X-RateLimit-Remaining"))
}

package keyward_test

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCacheExpiresAnswers(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cache, err := keyward.NewCache(f.probe, keyward.CacheConfig{TTL: 300 * time.Millisecond, NegativeTTL: 300 * time.Millisecond})
	require.NoError(t, err)
	defer cache.Close()
	ctx := context.Background()
	k := f.newKey(t)
	unknown := keyward.Hash("triq_unknown")
	for range 3 {
		_, err = cache.LookupKey(ctx, k.Record.Hash)
		require.NoError(t, err)
		_, err = cache.LookupKey(ctx, unknown)
		require.ErrorIs(t, err, keyward.ErrKeyNotFound)
	}
	require.Equal(t, int64(2), f.probe.calls.Load())
	assert.Equal(t, int64(2), cache.StoreCalls())
	// Past the TTL (plus the cache clock's tick), both are looked up again.
	require.Eventually(t, func() bool {
		_, _ = cache.LookupKey(ctx, k.Record.Hash)
		_, _ = cache.LookupKey(ctx, unknown)
		return f.probe.calls.Load() >= 4
	}, 2*time.Second, 20*time.Millisecond)
}

func TestCacheAfterClose(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.newKey(t)
	release, returned := make(chan struct{}), make(chan struct{})
	hold := func() { <-release; close(returned) }
	f.probe.hold.Store(&hold)
	// A lookup still in the store when the cache closes finishes safely.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := f.cache.LookupKey(ctx, k.Record.Hash)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	f.cache.Close()
	f.probe.hold.Store(nil)
	close(release)
	<-returned
	time.Sleep(50 * time.Millisecond) // let the flight leave the singleflight group
	f.cache.Close()                   // idempotent
	before := f.probe.calls.Load()
	for range 3 {
		require.Equal(t, http.StatusOK, f.do(withKey(k.Key)).Code)
	}
	assert.Equal(t, before+3, f.probe.calls.Load(), "a closed cache sends every lookup to the store")
}

func TestNewCacheReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := keyward.NewCache(nil, keyward.CacheConfig{MaxKeys: -1, TTL: -1, NegativeTTL: -1, LookupTimeout: -1})
	require.Error(t, err)
	for _, field := range []string{"store", "MaxKeys", "CacheConfig.TTL", "NegativeTTL", "LookupTimeout"} {
		assert.Contains(t, err.Error(), field)
	}
}

// Sizes past their bounds are refused too: a TTL of MaxInt64 used to
// overflow into entries that expire at once (every lookup a store call),
// and a huge MaxKeys into ristretto's own error.
func TestNewCacheRefusesHugeSizes(t *testing.T) {
	t.Parallel()
	store := newFixture(t).probe
	_, err := keyward.NewCache(store, keyward.CacheConfig{MaxKeys: math.MaxInt64 / 5, TTL: math.MaxInt64,
		NegativeTTL: 25 * time.Hour, LookupTimeout: math.MaxInt64})
	require.Error(t, err)
	var ce *keyward.ConfigError
	assert.ErrorAs(t, err, &ce)
	for _, field := range []string{"MaxKeys", "CacheConfig.TTL", "NegativeTTL", "LookupTimeout"} {
		assert.Contains(t, err.Error(), field)
	}
	c, err := keyward.NewCache(store, keyward.CacheConfig{MaxKeys: 1 << 26, TTL: 24 * time.Hour})
	require.NoError(t, err, "the bounds themselves are taken")
	c.Close()
}

func TestPlainStoreWithoutCache(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.newKey(t)
	h, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: f.store, Prefix: "triq_", Now: f.now.Now})
	require.NoError(t, err)
	handler := h.Middleware(okHandler)
	for range 3 {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("X-API-Key", k.Key)
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)
		assert.Equal(t, http.StatusOK, w.Code, "a plain KeyStore works without a cache")
	}
	require.NoError(t, f.store.RevokeKey(context.Background(), k.Record.ID))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-API-Key", k.Key)
	w := httptest.NewRecorder()
	handler.ServeHTTP(w, r)
	assert.Equal(t, http.StatusUnauthorized, w.Code, "and sees a revocation at once")
	rec := &keyward.KeyRecord{ID: "k", Org: keyward.Organization{ID: "o"}}
	got, ok := keyward.FromContext(keyward.WithKey(context.Background(), rec))
	assert.True(t, ok)
	assert.Same(t, rec, got)
	_, ok = keyward.FromContext(context.Background())
	assert.False(t, ok)
	_, ok = keyward.FromContext(keyward.WithKey(context.Background(), nil))
	assert.False(t, ok, "WithKey(ctx, nil) carries no key")
	// AttachKey: a copy of the request whose context carries the key; the
	// original is untouched.
	r = httptest.NewRequest(http.MethodGet, "/", nil)
	r2 := keyward.AttachKey(r, rec)
	got, ok = keyward.FromContext(r2.Context())
	assert.True(t, ok)
	assert.Same(t, rec, got)
	assert.NotSame(t, r, r2)
	_, ok = keyward.FromContext(r.Context())
	assert.False(t, ok)
}

// slowStore answers after delay, or when ctx ends: a database that takes
// seconds per lookup but honours cancellation, as the KeyStore contract
// asks.
type slowStore struct {
	keyward.KeyStore
	delay    time.Duration
	calls    atomic.Int64
	inFlight atomic.Int64
}

func (s *slowStore) LookupKey(ctx context.Context, h keyward.KeyHash) (*keyward.KeyRecord, error) {
	s.calls.Add(1)
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	select {
	case <-time.After(s.delay):
		return s.KeyStore.LookupKey(ctx, h)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestSlowStore: every lookup takes 3 s. Requests end with their own
// deadline (200 ms) with a 503, never a 401; concurrent requests for one
// key share one store call; requests for many keys make one store call
// each, which ends at the cache's LookupTimeout, not the store's 3 s; and
// no goroutine is left once they have.
//
// Not parallel: it counts goroutines.
func TestSlowStore(t *testing.T) {
	ctx := context.Background()
	store, err := memstore.New(memstore.Options{Prefix: "triq_"})
	require.NoError(t, err)
	org, err := store.CreateOrg(ctx, manage.OrgSpec{Name: "acme"})
	require.NoError(t, err)
	slow := &slowStore{KeyStore: store, delay: 3 * time.Second}
	const lookupTimeout = 500 * time.Millisecond
	cache, err := keyward.NewCache(slow, keyward.CacheConfig{LookupTimeout: lookupTimeout})
	require.NoError(t, err)
	defer cache.Close()
	logs := &syncBuffer{}
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_",
		Errors: &keyward.ErrorWriter{Logger: slog.New(slog.NewTextHandler(logs, nil))}})
	require.NoError(t, err)
	h := auth.Middleware(okHandler)
	keys := make([]string, 40)
	for i := range keys {
		k, err := store.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "k"})
		require.NoError(t, err)
		keys[i] = k.Key
	}

	run := func(pick func(i int) string) (codes map[int]int, slowest time.Duration) {
		codes = map[int]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				defer cancel()
				r := httptest.NewRequestWithContext(rctx, http.MethodGet, "/", nil)
				r.Header.Set("X-API-Key", pick(i))
				w := httptest.NewRecorder()
				start := time.Now()
				h.ServeHTTP(w, r)
				d := time.Since(start)
				mu.Lock()
				defer mu.Unlock()
				codes[w.Code]++
				slowest = max(slowest, d)
			}()
		}
		wg.Wait()
		return codes, slowest
	}

	before := runtime.NumGoroutine()
	codes, slowest := run(func(int) string { return keys[0] })
	t.Logf("one key: %v, slowest %v, %d store call(s), %d goroutines over the baseline",
		codes, slowest.Round(time.Millisecond), slow.calls.Load(), runtime.NumGoroutine()-before)
	assert.Equal(t, map[int]int{http.StatusServiceUnavailable: 40}, codes, "503, never 401")
	assert.Less(t, slowest, time.Second, "a request ends with its own deadline")
	assert.Equal(t, int64(1), slow.calls.Load(), "one store call for one key (singleflight)")
	// Every request has returned; only the shared lookup is left.
	assert.LessOrEqual(t, runtime.NumGoroutine(), before+2, "no pile-up beyond the singleflight")
	require.Eventually(t, func() bool { return slow.inFlight.Load() == 0 }, 2*lookupTimeout, 5*time.Millisecond,
		"the shared lookup ends at LookupTimeout")
	settleGoroutines(t, before)

	calls := slow.calls.Load()
	codes, slowest = run(func(i int) string { return keys[i] })
	t.Logf("40 keys: %v, slowest %v, %d store calls", codes, slowest.Round(time.Millisecond), slow.calls.Load()-calls)
	assert.Equal(t, map[int]int{http.StatusServiceUnavailable: 40}, codes)
	assert.Less(t, slowest, time.Second)
	assert.Equal(t, int64(40), slow.calls.Load()-calls, "one store call per key")
	require.Eventually(t, func() bool { return slow.inFlight.Load() == 0 }, 2*lookupTimeout, 5*time.Millisecond,
		"every lookup ends at LookupTimeout, not the store's 3 s")
	settleGoroutines(t, before)
	for _, k := range keys {
		assert.NotContains(t, logs.String(), k[5:])
	}

	// Once the store is fast again, the same process serves.
	slow.delay = 0
	codes, _ = run(func(i int) string { return keys[i] })
	assert.Equal(t, map[int]int{http.StatusOK: 40}, codes)
}

func TestRequireAPIKeyUnknownKeysAreCachedAsUnknown(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	unknown := make([]string, 100)
	for i := range unknown {
		unknown[i], _ = f.store.Format().Generate()
	}
	for i := range 10_000 {
		w := f.do(withKey(unknown[i%len(unknown)]))
		require.Equal(t, http.StatusUnauthorized, w.Code)
	}
	assert.LessOrEqual(t, f.probe.calls.Load(), int64(100))
	assert.Positive(t, f.probe.calls.Load())
}

func TestRequireAPIKeyConcurrentMissesMakeOneStoreCall(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.newKey(t)
	release := make(chan struct{})
	hold := func() { <-release }
	f.probe.hold.Store(&hold)

	const n = 1000
	var started, done sync.WaitGroup
	started.Add(n)
	done.Add(n)
	codes := make([]int, n)
	for i := range n {
		go func() {
			defer done.Done()
			started.Done()
			codes[i] = f.do(withKey(k.Key)).Code
		}()
	}
	started.Wait()
	// Every goroutine is running; give them time to join the one flight
	// that is held in the store.
	require.Eventually(t, func() bool { return f.probe.calls.Load() == 1 }, time.Second, time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	close(release)
	done.Wait()
	for _, c := range codes {
		require.Equal(t, http.StatusOK, c)
	}
	assert.Equal(t, int64(1), f.probe.calls.Load())
	// And the answer is now cached.
	assert.Equal(t, http.StatusOK, f.do(withKey(k.Key)).Code)
	assert.Equal(t, int64(1), f.probe.calls.Load())
}

// TestRevocationRacingALookup is the race of ristretto issue #52: a lookup
// reads the key before it is revoked and answers after. Neither that
// request nor any later one may accept the key once revocation returned.
func TestRevocationRacingALookup(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.newKey(t)

	read := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	hold := func() {
		once.Do(func() { // only the first lookup is held
			close(read)
			<-release
		})
	}
	f.probe.hold.Store(&hold)

	result := make(chan *httptest.ResponseRecorder)
	go func() { result <- f.do(withKey(k.Key)) }()
	<-read // the store has read the key, still valid
	require.NoError(t, f.store.RevokeKey(context.Background(), k.Record.ID))
	close(release) // the stale answer comes back after the revocation

	w := <-result
	require.Equal(t, http.StatusUnauthorized, w.Code, "the racing request accepted a revoked key")
	assert.Equal(t, "revoked_api_key", decodeEnvelope(t, w).Error.Details["reason"])
	for range 100 {
		w = f.do(withKey(k.Key))
		require.Equal(t, http.StatusUnauthorized, w.Code)
	}
	// The stale answer was not cached: one held lookup, one fresh one,
	// then the cached revoked record.
	assert.Equal(t, int64(2), f.probe.calls.Load())
}

func TestRevocationIsImmediateWhenCached(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.newKey(t)
	for range 10 {
		require.Equal(t, http.StatusOK, f.do(withKey(k.Key)).Code)
	}
	require.NoError(t, f.store.RevokeKey(context.Background(), k.Record.ID))
	w := f.do(withKey(k.Key))
	require.Equal(t, http.StatusUnauthorized, w.Code)
	assert.Equal(t, "revoked_api_key", decodeEnvelope(t, w).Error.Details["reason"])
}

func TestInvalidateAllDropsEverything(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.newKey(t)
	require.Equal(t, http.StatusOK, f.do(withKey(k.Key)).Code)
	require.Equal(t, http.StatusOK, f.do(withKey(k.Key)).Code)
	require.Equal(t, int64(1), f.probe.calls.Load())
	f.cache.InvalidateAll()
	require.Equal(t, http.StatusOK, f.do(withKey(k.Key)).Code)
	assert.Equal(t, int64(2), f.probe.calls.Load())
}

// Keys of different organizations in a cache of one key (MaxKeys 1), used
// concurrently: each request gets its own key's record.
func TestRequireAPIKeyTinyCache(t *testing.T) {
	store, err := memstore.New(memstore.Options{Prefix: "triq_"})
	require.NoError(t, err)
	cache, err := keyward.NewCache(store, keyward.CacheConfig{MaxKeys: 1})
	require.NoError(t, err)
	t.Cleanup(cache.Close)
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_"})
	require.NoError(t, err)
	h := auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, _ := keyward.FromContext(r.Context())
		_, _ = w.Write([]byte(k.ID))
	}))
	var keys []manage.CreatedKey
	for i := range 6 {
		org, err := store.CreateOrg(context.Background(), manage.OrgSpec{Name: "org" + strconv.Itoa(i), Plan: "free"})
		require.NoError(t, err)
		k, err := store.CreateKey(context.Background(), manage.KeySpec{OrgID: org.ID, Name: "k", Permissions: []string{"*"}})
		require.NoError(t, err)
		keys = append(keys, k)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 500 {
				k := keys[(i*7+w)%len(keys)]
				rec := httptest.NewRecorder()
				r := httptest.NewRequest(http.MethodGet, "/", nil)
				r.Header.Set("X-API-Key", k.Key)
				h.ServeHTTP(rec, r)
				if rec.Code != http.StatusOK || rec.Body.String() != k.Record.ID {
					t.Errorf("key %s: %d %q", k.Record.ID, rec.Code, rec.Body.String())
					return
				}
			}
		})
	}
	wg.Wait()
}

// The cache's front (keys by their plaintext) serves nothing the cache
// itself would not: an entry past its TTL sends the next request to the
// store again, and a cache without a front answers the same.
func TestCacheFrontFollowsTheCache(t *testing.T) {
	t.Parallel()
	for _, slots := range []int{0, -1} {
		store, err := memstore.New(memstore.Options{Prefix: "triq_"})
		require.NoError(t, err)
		probe := &probeStore{inner: store}
		cache, err := keyward.NewCache(probe, keyward.CacheConfig{TTL: 60 * time.Millisecond, FrontSlots: slots})
		require.NoError(t, err)
		t.Cleanup(cache.Close)
		auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_"})
		require.NoError(t, err)
		org, err := store.CreateOrg(context.Background(), manage.OrgSpec{Name: "o", Plan: "free"})
		require.NoError(t, err)
		k, err := store.CreateKey(context.Background(), manage.KeySpec{OrgID: org.ID, Name: "k"})
		require.NoError(t, err)
		call := func() int {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set("X-API-Key", k.Key)
			auth.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(w, r)
			return w.Code
		}
		for range 5 {
			require.Equal(t, http.StatusOK, call(), "front slots %d", slots)
		}
		require.Equal(t, int64(1), probe.calls.Load(), "front slots %d: one store lookup while cached", slots)
		time.Sleep(120 * time.Millisecond)
		require.Equal(t, http.StatusOK, call())
		require.Equal(t, int64(2), probe.calls.Load(), "front slots %d: the expired entry is not served", slots)
	}
}

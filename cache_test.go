package keyward_test

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keyward/keyward"
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

package redislimit_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/internal/ids"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
	"github.com/keyward/keyward/redislimit"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// redisOptions returns options for the test server, failing in CI and
// skipping elsewhere when it does not answer.
func redisOptions(t *testing.T) *redis.Options {
	t.Helper()
	opts, err := redis.ParseURL(testenv.RedisURL(t))
	require.NoError(t, err)
	c := redis.NewClient(opts)
	defer c.Close()
	if err := c.Ping(context.Background()).Err(); err != nil {
		testenv.Unreachable(t, "Redis at "+opts.Addr, err)
	}
	return opts
}

// midWindow keeps every request of a test inside one window.
var midWindow = time.Date(2026, 1, 19, 10, 30, 18, 0, time.UTC)

// instance is one API process: its own key cache, authenticator, Redis
// client and rate limiter, over a key store that all instances share.
type instance struct {
	h http.Handler
}

func newInstance(t *testing.T, keys keyward.KeyStore, client *redis.Client, prefix string, now func() time.Time, failClosed bool) instance {
	t.Helper()
	ctx := context.Background()
	cache, err := keyward.NewCache(keys, keyward.CacheConfig{})
	require.NoError(t, err)
	t.Cleanup(cache.Close)
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_", Now: now})
	require.NoError(t, err)
	store, err := redislimit.New(ctx, client, redislimit.Options{Prefix: prefix})
	require.NoError(t, err)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	rl, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{
		Store: store, Now: now, FailClosed: failClosed, Logger: quiet,
		Errors: &keyward.ErrorWriter{Logger: quiet},
	})
	require.NoError(t, err)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	return instance{h: auth.Middleware(rl.Middleware(ok))}
}

func (in instance) call(key string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/v1/transactions", nil)
	r.Header.Set("X-API-Key", key)
	w := httptest.NewRecorder()
	in.h.ServeHTTP(w, r)
	return w
}

func newOrgAndKey(t *testing.T) (*memstore.Store, manage.CreatedKey) {
	t.Helper()
	store, err := memstore.New(memstore.Options{Prefix: "triq_"})
	require.NoError(t, err)
	// The free plan's 60 a minute; its per-second bucket and in-flight cap
	// raised out of the way of the tests of the quota.
	org, err := store.CreateOrg(context.Background(), manage.OrgSpec{Name: "acme", Plan: "free", RatePerSecond: 1000, Concurrency: 1000})
	require.NoError(t, err)
	k, err := store.CreateKey(context.Background(), manage.KeySpec{OrgID: org.ID, Name: "production"})
	require.NoError(t, err)
	return store, k
}

func testPrefix() string { return "keyward-test-" + ids.New("") }

func TestTwoInstancesShareOneLimit(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	keys, k := newOrgAndKey(t)
	prefix := testPrefix()
	now := func() time.Time { return midWindow }
	var instances [2]instance
	for i := range instances {
		client := redis.NewClient(opts)
		t.Cleanup(func() { _ = client.Close() })
		instances[i] = newInstance(t, keys, client, prefix, now, false)
	}

	var ok, limited atomic.Int64
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch code := instances[i%2].call(k.Key).Code; code {
			case http.StatusOK:
				ok.Add(1)
			case http.StatusTooManyRequests:
				limited.Add(1)
			default:
				t.Errorf("status %d", code)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, int64(60), ok.Load(), "exactly the free plan's 60 per minute, across both instances")
	assert.Equal(t, int64(140), limited.Load())
}

// TestCounterWithoutExpiryHeals reproduces ulule issue #233: a counter key
// that lost its TTL. Under ulule alone it blocks the organization for good;
// keyward's quota counts only the seconds still in its window, and deletes
// the others.
func TestCounterWithoutExpiryHeals(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	keys, k := newOrgAndKey(t)
	prefix := testPrefix()
	var clock atomic.Pointer[time.Time]
	start := midWindow
	clock.Store(&start)
	now := func() time.Time { return *clock.Load() }
	client := redis.NewClient(opts)
	t.Cleanup(func() { _ = client.Close() })
	in := newInstance(t, keys, client, prefix, now, false)

	require.Equal(t, http.StatusOK, in.call(k.Key).Code)
	ctx := context.Background()
	all, err := client.Keys(ctx, prefix+":*").Result()
	require.NoError(t, err)
	t.Cleanup(func() { client.Del(ctx, all...) })
	var counters string
	for _, key := range all {
		if typ, _ := client.Type(ctx, key).Result(); typ == "hash" {
			counters = key
		}
	}
	require.NotEmpty(t, counters, "the organization's counters: %v", all)
	// The counters lose their expiry, with a second an hour old far over
	// the quota.
	stale := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
	require.NoError(t, client.HSet(ctx, counters, stale, 1000).Err())
	require.NoError(t, client.Persist(ctx, counters).Err())
	ttl, err := client.PTTL(ctx, counters).Result()
	require.NoError(t, err)
	require.Equal(t, time.Duration(-1), ttl, "the counters have no expiry")

	require.Equal(t, http.StatusOK, in.call(k.Key).Code, "the stuck second is out of the window")
	gone, err := client.HExists(ctx, counters, stale).Result()
	require.NoError(t, err)
	assert.False(t, gone, "and deleted")
}

func TestRedisOutage(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	for _, failClosed := range []bool{false, true} {
		t.Run(fmt.Sprintf("failClosed=%v", failClosed), func(t *testing.T) {
			t.Parallel()
			keys, k := newOrgAndKey(t)
			proxy := testenv.NewProxy(t, opts.Addr)
			po := *opts
			po.Addr = proxy.Addr()
			po.MaxRetries = -1
			po.DialTimeout = 200 * time.Millisecond
			client := redis.NewClient(&po)
			t.Cleanup(func() { _ = client.Close() })
			in := newInstance(t, keys, client, testPrefix(), func() time.Time { return midWindow }, failClosed)

			require.Equal(t, http.StatusOK, in.call(k.Key).Code)
			proxy.Cut()
			for range 20 {
				w := in.call(k.Key)
				if failClosed {
					require.Equal(t, http.StatusServiceUnavailable, w.Code)
					assert.Contains(t, w.Body.String(), `"service_unavailable"`)
				} else {
					require.Equal(t, http.StatusOK, w.Code)
					assert.Empty(t, w.Header().Get("X-RateLimit-Remaining"))
				}
			}
			proxy.Restore()
			require.Eventually(t, func() bool {
				w := in.call(k.Key)
				return w.Code == http.StatusOK && w.Header().Get("X-RateLimit-Remaining") != ""
			}, 5*time.Second, 50*time.Millisecond, "recovers without a restart")
		})
	}
}

func TestNewRejectsAnUnreachableRedis(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer client.Close()
	_, err := redislimit.New(context.Background(), client, redislimit.Options{})
	assert.ErrorContains(t, err, "Redis does not answer")
	_, err = redislimit.New(context.Background(), nil, redislimit.Options{})
	assert.Error(t, err)
	var none *redis.Client // a typed nil: refused, not a panic in Ping
	_, err = redislimit.New(context.Background(), none, redislimit.Options{})
	var ce *keyward.ConfigError
	assert.ErrorAs(t, err, &ce)
}

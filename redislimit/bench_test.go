package redislimit_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/rate"
	"github.com/keyward/keyward/redislimit"
	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/middleware/stdlib"
	ulredis "github.com/ulule/limiter/v3/drivers/store/redis"
)

type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

// benchStores returns a client, this package's Store and ulule's Redis
// store on it, each under the benchmark's own prefix.
func benchStores(b *testing.B) (*redis.Client, *redislimit.Store, limiter.Store) {
	opts := redisOptions(b)
	client := newClient(b, opts)
	prefix := testPrefix(b, opts)
	store, err := redislimit.New(context.Background(), client, redislimit.Options{Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	ululeStore, err := ulredis.NewStoreWithOptions(client, limiter.StoreOptions{Prefix: prefix + ":ulule"})
	if err != nil {
		b.Fatal(err)
	}
	return client, store, ululeStore
}

// BenchmarkRedisRateLimit compares, on one Redis and one client, ulule's
// own stdlib middleware over ulule's Redis store (impl=ulule: one fixed
// window a minute, keyed by client IP) with RequireAPIKey → RateLimitByOrg
// over this package's Store (impl=auth+limit: a cached key, and all three
// limits of its organization). Each decision is one Redis round trip in
// both; keyward's chain also gives its in-flight slot back when the
// request ends (Store.Release: the next request's script reuses or
// removes it, no round trip of its own). Limits are set so high that no
// request is refused.
func BenchmarkRedisRateLimit(b *testing.B) {
	_, store, ululeStore := benchStores(b)
	keys, _, k := newOrgAndKey(b, manage.OrgSpec{Name: "bench", Plan: "enterprise", RatePerMinute: keyward.MaxRatePerMinute,
		RatePerSecond: keyward.MaxRatePerMinute / 60, Concurrency: keyward.MaxRatePerMinute})
	cache, err := keyward.NewCache(keys, keyward.CacheConfig{TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cache.Close)
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_"})
	if err != nil {
		b.Fatal(err)
	}
	rl, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{Store: store})
	if err != nil {
		b.Fatal(err)
	}
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	handlers := map[string]http.Handler{
		"ulule":      stdlib.NewMiddleware(limiter.New(ululeStore, limiter.Rate{Period: time.Minute, Limit: 1 << 50})).Handler(ok),
		"auth+limit": auth.Middleware(rl.Middleware(ok)),
	}
	r, _ := http.NewRequest(http.MethodGet, "/v1/transactions", nil)
	r.Header.Set("X-API-Key", k.Key)
	r.RemoteAddr = "203.0.113.7:41234"
	for impl, h := range handlers {
		// Both limit and count: a limiter that fails open would measure
		// nothing.
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK || w.Header().Get("X-RateLimit-Remaining") == "" {
			b.Fatalf("%s: status %d, headers %v", impl, w.Code, w.Header())
		}
	}

	for _, mode := range []string{"serial", "parallel"} {
		for _, impl := range []string{"ulule", "auth+limit"} {
			h := handlers[impl]
			b.Run("impl="+impl+"/"+mode, func(b *testing.B) {
				b.ReportAllocs()
				if mode == "parallel" {
					b.RunParallel(func(pb *testing.PB) {
						w := &discard{h: http.Header{}}
						for pb.Next() {
							h.ServeHTTP(w, r)
						}
					})
					return
				}
				w := &discard{h: http.Header{}}
				for b.Loop() {
					h.ServeHTTP(w, r)
				}
			})
		}
	}
}

// floorScript is the least a script can do that answers as take.lua
// does: read Redis's clock and return nine numbers.
var floorScript = redis.NewScript(`redis.call('TIME') return {0, 0, 0, 0, 0, 0, 0, 0, 0}`)

// BenchmarkRedisStore compares the stores alone, serially, without any
// middleware: ulule's Redis store counting one request in its fixed
// window (impl=ulule: INCRBY and PTTL in one script), this package's
// Store deciding all three limits and giving the slot back (impl=keyward:
// take.lua), and a script that only reads Redis's clock and answers nine
// numbers (impl=floor): what any one-script decision costs at least on
// this client and server. Read Redis's own time per call with
// INFO commandstats (EVALSHA's usec_per_call) after each.
func BenchmarkRedisStore(b *testing.B) {
	ctx := context.Background()
	client, store, ululeStore := benchStores(b)
	if err := floorScript.Load(ctx, client).Err(); err != nil {
		b.Fatal(err)
	}
	req := rate.Request{Org: "org_bench", Key: "key_bench", PerSecond: keyward.MaxRatePerMinute / 60,
		PerMinute: keyward.MaxRatePerMinute, Concurrency: keyward.MaxRatePerMinute}
	ululeRate := limiter.Rate{Period: time.Minute, Limit: 1 << 50}
	b.Run("impl=ulule", func(b *testing.B) {
		for b.Loop() {
			if _, err := ululeStore.Get(ctx, "203.0.113.7", ululeRate); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=keyward", func(b *testing.B) {
		for b.Loop() {
			res, err := store.Take(ctx, req)
			if err != nil || res.Refused != "" {
				b.Fatal(err, res.Refused)
			}
			store.Release(req.Org, res.Slot)
		}
	})
	b.Run("impl=floor", func(b *testing.B) {
		for b.Loop() {
			if err := floorScript.EvalSha(ctx, client, nil).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

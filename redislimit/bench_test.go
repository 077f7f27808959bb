package redislimit_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
	"github.com/keyward/keyward/redislimit"
	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/middleware/stdlib"
	sredis "github.com/ulule/limiter/v3/drivers/store/redis"
)

type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkRedisRateLimit compares, on one Redis: ulule's own stdlib
// middleware alone (impl=ulule) and RequireAPIKey → RateLimitByOrg with a
// cached key (impl=auth+limit). Each request is one Redis round trip in
// both.
func BenchmarkRedisRateLimit(b *testing.B) {
	url := testenv.RedisURL(b)
	opts, err := redis.ParseURL(url)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	client := redis.NewClient(opts)
	defer client.Close()
	if err := client.Ping(ctx).Err(); err != nil {
		testenv.Unreachable(b, "Redis", err)
	}
	prefix := testPrefix()
	store, err := redislimit.New(ctx, client, redislimit.Options{Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		keys, _ := client.Keys(ctx, prefix+":*").Result()
		if len(keys) > 0 {
			client.Del(ctx, keys...)
		}
	}()

	keys, err := memstore.New(memstore.Options{Prefix: "triq_"})
	if err != nil {
		b.Fatal(err)
	}
	org, _ := keys.CreateOrg(ctx, manage.OrgSpec{Name: "bench", Plan: "enterprise", RatePerMinute: keyward.MaxRatePerMinute})
	k, _ := keys.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "bench"})
	cache, _ := keyward.NewCache(keys, keyward.CacheConfig{TTL: time.Hour})
	defer cache.Close()
	auth, _ := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_"})
	rl, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{Store: store})
	if err != nil {
		b.Fatal(err)
	}
	ulule, err := sredis.NewStoreWithOptions(client, limiter.StoreOptions{Prefix: prefix + ":ulule"})
	if err != nil {
		b.Fatal(err)
	}
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	handlers := map[string]http.Handler{
		"ulule":      stdlib.NewMiddleware(limiter.New(ulule, limiter.Rate{Period: time.Minute, Limit: 1 << 50})).Handler(ok),
		"auth+limit": auth.Middleware(rl.Middleware(ok)),
	}
	r, _ := http.NewRequest(http.MethodGet, "/v1/transactions", nil)
	r.Header.Set("X-API-Key", k.Key)
	r.RemoteAddr = "203.0.113.7:41234"

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

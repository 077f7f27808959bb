package keyward_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/rate"
	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/middleware/stdlib"
	"github.com/ulule/limiter/v3/drivers/store/memory"
)

// unlimited is a plan table under which no benchmark ever hits a limit.
var unlimited, _ = keyward.NewPlans(keyward.Plan{Name: "free", Limits: keyward.Limits{RequestsPerSecond: keyward.MaxRatePerMinute / 60,
	RequestsPerMinute: keyward.MaxRatePerMinute, Concurrency: keyward.MaxRatePerMinute, MonthlyCredits: 100}})

// RateLimitChains builds, over one limiter store, the three handlers the
// rate-limit benchmarks compare:
//
//	ulule: ulule's own stdlib middleware (keyed by client IP) alone;
//	auth+limit: RequireAPIKey → RateLimitByOrg;
//	chain: RequireAPIKey → EnforcePermissions → RateLimitByOrg.
//
// A nil store means keyward's default (in-memory) for RateLimitByOrg;
// ulule's middleware has ulule's memory store.
func RateLimitChains(b *testing.B, store rate.Store) (ulule, authLimit, chain http.Handler, r *http.Request) {
	f := newFixtureWithPlans(b, unlimited)
	k := f.newKey(b)
	cache, err := keyward.NewCache(f.probe, keyward.CacheConfig{TTL: time.Hour})
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
	perms, err := keyward.EnforcePermissions(keyward.PermissionConfig{Required: []string{"transactions:enrich"}})
	if err != nil {
		b.Fatal(err)
	}
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	ulule = stdlib.NewMiddleware(limiter.New(memory.NewStore(), limiter.Rate{Period: time.Minute, Limit: 1 << 50})).Handler(ok)
	authLimit = auth.Middleware(rl.Middleware(okHandler))
	chain = auth.Middleware(perms.Middleware(rl.Middleware(okHandler)))
	r = benchRequest(b, k.Key)
	r.RemoteAddr = "203.0.113.7:41234"
	return ulule, authLimit, chain, r
}

func BenchmarkRateLimit(b *testing.B) {
	ulule, authLimit, chain, r := RateLimitChains(b, nil)
	for _, mode := range []struct {
		name     string
		parallel bool
	}{{"serial", false}, {"parallel", true}} {
		b.Run("impl=ulule/"+mode.name, func(b *testing.B) { runHandler(b, ulule, r, mode.parallel) })
		b.Run("impl=auth+limit/"+mode.name, func(b *testing.B) { runHandler(b, authLimit, r, mode.parallel) })
		b.Run("impl=chain/"+mode.name, func(b *testing.B) { runHandler(b, chain, r, mode.parallel) })
	}
}

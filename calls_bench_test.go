package keyward_test

import (
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/usage"
)

// callCounter is an AuthConfig.Usage that records what sqlstore.Store
// does, in memory: last-used times and each call (usage.Counter).
type callCounter struct {
	usage.Counter
	uses atomic.Int64
}

func (c *callCounter) RecordUse(*keyward.KeyRecord) { c.uses.Add(1) }

// fullChainRecorded is fullChain whose RequireAPIKey records each call in
// rec (AuthConfig.Usage), the usage chart's counts.
func fullChainRecorded(t testing.TB, rec *callCounter) (http.Handler, *http.Request) {
	unlimited, err := keyward.NewPlans(keyward.Plan{Name: "free", Limits: keyward.Limits{RequestsPerSecond: keyward.MaxRatePerMinute / 60,
		RequestsPerMinute: keyward.MaxRatePerMinute, Concurrency: keyward.MaxRatePerMinute, MonthlyCredits: 100}})
	if err != nil {
		t.Fatal(err)
	}
	f := newCreditFixtureWithPlans(t, unlimited, 0, true) // overage: never runs out
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: f.cache, Prefix: "triq_", Errors: f.errors, Now: f.now.Now, Usage: rec})
	if err != nil {
		t.Fatal(err)
	}
	perm, err := keyward.EnforcePermissions(keyward.PermissionConfig{Required: []string{"transactions:enrich"}})
	if err != nil {
		t.Fatal(err)
	}
	limit, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return auth.Middleware(perm.Middleware(limit.Middleware(f.charger.Middleware(okHandler)))), benchRequest(nil, f.key.Key)
}

// BenchmarkFullChainRecorded is BenchmarkFullChain with each call
// recorded for the usage chart (AuthConfig.Usage records calls).
func BenchmarkFullChainRecorded(b *testing.B) {
	rec := &callCounter{}
	h, r := fullChainRecorded(b, rec)
	runHandler(b, h, r, false)
	if len(rec.Take()) == 0 {
		b.Fatal("no call was recorded")
	}
}

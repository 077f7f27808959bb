package keyward_test

import (
	"net/http"
	"testing"

	"github.com/keyward/keyward"
)

// fullChain is RequireAPIKey → EnforcePermissions → RateLimitByOrg →
// ChargeCredits with its defaults on memory backends, a cached key and
// limits it never reaches, and a keyed request for it.
func fullChain(b *testing.B) (http.Handler, *http.Request) {
	unlimited, err := keyward.NewPlans(keyward.Plan{Name: "free", Limits: keyward.Limits{RequestsPerSecond: keyward.MaxRatePerMinute / 60,
		RequestsPerMinute: keyward.MaxRatePerMinute, Concurrency: keyward.MaxRatePerMinute, MonthlyCredits: 100}})
	if err != nil {
		b.Fatal(err)
	}
	f := newCreditFixtureWithPlans(b, unlimited, 0, true) // overage: never runs out
	perm, err := keyward.EnforcePermissions(keyward.PermissionConfig{Required: []string{"transactions:enrich"}})
	if err != nil {
		b.Fatal(err)
	}
	limit, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{})
	if err != nil {
		b.Fatal(err)
	}
	return f.auth.Middleware(perm.Middleware(limit.Middleware(f.charger.Middleware(okHandler)))), benchRequest(b, f.key.Key)
}

// BenchmarkFullChain is the whole chain on one request, serially. With
// telemetry it runs on the global (no-op) providers; scripts/bench-telemetry
// runs it against the commit before telemetry too.
func BenchmarkFullChain(b *testing.B) {
	h, r := fullChain(b)
	runChain(b, h, r)
}

// runChain runs h serially and reports, beside the wall time, the
// process's CPU time per request (cpu-ns/op): on a shared machine it moves
// less than the wall time, since time spent waiting for a core is not
// counted.
func runChain(b *testing.B, h http.Handler, r *http.Request) {
	start := cpuTime()
	runHandler(b, h, r, false)
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

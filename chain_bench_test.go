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
	runHandler(b, h, r, false)
}

//go:build !race

package keyward_test

import (
	"net/http"
	"testing"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/usage"
	"github.com/stretchr/testify/require"
)

// The allocation budgets of the hot path (a cached key, memory backends,
// net/http). They are checked without the race detector, which allocates
// on its own: go test -run Alloc .

// RequireAPIKey alone: the request state, which holds the request copy
// passed on, and the context.WithValue that carries it.
func TestRequireAPIKeyHotPathAllocations(t *testing.T) {
	f := newFixture(t)
	k := f.newKey(t)
	h := f.auth.Middleware(okHandler)
	r := benchRequest(nil, k.Key)
	w := &discard{h: http.Header{}}
	h.ServeHTTP(w, r)
	require.Equal(t, int64(1), f.probe.calls.Load(), "the warm-up looked the key up")
	got := testing.AllocsPerRun(1000, func() { h.ServeHTTP(w, r) })
	t.Logf("RequireAPIKey: %v allocs per request", got)
	if got > 2 {
		t.Fatalf("allocs per request = %v, want ≤ 2", got)
	}
	require.Equal(t, int64(1), f.probe.calls.Load(), "every request was a cache hit")
}

// RequireAPIKey → ChargeCredits: the Charge, its header values and its
// place in the keep-alive list cost nothing more (the request state).
func TestChargeCreditsHotPathAllocations(t *testing.T) {
	f := newCreditFixture(t, 0, true) // overage: never runs out
	h := f.chain(t, 1, okHandler)
	r := benchRequest(nil, f.key.Key)
	w := &discard{h: http.Header{}}
	h.ServeHTTP(w, r)
	require.NotEmpty(t, w.h.Get(keyward.HeaderCreditsRemaining), "the charge ran")
	got := testing.AllocsPerRun(1000, func() { clear(w.h); h.ServeHTTP(w, r) })
	t.Logf("RequireAPIKey → ChargeCredits: %v allocs per request", got)
	if got > 2 {
		t.Fatalf("allocs per request = %v, want ≤ 2", got)
	}
}

// The whole chain, every handler with its defaults on memory backends:
// RequireAPIKey → EnforcePermissions → RateLimitByOrg → ChargeCredits.
func TestFullChainHotPathAllocations(t *testing.T) {
	unlimited, err := keyward.NewPlans(keyward.Plan{Name: "free", Limits: keyward.Limits{RequestsPerSecond: keyward.MaxRatePerMinute / 60,
		RequestsPerMinute: keyward.MaxRatePerMinute, Concurrency: keyward.MaxRatePerMinute, MonthlyCredits: 100}})
	require.NoError(t, err)
	f := newCreditFixtureWithPlans(t, unlimited, 0, true) // overage: never runs out
	perm, err := keyward.EnforcePermissions(keyward.PermissionConfig{Required: []string{"transactions:enrich"}})
	require.NoError(t, err)
	limit, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{})
	require.NoError(t, err)
	h := f.auth.Middleware(perm.Middleware(limit.Middleware(f.charger.Middleware(okHandler))))
	r := benchRequest(nil, f.key.Key)
	w := &discard{h: http.Header{}}
	h.ServeHTTP(w, r)
	require.NotEmpty(t, w.h.Get("X-RateLimit-Remaining"), "the limiter ran")
	require.NotEmpty(t, w.h.Get(keyward.HeaderCreditsRemaining), "the charge ran")
	got := testing.AllocsPerRun(1000, func() { clear(w.h); h.ServeHTTP(w, r) })
	t.Logf("full chain: %v allocs per request", got)
	if got > 4 {
		t.Fatalf("allocs per request = %v, want ≤ 4", got)
	}
}

// The whole chain with each call recorded for the usage chart
// (AuthConfig.Usage records calls): the recording costs no allocation (it
// lives in the request state), so the budget is the full chain's.
func TestFullChainRecordedHotPathAllocations(t *testing.T) {
	rec := &callCounter{}
	h, r := fullChainRecorded(t, rec)
	w := &discard{h: http.Header{}}
	h.ServeHTTP(w, r)
	require.NotEmpty(t, w.h.Get(keyward.HeaderCreditsRemaining), "the charge ran")
	got := testing.AllocsPerRun(1000, func() { clear(w.h); h.ServeHTTP(w, r) })
	t.Logf("full chain, recorded: %v allocs per request", got)
	if got > 4 {
		t.Fatalf("allocs per request = %v, want ≤ 4", got)
	}
	var calls, credits int64
	for _, n := range rec.Take() {
		require.Equal(t, usage.Served, n.Outcome)
		calls, credits = calls+n.Requests, credits+n.Credits
	}
	require.Equal(t, int64(1002), calls, "every call was recorded, once")
	require.Equal(t, calls, credits, "each at its cost")
}

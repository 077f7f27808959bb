package keyward_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A nil plan table is DefaultPlans() everywhere: in Plans' methods, in
// manage.NewOrg and in memstore, and so in what the handlers enforce.
func TestNilPlansAreTheDefaults(t *testing.T) {
	t.Parallel()
	var nilPlans *keyward.Plans
	growth := keyward.Organization{ID: "o", Name: "g", Plan: "growth"}
	l, err := nilPlans.Resolve(growth)
	require.NoError(t, err)
	assert.Equal(t, keyward.Limits{RequestsPerSecond: 10, RequestsPerMinute: 600, Burst: 10, Concurrency: 10, MonthlyCredits: 25_000}, l)
	p, ok := nilPlans.Plan("business")
	assert.True(t, ok)
	assert.Equal(t, keyward.Limits{RequestsPerSecond: 20, RequestsPerMinute: 1_200, Concurrency: 20, MonthlyCredits: 100_000}, p.Limits,
		"the burst is the default")
	_, err = nilPlans.Resolve(keyward.Organization{Plan: "platinum"})
	assert.Error(t, err)

	o, err := manage.NewOrg("org_1", manage.OrgSpec{Name: "g", Plan: "growth"}, nil)
	require.NoError(t, err)
	assert.Equal(t, keyward.Limits{RequestsPerSecond: 10, RequestsPerMinute: 600, Burst: 10, Concurrency: 10, MonthlyCredits: 25_000}, o.Limits)
	assert.NoError(t, manage.CheckOrg(growth, nil))

	store, err := memstore.New(memstore.Options{Prefix: "triq_", Plans: nil})
	require.NoError(t, err)
	org, err := store.CreateOrg(context.Background(), manage.OrgSpec{Name: "g", Plan: "growth"})
	require.NoError(t, err)
	assert.Equal(t, keyward.Limits{RequestsPerSecond: 10, RequestsPerMinute: 600, Burst: 10, Concurrency: 10, MonthlyCredits: 25_000}, org.Limits)
	key, err := store.CreateKey(context.Background(), manage.KeySpec{OrgID: org.ID, Name: "k"})
	require.NoError(t, err)
	rec, err := store.LookupKey(context.Background(), key.Record.Hash)
	require.NoError(t, err)
	assert.Equal(t, keyward.Limits{RequestsPerSecond: 10, RequestsPerMinute: 600, Burst: 10, Concurrency: 10, MonthlyCredits: 25_000}, rec.Org.Limits)
	assert.Equal(t, int64(25_000), rec.Org.Account().Allocation)

	// And the handlers enforce them.
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: store, Prefix: "triq_"})
	require.NoError(t, err)
	limiter, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{})
	require.NoError(t, err)
	ledger, err := memstore.NewLedger(memstore.LedgerOptions{})
	require.NoError(t, err)
	charger, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: ledger})
	require.NoError(t, err)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-API-Key", key.Key)
	w := httptest.NewRecorder()
	auth.Middleware(limiter.Middleware(charger.Middleware(okHandler))).ServeHTTP(w, r)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.Equal(t, "10", w.Header().Get("X-RateLimit-Limit"))
	assert.Equal(t, "24999", w.Header().Get(keyward.HeaderCreditsRemaining))
}

// The plan table refuses what it cannot resolve, all at once.
func TestNewPlansReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := keyward.NewPlans(
		keyward.Plan{Name: "x", Limits: keyward.Limits{RequestsPerMinute: -1}},
		keyward.Plan{Name: "y", Limits: keyward.Limits{MonthlyCredits: -5}},
		keyward.Plan{Name: "y"},
		keyward.Plan{},
	)
	require.Error(t, err)
	var ce *keyward.ConfigError
	assert.ErrorAs(t, err, &ce)
	for _, want := range []string{`Plans["x"] has a limit out of range: rate -1`, `Plans["y"] has a limit out of range: credits -5`, `Plans["y"] is named twice`, "without a name"} {
		assert.Contains(t, err.Error(), want)
	}
	_, err = keyward.NewPlans()
	assert.ErrorContains(t, err, "empty")
}

func TestPlansResolve(t *testing.T) {
	t.Parallel()
	plans, err := keyward.NewPlans(
		keyward.Plan{Name: "pro", Limits: keyward.Limits{RequestsPerMinute: 10, MonthlyCredits: 50}},
		keyward.Plan{Name: "custom"},
		keyward.Plan{Name: "basic", Limits: keyward.Limits{RequestsPerMinute: 1}},
		keyward.Plan{Name: "steady", Limits: keyward.Limits{RequestsPerSecond: 4, RequestsPerMinute: 240, Burst: 1, Concurrency: 3}},
	)
	require.NoError(t, err)
	for _, tc := range []struct {
		org  keyward.Organization
		want keyward.Limits
		err  string
	}{
		// A per-second rate, in-flight cap and burst not given are derived:
		// the minute spread over 60 s, rounded up; that, at least 2; the
		// larger of the two (what may be in flight may start together).
		{keyward.Organization{Plan: "pro"}, keyward.Limits{RequestsPerSecond: 1, RequestsPerMinute: 10, Burst: 2, Concurrency: 2, MonthlyCredits: 50}, ""},
		{keyward.Organization{Plan: "pro", RatePerMinute: 99}, keyward.Limits{RequestsPerSecond: 2, RequestsPerMinute: 99, Burst: 2, Concurrency: 2, MonthlyCredits: 50}, ""},
		{keyward.Organization{Plan: "pro", RatePerMinute: 6000}, keyward.Limits{RequestsPerSecond: 100, RequestsPerMinute: 6000, Burst: 100, Concurrency: 100, MonthlyCredits: 50}, ""},
		{keyward.Organization{Plan: "pro", RatePerSecond: 7, Concurrency: 3}, keyward.Limits{RequestsPerSecond: 7, RequestsPerMinute: 10, Burst: 7, Concurrency: 3, MonthlyCredits: 50}, ""},
		{keyward.Organization{Plan: "pro", RatePerSecond: 1, Concurrency: 5}, keyward.Limits{RequestsPerSecond: 1, RequestsPerMinute: 10, Burst: 5, Concurrency: 5, MonthlyCredits: 50}, ""},
		{keyward.Organization{Plan: "pro", Burst: 9}, keyward.Limits{RequestsPerSecond: 1, RequestsPerMinute: 10, Burst: 9, Concurrency: 2, MonthlyCredits: 50}, ""},
		{keyward.Organization{Plan: "pro", MonthlyCredits: 7}, keyward.Limits{RequestsPerSecond: 1, RequestsPerMinute: 10, Burst: 2, Concurrency: 2, MonthlyCredits: 7}, ""},
		{keyward.Organization{Plan: "custom", RatePerMinute: 5}, keyward.Limits{RequestsPerSecond: 1, RequestsPerMinute: 5, Burst: 2, Concurrency: 2}, ""},
		// A plan's burst holds, whatever its rate; an organization's override wins.
		{keyward.Organization{Plan: "steady"}, keyward.Limits{RequestsPerSecond: 4, RequestsPerMinute: 240, Burst: 1, Concurrency: 3}, ""},
		{keyward.Organization{Plan: "steady", Burst: 6}, keyward.Limits{RequestsPerSecond: 4, RequestsPerMinute: 240, Burst: 6, Concurrency: 3}, ""},
		{keyward.Organization{Plan: "pro", Burst: -1}, keyward.Limits{}, "burst -1 is out of range"},
		{keyward.Organization{Plan: "pro", Burst: keyward.MaxRatePerMinute + 1}, keyward.Limits{}, "burst 1000000001 is out of range"},
		{keyward.Organization{Plan: "pro", RatePerSecond: -1}, keyward.Limits{}, "rate -1/s is out of range"},
		{keyward.Organization{Plan: "pro", RatePerSecond: keyward.MaxRatePerMinute/60 + 1}, keyward.Limits{}, "out of range"},
		{keyward.Organization{Plan: "pro", Concurrency: -1}, keyward.Limits{}, "in-flight cap -1 is out of range"},
		{keyward.Organization{Plan: "custom"}, keyward.Limits{}, "custom rate"},
		{keyward.Organization{Plan: "free"}, keyward.Limits{}, `"free"`},
		{keyward.Organization{Plan: "pro", RatePerMinute: -1}, keyward.Limits{}, "out of range"},
		{keyward.Organization{Plan: "pro", MonthlyCredits: -1}, keyward.Limits{}, "out of range"},
	} {
		got, err := plans.Resolve(tc.org)
		if tc.err != "" {
			assert.ErrorContains(t, err, tc.err, "%+v", tc.org)
			continue
		}
		require.NoError(t, err, "%+v", tc.org)
		assert.Equal(t, tc.want, got, "%+v", tc.org)
	}
	// The store resolves with its own table.
	store, err := memstore.New(memstore.Options{Prefix: "triq_", Plans: plans})
	require.NoError(t, err)
	_, err = store.CreateOrg(context.Background(), manage.OrgSpec{Name: "a", Plan: "free"})
	assert.ErrorContains(t, err, `"free"`)
	org, err := store.CreateOrg(context.Background(), manage.OrgSpec{Name: "a", Plan: "pro", MonthlyCredits: 7})
	require.NoError(t, err)
	assert.Equal(t, keyward.Limits{RequestsPerSecond: 1, RequestsPerMinute: 10, Burst: 2, Concurrency: 2, MonthlyCredits: 7}, org.Limits)
	assert.True(t, strings.HasPrefix(org.ID, "org_"))
}

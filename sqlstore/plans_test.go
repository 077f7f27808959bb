package sqlstore_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var pro = keyward.Plan{Name: "pro", Limits: keyward.Limits{RequestsPerSecond: 15, RequestsPerMinute: 900, Burst: 15, Concurrency: 15, MonthlyCredits: 50_000}}

// defaultRows is keyward.DefaultPlans() as rows, sorted by name.
func defaultRows(t *testing.T) []keyward.Plan {
	t.Helper()
	var out []keyward.Plan
	for _, name := range []string{"business", "enterprise", "free", "growth", "starter"} {
		p, ok := keyward.DefaultPlans().Plan(name)
		require.True(t, ok, name)
		out = append(out, p)
	}
	return out
}

// TestPlanTableSeeded: a new database's plan table is DefaultPlans(), and
// the store resolves with it.
func TestPlanTableSeeded(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			s := open(t, newDSN(t, engine), sqlstore.Options{})
			got, err := s.ListPlans(context.Background())
			require.NoError(t, err)
			assert.Equal(t, defaultRows(t), got, "migration 0006 seeds keyward.DefaultPlans()")
			assert.False(t, s.PlansFromCode())
			o, err := s.CreateOrg(context.Background(), manage.OrgSpec{Name: "a", Plan: "growth"})
			require.NoError(t, err)
			assert.Equal(t, keyward.Limits{RequestsPerSecond: 10, RequestsPerMinute: 600, Burst: 10, Concurrency: 10, MonthlyCredits: 25_000}, o.Limits)
		})
	}
}

// countingInvalidator counts InvalidateAll calls.
type countingInvalidator struct{ all atomic.Int64 }

func (*countingInvalidator) Invalidate(keyward.KeyHash) {}
func (c *countingInvalidator) InvalidateAll()           { c.all.Add(1) }

// TestPlanRollingDeploy: one instance adds a plan and puts an
// organization on it; another, opened before (its periodic reload an hour
// away), resolves the organization's key with the new plan's limits at
// once instead of answering 500s. A change of the plan's limits reaches
// an instance that watches within its change feed's bound (PollInterval
// on SQLite, milliseconds on PostgreSQL), dropping its cache, and one
// that does not within PlanInterval.
func TestPlanRollingDeploy(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := newDSN(t, engine)
			old := open(t, dsn, sqlstore.Options{PlanInterval: time.Hour})
			watching := open(t, dsn, sqlstore.Options{PlanInterval: time.Hour})
			inv := &countingInvalidator{}
			watching.Watch(inv)
			polling := open(t, dsn, sqlstore.Options{PlanInterval: 100 * time.Millisecond})
			deployed := open(t, dsn, sqlstore.Options{})

			require.NoError(t, deployed.SetPlan(ctx, pro))
			org, err := deployed.CreateOrg(ctx, manage.OrgSpec{Name: "acme", Plan: "pro"})
			require.NoError(t, err)
			k, err := deployed.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "prod", Permissions: []string{"transactions:enrich"}})
			require.NoError(t, err)

			// A request to the older instance, through its cache and the
			// per-organization limiter: 200 with the plan's quota, not 500.
			cache, err := keyward.NewCache(old, keyward.CacheConfig{})
			require.NoError(t, err)
			defer cache.Close()
			auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_"})
			require.NoError(t, err)
			limit, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{})
			require.NoError(t, err)
			w := httptest.NewRecorder()
			auth.Middleware(limit.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))).ServeHTTP(w, newRequest(k.Key))
			assert.Equal(t, http.StatusOK, w.Code, w.Body.String())
			assert.Contains(t, w.Header().Get("RateLimit-Policy"), "q=900")

			rec, err := old.LookupKey(ctx, k.Record.Hash)
			require.NoError(t, err)
			assert.Equal(t, pro.Limits, rec.Org.Limits, "the older instance read the new plan when it met it")
			o, err := old.Org(ctx, org.ID)
			require.NoError(t, err)
			assert.Equal(t, pro.Limits, o.Limits)

			// The organization on it can be moved by the older instance too.
			other, err := deployed.CreateOrg(ctx, manage.OrgSpec{Name: "other"})
			require.NoError(t, err)
			require.NoError(t, deployed.SetPlan(ctx, keyward.Plan{Name: "team", Limits: keyward.Limits{RequestsPerMinute: 70}}))
			other.Plan = "team"
			require.NoError(t, old.UpdateOrg(ctx, other))

			before := inv.all.Load()
			faster := keyward.Plan{Name: "pro", Limits: keyward.Limits{RequestsPerMinute: 1_500, MonthlyCredits: 50_000}}
			require.NoError(t, deployed.SetPlan(ctx, faster))
			assert.Equal(t, faster, mustPlan(t, deployed, "pro"), "the changing instance at once")
			assert.Eventually(t, func() bool { return mustPlan(t, watching, "pro") == faster && inv.all.Load() > before },
				2*time.Second, 10*time.Millisecond, "the change feed reports plan changes and drops the cache")
			assert.Eventually(t, func() bool { return mustPlan(t, polling, "pro") == faster },
				2*time.Second, 10*time.Millisecond, "PlanInterval bounds how stale a table is")
			assert.Equal(t, pro, mustPlan(t, old, "pro"), "an hour's PlanInterval and no feed: not yet")
		})
	}
}

func mustPlan(t *testing.T, s *sqlstore.Store, name string) keyward.Plan {
	p, _ := s.Plans().Plan(name)
	return p
}

// TestPlanChangesRefused: a plan in use cannot be deleted (the error
// names its organizations); an invalid plan, a missing one, the last one,
// and making a plan custom under organizations that rely on its rate are
// refused, and change nothing.
func TestPlanChangesRefused(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := open(t, newDSN(t, engine), sqlstore.Options{})
			require.NoError(t, s.SetPlan(ctx, pro))
			org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "acme", Plan: "pro"})
			require.NoError(t, err)

			err = s.DeletePlan(ctx, "pro")
			var inUse *sqlstore.PlanInUseError
			require.ErrorAs(t, err, &inUse)
			assert.Equal(t, &sqlstore.PlanInUseError{Plan: "pro", Count: 1, Orgs: []string{org.ID}}, inUse)
			assert.Contains(t, err.Error(), org.ID)
			assert.Equal(t, pro, mustPlan(t, s, "pro"))

			err = s.SetPlan(ctx, keyward.Plan{Name: "pro"})
			assert.ErrorContains(t, err, "custom rate", "acme relies on pro's rate")
			err = s.SetPlan(ctx, keyward.Plan{Name: "pro", Limits: keyward.Limits{RequestsPerMinute: keyward.MaxRatePerMinute + 1}})
			assert.ErrorContains(t, err, "out of range")
			assert.ErrorContains(t, s.SetPlan(ctx, keyward.Plan{Limits: keyward.Limits{RequestsPerMinute: 1}}), "without a name")
			assert.ErrorIs(t, s.DeletePlan(ctx, "platinum"), sqlstore.ErrPlanNotFound)
			rows, err := s.ListPlans(ctx)
			require.NoError(t, err)
			assert.Len(t, rows, 6, "nothing changed")
			assert.Contains(t, rows, pro)

			org.Plan = "business"
			require.NoError(t, s.UpdateOrg(ctx, org))
			require.NoError(t, s.DeletePlan(ctx, "pro"))
			_, ok := s.Plans().Plan("pro")
			assert.False(t, ok, "deleted")
			_, err = s.CreateOrg(ctx, manage.OrgSpec{Name: "late", Plan: "pro"})
			assert.ErrorContains(t, err, `unknown plan "pro"`)

			for _, p := range defaultRows(t)[1:] {
				require.NoError(t, s.DeletePlan(ctx, p.Name))
			}
			err = s.DeletePlan(ctx, "business")
			assert.ErrorContains(t, err, "last")
		})
	}
}

// TestPlanNamesFollowTheRuleOfNames: a new plan's name is judged as an
// organization's (manage.CheckText): no control characters (a terminal
// escape), at most manage.MaxNameLen bytes. A plan stored before the rule
// can still be changed.
func TestPlanNamesFollowTheRuleOfNames(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := open(t, newDSN(t, engine), sqlstore.Options{})
			for _, name := range []string{"\x1b[2J\x1b[31mfree", strings.Repeat("p", 5000), "pro\u202e", "a\xffb"} {
				bad := pro
				bad.Name = name
				assert.Error(t, s.SetPlan(ctx, bad), "%q", name)
			}
			rows, err := s.ListPlans(ctx)
			require.NoError(t, err)
			assert.Len(t, rows, 5, "nothing changed")
			long := strings.Repeat("p", 300)
			_, err = s.DB().ExecContext(ctx, `INSERT INTO keyward_plans (name, requests_per_second, requests_per_minute, concurrency, monthly_credits)
				VALUES ($1, 1, 60, 2, 10)`, long)
			require.NoError(t, err)
			old := pro
			old.Name = long
			require.NoError(t, s.SetPlan(ctx, old), "a stored name is not judged again")
		})
	}
}

// TestPlansFromCode: a table given by code is authoritative: the store
// resolves and lists with it, and refuses to change the database's.
func TestPlansFromCode(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := newDSN(t, engine)
			table, err := keyward.NewPlans(pro, keyward.Plan{Name: `odd "name", ok`, Limits: keyward.Limits{RequestsPerMinute: 1}})
			require.NoError(t, err)
			s := open(t, dsn, sqlstore.Options{Plans: table})
			assert.True(t, s.PlansFromCode())
			assert.Same(t, table, s.Plans())
			got, err := s.ListPlans(ctx)
			require.NoError(t, err)
			assert.Equal(t, []keyward.Plan{{Name: `odd "name", ok`, Limits: keyward.Limits{RequestsPerMinute: 1}}, pro}, got)
			assert.ErrorIs(t, s.SetPlan(ctx, pro), sqlstore.ErrPlansFromCode)
			assert.ErrorIs(t, s.DeletePlan(ctx, "pro"), sqlstore.ErrPlansFromCode)
			o, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "acme", Plan: "pro"})
			require.NoError(t, err)
			assert.Equal(t, pro.Limits, o.Limits)
			_, err = s.CreateOrg(ctx, manage.OrgSpec{Name: "b", Plan: "free"})
			assert.ErrorContains(t, err, `unknown plan "free"`, "the database's table is not read")

			db := open(t, dsn, sqlstore.Options{})
			rows, err := db.ListPlans(ctx)
			require.NoError(t, err)
			assert.Equal(t, defaultRows(t), rows, "the database's table is untouched")
			assert.False(t, errors.Is(db.SetPlan(ctx, pro), sqlstore.ErrPlansFromCode))
		})
	}
}

// An instance whose copy of the table is stale cannot put an organization
// on a plan another instance deleted, or made custom-rate, since: the
// check reads the database's row in the organization's own transaction.
func TestOrgsCheckTheDatabasesPlan(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := newDSN(t, engine)
			b := open(t, dsn, sqlstore.Options{PlanInterval: time.Hour})
			require.NoError(t, b.SetPlan(ctx, keyward.Plan{Name: "pro", Limits: keyward.Limits{RequestsPerMinute: 900}}))
			require.NoError(t, b.SetPlan(ctx, keyward.Plan{Name: "team", Limits: keyward.Limits{RequestsPerMinute: 70}}))
			a := open(t, dsn, sqlstore.Options{PlanInterval: time.Hour}) // reads both plans now
			org, err := a.CreateOrg(ctx, manage.OrgSpec{Name: "first"})
			require.NoError(t, err)
			require.NoError(t, b.DeletePlan(ctx, "pro"))
			require.NoError(t, b.SetPlan(ctx, keyward.Plan{Name: "team"})) // custom rate from now on
			_, err = a.CreateOrg(ctx, manage.OrgSpec{Name: "late", Plan: "pro"})
			assert.ErrorContains(t, err, "unknown plan", "a deleted plan")
			_, err = a.CreateOrg(ctx, manage.OrgSpec{Name: "late", Plan: "team"})
			assert.ErrorContains(t, err, "custom rate", "a plan made custom")
			org.Plan = "pro"
			assert.ErrorContains(t, a.UpdateOrg(ctx, org), "unknown plan")
			_, err = a.CreateOrg(ctx, manage.OrgSpec{Name: "ok", Plan: "team", RatePerMinute: 5})
			assert.NoError(t, err)
		})
	}
}

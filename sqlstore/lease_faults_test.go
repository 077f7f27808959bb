package sqlstore_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPostgresCutUnderLeasedLoad cuts PostgreSQL off for 5 s under a
// charged load with leases, through a proxy. An organization with a lease
// keeps being served from it for up to LeaseOptions.TTL/2 or until what
// it holds runs out, then answers 503; an organization too low for a lease (exact calls) answers 503 at
// once; neither ever answers 402. (The cut lasts 5 s, or longer until the
// lease has run out.) When PostgreSQL is back, every call
// served from the lease is written: none is lost.
func TestPostgresCutUnderLeasedLoad(t *testing.T) {
	// Not parallel: its load would slow the other tests' database calls.
	ctx := context.Background()
	dsn := pgSchemaDSN(t, testenv.PostgresDSN(t))
	proxy, viaProxy := proxied(t, dsn)
	direct := open(t, dsn, sqlstore.Options{Logger: quiet})
	// A lease holds at most an eighth of what is available: 2,000 credits
	// here, which the load spends within the cut.
	const richCredits = 16_000
	rich, err := direct.CreateOrg(ctx, manage.OrgSpec{Name: "rich", MonthlyCredits: richCredits})
	require.NoError(t, err)
	poor, err := direct.CreateOrg(ctx, manage.OrgSpec{Name: "poor", MonthlyCredits: 500}) // below MinAvailable
	require.NoError(t, err)
	richKey, err := direct.CreateKey(ctx, manage.KeySpec{OrgID: rich.ID, Name: "rich"})
	require.NoError(t, err)
	poorKey, err := direct.CreateKey(ctx, manage.KeySpec{OrgID: poor.ID, Name: "poor"})
	require.NoError(t, err)

	s, err := sqlstore.Open(ctx, viaProxy, sqlstore.Options{Logger: quiet, ReservationTTL: 2 * time.Second,
		Lease: sqlstore.LeaseOptions{Enabled: true}})
	require.NoError(t, err)
	a := newAPI(t, s, 0)
	time.Sleep(300 * time.Millisecond) // the change feed listens
	for _, k := range []string{richKey.Key, poorKey.Key} {
		status, code := a.call(t, http.MethodPost, "/charged", k)
		require.Equal(t, http.StatusOK, status, code)
	}

	type counts struct{ ok, unavailable, okDuringCut, unavailableDuringCut atomic.Int64 }
	var richN, poorN counts
	var cut, stop atomic.Bool
	var wg sync.WaitGroup
	for i := range 6 {
		key, n := richKey.Key, &richN
		if i%3 == 2 {
			key, n = poorKey.Key, &poorN
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				status, code := a.call(t, http.MethodPost, "/charged", key)
				during := cut.Load()
				switch {
				case status == http.StatusOK:
					n.ok.Add(1)
					if during {
						n.okDuringCut.Add(1)
					}
				case status == http.StatusServiceUnavailable && code == keyward.CodeServiceUnavailable:
					n.unavailable.Add(1)
					if during {
						n.unavailableDuringCut.Add(1)
					}
				default:
					t.Errorf("under load: %d %s (never a 402 for a database that is down)", status, code)
					return
				}
				// 503s come back at once: do not spin. And before the cut, a
				// fast machine's calls would outpace the flushes that refill
				// the lease, leaving it empty at the cut.
				time.Sleep(time.Millisecond)
			}
		}()
	}
	require.Eventually(t, func() bool { return richN.ok.Load() >= 200 && poorN.ok.Load() >= 5 }, 10*time.Second,
		5*time.Millisecond, "the load runs")

	proxy.Cut()
	time.Sleep(100 * time.Millisecond) // calls in flight at the cut finish
	cut.Store(true)
	time.Sleep(5 * time.Second)
	// However slow the machine, the cut lasts until the lease stopped serving.
	require.Eventually(t, func() bool { return richN.unavailableDuringCut.Load() > 0 }, 30*time.Second,
		10*time.Millisecond, "what the lease holds runs out")
	cut.Store(false)
	proxy.Restore()
	require.Eventually(t, func() bool {
		s1, _ := a.call(t, http.MethodPost, "/charged", poorKey.Key)
		return s1 == http.StatusOK
	}, 10*time.Second, 50*time.Millisecond, "recovers without a restart")
	stop.Store(true)
	wg.Wait()

	assert.Positive(t, richN.okDuringCut.Load(), "the lease keeps serving while the database is down")
	assert.LessOrEqual(t, richN.okDuringCut.Load(), int64(richCredits/8), "no more than the lease held")
	assert.Positive(t, richN.unavailableDuringCut.Load(), "then 503 once what it holds runs out")
	assert.Zero(t, poorN.okDuringCut.Load(), "exact calls need the database")
	assert.Positive(t, poorN.unavailableDuringCut.Load())
	assert.Zero(t, a.unreserved.Load())

	// Nothing lost: every call served from the lease is written.
	require.NoError(t, s.Close()) // writes and gives the lease back
	b, err := direct.Balance(ctx, rich.Account())
	require.NoError(t, err)
	assert.Equal(t, richN.ok.Load()+1, b.Spent, "every 200 of the leased organization charged once")
	assert.Zero(t, b.Leased)
	assert.Len(t, commitsByRequest(t, direct, b)[""], int(b.Spent), "one commit entry a call")
	t.Logf("leased org: %d served (%d during the 5 s cut), %d answered 503 during it; exact org: %d served, %d answered 503",
		richN.ok.Load(), richN.okDuringCut.Load(), richN.unavailableDuringCut.Load(), poorN.ok.Load(), poorN.unavailable.Load())
}

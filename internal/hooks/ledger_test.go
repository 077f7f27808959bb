package hooks_test

import (
	"context"
	"testing"

	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/internal/hooks"
	"github.com/keyward/keyward/memstore"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// meter configures an SDK with a manual reader and returns a function
// that collects the credit counters: reserved, committed, released, open.
func meter(t *testing.T) func() [4]int64 {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	require.NoError(t, hooks.Configure(hooks.Config{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))}))
	t.Cleanup(func() { require.NoError(t, hooks.Configure(hooks.Config{})) })
	return func() [4]int64 {
		t.Helper()
		var rm metricdata.ResourceMetrics
		require.NoError(t, reader.Collect(context.Background(), &rm))
		var got [4]int64
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				i := map[string]int{hooks.MetricCreditsReserved: 0, hooks.MetricCreditsCommitted: 1,
					hooks.MetricCreditsReleased: 2, hooks.MetricOpenReservations: 3}
				if n, ok := i[m.Name]; ok {
					for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
						got[n] += p.Value
					}
				}
			}
		}
		return got
	}
}

func newLedger(t *testing.T) credit.Ledger {
	t.Helper()
	l, err := memstore.NewLedger(memstore.LedgerOptions{})
	require.NoError(t, err)
	return hooks.Ledger(l)
}

var acct = credit.Account{OrgID: "org_1", Allocation: 100}

// TestLedgerCountsWhatItSees: the wrapper counts credits from the ledger's
// calls alone: a reservation's amount as reserved, raised or cut; on
// commit the amount committed and the rest released; a release gives the
// whole amount back; a reservation open until it is settled.
func TestLedgerCountsWhatItSees(t *testing.T) {
	collect := meter(t)
	l := newLedger(t)
	ctx := context.Background()

	a, err := l.Reserve(ctx, credit.ReserveRequest{Account: acct, Amount: 5})
	require.NoError(t, err)
	_, err = l.Adjust(ctx, acct, a.ID, 8) // raised by 3
	require.NoError(t, err)
	b, err := l.Reserve(ctx, credit.ReserveRequest{Account: acct, Amount: 4})
	require.NoError(t, err)
	require.Equal(t, [4]int64{12, 0, 0, 2}, collect(), "reserved 5+3+4, two open")

	require.NoError(t, l.Commit(ctx, acct, a.ID, 6))
	_, err = l.Adjust(ctx, acct, b.ID, 1) // cut by 3: released at once
	require.NoError(t, err)
	require.NoError(t, l.Release(ctx, acct, b.ID))
	require.Equal(t, [4]int64{12, 6, 2 + 3 + 1, 0}, collect())

	// Settling again changes nothing: the ledger refuses, and the wrapper
	// no longer counts the reservation open.
	require.ErrorIs(t, l.Commit(ctx, acct, a.ID, 6), credit.ErrReservationNotFound)
	require.NoError(t, l.Release(ctx, acct, b.ID))
	require.Equal(t, [4]int64{12, 6, 6, 0}, collect())
	require.Zero(t, hooks.Tracked(l))
}

// TestLedgerOpenNeverBelowZero: a reservation opened while nothing
// listened is not counted closed once an SDK listens; one counted open is
// counted closed (and forgotten) even if nothing listens by then.
func TestLedgerOpenNeverBelowZero(t *testing.T) {
	require.NoError(t, hooks.Configure(hooks.Config{}))
	if hooks.Listening() {
		t.Skip("a global SDK was installed earlier in this process")
	}
	l := newLedger(t)
	ctx := context.Background()
	unseen, err := l.Reserve(ctx, credit.ReserveRequest{Account: acct, Amount: 2})
	require.NoError(t, err)

	collect := meter(t)
	require.NoError(t, l.Commit(ctx, acct, unseen.ID, 2))
	require.Equal(t, [4]int64{0, 0, 0, 0}, collect(), "neither opened nor closed")

	seen, err := l.Reserve(ctx, credit.ReserveRequest{Account: acct, Amount: 3})
	require.NoError(t, err)
	require.Equal(t, int64(1), hooks.Tracked(l))
	require.NoError(t, hooks.Configure(hooks.Config{})) // nothing listens now
	require.NoError(t, l.Release(ctx, acct, seen.ID))
	require.Zero(t, hooks.Tracked(l), "forgotten: the fast path is back")
}

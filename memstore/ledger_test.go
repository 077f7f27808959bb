package memstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/internal/ledgertest"
	"github.com/keyward/keyward/memstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLedgerContract(t *testing.T) {
	t.Parallel()
	ledgertest.Run(t, func(t *testing.T, now func() time.Time) keyward.CreditLedger {
		l, err := memstore.NewLedger(memstore.LedgerOptions{Now: now})
		require.NoError(t, err)
		return l
	})
}

func TestNewLedgerReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := memstore.NewLedger(memstore.LedgerOptions{ReservationTTL: -1, IdempotencyTTL: -1})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ReservationTTL")
	assert.Contains(t, err.Error(), "IdempotencyTTL")
}

func TestLedgerOptions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := ledgertest.NewClock(ledgertest.Start)
	// Weekly periods from a Monday, and reservations that live a minute.
	weekly := func(_ string, t time.Time) (time.Time, time.Time) {
		d := t.UTC().Truncate(24 * time.Hour)
		for d.Weekday() != time.Monday {
			d = d.AddDate(0, 0, -1)
		}
		return d, d.AddDate(0, 0, 7)
	}
	l, err := memstore.NewLedger(memstore.LedgerOptions{Now: clock.Now, Period: weekly, ReservationTTL: time.Minute})
	require.NoError(t, err)
	a := keyward.Account{OrgID: "org_a", Allocation: 10}

	r, err := l.Reserve(ctx, keyward.ReserveRequest{Account: a, Amount: 4})
	require.NoError(t, err)
	assert.Equal(t, ledgertest.Start.Add(time.Minute), r.ExpiresAt)
	b, err := l.Balance(ctx, a)
	require.NoError(t, err)
	assert.Equal(t, time.Date(2026, 1, 19, 0, 0, 0, 0, time.UTC), b.PeriodStart) // a Monday
	assert.Equal(t, time.Date(2026, 1, 26, 0, 0, 0, 0, time.UTC), b.PeriodEnd)

	clock.Advance(time.Minute)
	assert.Equal(t, 1, l.Sweep(), "Sweep releases the abandoned reservation")
	b, err = l.Balance(ctx, a)
	require.NoError(t, err)
	assert.Equal(t, int64(10), b.Available)
	assert.Zero(t, b.OpenReservations)
}

func TestLedgerRefusesABrokenPeriod(t *testing.T) {
	t.Parallel()
	broken := func(_ string, t time.Time) (time.Time, time.Time) { return t.Add(time.Hour), t.Add(2 * time.Hour) }
	l, err := memstore.NewLedger(memstore.LedgerOptions{Period: broken})
	require.NoError(t, err)
	_, err = l.Reserve(context.Background(), keyward.ReserveRequest{Account: keyward.Account{OrgID: "org_a", Allocation: 1}, Amount: 1})
	assert.Error(t, err)
}

// BenchmarkLedgerReserveCommit is one charged call's ledger work: a
// reserve and a commit, on the system clock.
func BenchmarkLedgerReserveCommit(b *testing.B) {
	l, err := memstore.NewLedger(memstore.LedgerOptions{})
	require.NoError(b, err)
	a := keyward.Account{OrgID: "org_0123456789abcdef01234567", Allocation: 100, AllowOverage: true}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		r, err := l.Reserve(ctx, keyward.ReserveRequest{Account: a, Amount: 1, KeyID: "key_1"})
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Commit(ctx, a, r.ID, 1); err != nil {
			b.Fatal(err)
		}
	}
}

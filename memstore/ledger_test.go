package memstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/keywardtest"
	"github.com/keyward/keyward/memstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLedgerContract(t *testing.T) {
	t.Parallel()
	keywardtest.TestCreditLedger(t, func(t *testing.T, now func() time.Time) credit.Ledger {
		l, err := memstore.NewLedger(memstore.LedgerOptions{Now: now})
		require.NoError(t, err)
		return l
	})
}

func TestNewLedgerReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := memstore.NewLedger(memstore.LedgerOptions{ReservationTTL: -1, IdempotencyTTL: -1, MaxIdempotencyKeys: -1})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ReservationTTL")
	assert.Contains(t, err.Error(), "IdempotencyTTL")
	assert.Contains(t, err.Error(), "MaxIdempotencyKeys")
}

// TestLedgerBoundsIdempotencyKeys: beyond MaxIdempotencyKeys an
// organization forgets the key committed longest ago (a retry of that call
// is charged again), never the key of a call in flight.
func TestLedgerBoundsIdempotencyKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, err := memstore.NewLedger(memstore.LedgerOptions{MaxIdempotencyKeys: 2})
	require.NoError(t, err)
	a := credit.Account{OrgID: "org_a", Allocation: 100}
	reserve := func(key string) (credit.Reservation, error) {
		return l.Reserve(ctx, credit.ReserveRequest{Account: a, Amount: 1, IdempotencyKey: key, Fingerprint: keywardtest.Fingerprint(key)})
	}
	call := func(key string) credit.Reservation { // a call with a key, charged
		t.Helper()
		r, err := reserve(key)
		require.NoError(t, err)
		if !r.Replayed {
			require.NoError(t, l.Commit(ctx, a, r.ID, 1))
		}
		return r
	}
	inFlight, err := reserve("k0")
	require.NoError(t, err)
	call("k1")
	call("k2")
	call("k3") // a third committed key: k1 is forgotten
	assert.True(t, call("k2").Replayed)
	assert.True(t, call("k3").Replayed)
	_, err = reserve("k0")
	assert.ErrorIs(t, err, credit.ErrIdempotencyKeyInUse, "the key of a call in flight is never forgotten")
	assert.False(t, call("k1").Replayed, "a retry of a forgotten key is charged again")
	assert.False(t, call("k2").Replayed, "k1's new commit pushed out k2")

	require.NoError(t, l.Commit(ctx, a, inFlight.ID, 1))
	assert.True(t, call("k0").Replayed, "committed, the key is remembered")
	b, err := l.Balance(ctx, a)
	require.NoError(t, err)
	assert.Equal(t, int64(6), b.Spent, "k0, k1 twice, k2 twice, k3")
}

func TestLedgerOptions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := keywardtest.NewClock(keywardtest.LedgerStart)
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
	a := credit.Account{OrgID: "org_a", Allocation: 10}

	r, err := l.Reserve(ctx, credit.ReserveRequest{Account: a, Amount: 4})
	require.NoError(t, err)
	assert.Equal(t, keywardtest.LedgerStart.Add(time.Minute), r.ExpiresAt)
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
	_, err = l.Reserve(context.Background(), credit.ReserveRequest{Account: credit.Account{OrgID: "org_a", Allocation: 1}, Amount: 1})
	assert.Error(t, err)
}

// BenchmarkLedgerReserveCommit is one charged call's ledger work: a
// reserve and a commit, on the system clock.
func BenchmarkLedgerReserveCommit(b *testing.B) {
	l, err := memstore.NewLedger(memstore.LedgerOptions{})
	require.NoError(b, err)
	a := credit.Account{OrgID: "org_0123456789abcdef01234567", Allocation: 100, AllowOverage: true}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		r, err := l.Reserve(ctx, credit.ReserveRequest{Account: a, Amount: 1, KeyID: "key_1"})
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Commit(ctx, a, r.ID, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// The ledger suite's time: reservations that lapse unless extended, and
// periods that roll over to a fresh allocation.

package keywardtest

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/credit"
)

func expiry(t *testing.T, newLedger NewCreditLedger) {
	e := setup(t, newLedger)
	a := acct("org_a", 100)
	abandoned := e.reserve(a, 10)
	adjusted := e.reserve(a, 10)
	released := e.reserve(a, 10)
	e.clock.Advance(credit.DefaultReservationTTL - time.Second)
	e.want(a, 70, 0, 30, 3)
	wantErr(t, "Release before expiry", e.l.Release(e.ctx, a, released.ID), nil)
	e.clock.Advance(time.Second) // now exactly ExpiresAt
	e.want(a, 100, 0, 0, 0)
	wantErr(t, "Commit after expiry", e.l.Commit(e.ctx, a, abandoned.ID, 10), credit.ErrReservationExpired)
	_, err := e.l.Adjust(e.ctx, a, adjusted.ID, 5)
	wantErr(t, "Adjust after expiry", err, credit.ErrReservationExpired)
	wantErr(t, "Release after expiry", e.l.Release(e.ctx, a, abandoned.ID), nil)
	e.want(a, 100, 0, 0, 0)
	// The answer stands for at least the TTL after the expiry.
	e.clock.Advance(credit.DefaultReservationTTL - time.Second)
	wantErr(t, "Commit long after expiry", e.l.Commit(e.ctx, a, abandoned.ID, 10), credit.ErrReservationExpired)

	// Expiry is applied even if Commit is the first call after it.
	r := e.reserve(a, 10)
	e.clock.Advance(credit.DefaultReservationTTL)
	wantErr(t, "Commit as the first touch after expiry", e.l.Commit(e.ctx, a, r.ID, 10), credit.ErrReservationExpired)
	e.want(a, 100, 0, 0, 0)
}

func extend(t *testing.T, newLedger NewCreditLedger) {
	e := setup(t, newLedger)
	a := acct("org_a", 100)
	long := e.reserve(a, 10)
	short := e.reserve(a, 5)
	e.clock.Advance(credit.DefaultReservationTTL - time.Second)
	exp, err := e.l.Extend(e.ctx, a, long.ID)
	wantErr(t, "Extend", err, nil)
	if want := e.clock.Now().Add(credit.DefaultReservationTTL); !exp.Equal(want) {
		t.Fatalf("Extend = %v, want now + the reservation TTL, %v", exp, want)
	}
	e.clock.Advance(time.Second) // the original expiry: only the one not extended expires
	e.want(a, 90, 0, 10, 1)
	wantErr(t, "Commit of the one not extended", e.l.Commit(e.ctx, a, short.ID, 5), credit.ErrReservationExpired)
	// Extended before each expiry, it lives as long as its call runs.
	for range 3 {
		e.clock.Set(exp.Add(-time.Second))
		exp, err = e.l.Extend(e.ctx, a, long.ID)
		wantErr(t, "Extend again", err, nil)
	}
	e.want(a, 90, 0, 10, 1)
	wantErr(t, "Commit after extending", e.l.Commit(e.ctx, a, long.ID, 8), nil)
	e.want(a, 92, 8, 0, 0)

	// Not extended again, it expires at its new ExpiresAt, not before.
	r := e.reserve(a, 10)
	e.clock.Advance(time.Minute)
	exp, err = e.l.Extend(e.ctx, a, r.ID)
	wantErr(t, "Extend", err, nil)
	e.clock.Set(r.ExpiresAt)
	e.want(a, 82, 8, 10, 1)
	e.clock.Set(exp)
	e.want(a, 92, 8, 0, 0)

	// Not open: as Commit, and nothing changes.
	_, err = e.l.Extend(e.ctx, a, r.ID)
	wantErr(t, "Extend of an expired reservation", err, credit.ErrReservationExpired)
	_, err = e.l.Extend(e.ctx, a, long.ID)
	wantErr(t, "Extend of a committed reservation", err, credit.ErrReservationNotFound)
	released := e.reserve(a, 3)
	wantErr(t, "Release", e.l.Release(e.ctx, a, released.ID), nil)
	_, err = e.l.Extend(e.ctx, a, released.ID)
	wantErr(t, "Extend of a released reservation", err, credit.ErrReservationNotFound)
	_, err = e.l.Extend(e.ctx, a, 1<<60)
	wantErr(t, "Extend of an unknown id", err, credit.ErrReservationNotFound)
	open := e.reserve(a, 2)
	_, err = e.l.Extend(e.ctx, acct("org_b", 100), open.ID)
	wantErr(t, "Extend of another org's reservation", err, credit.ErrReservationNotFound)
	e.want(a, 90, 8, 2, 1)
	e.clock.Set(open.ExpiresAt)
	wantErr(t, "Commit of the reservation another org tried to extend", e.l.Commit(e.ctx, a, open.ID, 2), credit.ErrReservationExpired)
}

// extendWhileCommitting races Extend against Commit on each of n
// reservations: each is charged exactly once, and an Extend either keeps
// the call open or finds it settled.
func extendWhileCommitting(t *testing.T, newLedger NewCreditLedger, n int) {
	e := setup(t, newLedger)
	a := acct("org_a", int64(3*n))
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = e.reserve(a, 3).ID
	}
	e.clock.Advance(credit.DefaultReservationTTL - time.Second)
	var committed atomic.Int64
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := e.l.Commit(e.ctx, a, id, int64(1+i%3)); err != nil {
				t.Errorf("Commit: %v", err)
				return
			}
			committed.Add(int64(1 + i%3))
		}()
		go func() {
			defer wg.Done()
			for range 4 {
				if _, err := e.l.Extend(e.ctx, a, id); err != nil && !errors.Is(err, credit.ErrReservationNotFound) {
					t.Errorf("Extend: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	e.want(a, int64(3*n)-committed.Load(), committed.Load(), 0, 0)
	for _, id := range ids {
		_, err := e.l.Extend(e.ctx, a, id)
		wantErr(t, "Extend after Commit", err, credit.ErrReservationNotFound)
	}
}

// keyInFlightPastItsTTL: a call extended for longer than the idempotency
// TTL keeps its key: a retry meanwhile is refused, not charged a second
// time.
func keyInFlightPastItsTTL(t *testing.T, newLedger NewCreditLedger) {
	e := setup(t, newLedger)
	a := acct("org_a", 100)
	fp := Fingerprint("POST /v1/export")
	r, err := e.l.Reserve(e.ctx, credit.ReserveRequest{Account: a, Amount: 5, IdempotencyKey: "export", Fingerprint: fp})
	wantErr(t, "Reserve", err, nil)
	for exp := r.ExpiresAt; !e.clock.Now().After(LedgerStart.Add(credit.DefaultIdempotencyTTL)); {
		e.clock.Set(exp.Add(-time.Second))
		exp, err = e.l.Extend(e.ctx, a, r.ID)
		wantErr(t, "Extend", err, nil)
	}
	_, err = e.l.Reserve(e.ctx, credit.ReserveRequest{Account: a, Amount: 5, IdempotencyKey: "export", Fingerprint: fp})
	wantErr(t, "retry of the call in flight past the TTL", err, credit.ErrIdempotencyKeyInUse)
	wantErr(t, "Commit", e.l.Commit(e.ctx, a, r.ID, 5), nil)
	e.want(a, 95, 5, 0, 0)
}

func periodRollover(t *testing.T, newLedger NewCreditLedger) {
	e := setup(t, newLedger)
	a := acct("org_a", 100)
	r := e.reserve(a, 60)
	wantErr(t, "Commit", e.l.Commit(e.ctx, a, r.ID, 60), nil)
	if _, err := e.l.Grant(e.ctx, a, 50, "goodwill"); err != nil {
		t.Fatal(err)
	}
	e.want(a, 90, 60, 0, 0)
	inFlight := e.reserve(a, 5)
	e.clock.Set(time.Date(2026, 1, 31, 23, 59, 59, 0, time.UTC))
	// (the reservation expired meanwhile; make a fresh one just before the end)
	inFlight = e.reserve(a, 5)
	e.clock.Set(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))
	b := e.balance(a)
	want := credit.Balance{
		OrgID:       "org_a",
		PeriodStart: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC),
		PeriodEnd:   time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
		Allocation:  100, Available: 100,
	}
	if !b.PeriodStart.Equal(want.PeriodStart) || !b.PeriodEnd.Equal(want.PeriodEnd) {
		t.Fatalf("period = %v – %v, want February", b.PeriodStart, b.PeriodEnd)
	}
	b.PeriodStart, b.PeriodEnd = want.PeriodStart, want.PeriodEnd
	if b != want {
		t.Fatalf("balance after rollover = %+v; want %+v (no rollover of the 40 left, nor of the grant)", b, want)
	}
	wantErr(t, "Commit across the period's end", e.l.Commit(e.ctx, a, inFlight.ID, 5), credit.ErrReservationExpired)
	e.want(a, 100, 0, 0, 0)
	// The first touch of a period may be a Reserve.
	e.clock.Set(time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC))
	r = e.reserve(a, 100)
	if r.Available != 0 {
		t.Fatalf("Available in March = %d, want 0", r.Available)
	}
}

// periodNeverGoesBack: a clock a moment behind the period already begun
// (another instance's at the month's turn, or one stepped back) works in
// that period: it does not start the old one again, so the new period's
// reservations and spending stay.
func periodNeverGoesBack(t *testing.T, newLedger NewCreditLedger) {
	e := setup(t, newLedger)
	a := acct("org_a", 100)
	e.clock.Set(time.Date(2026, 2, 1, 0, 0, 0, 500, time.UTC))
	spent := e.reserve(a, 30)
	wantErr(t, "Commit", e.l.Commit(e.ctx, a, spent.ID, 30), nil)
	r := e.reserve(a, 10)
	e.clock.Set(time.Date(2026, 1, 31, 23, 59, 59, 999_999_000, time.UTC))
	b := e.balance(a)
	if !b.PeriodStart.Equal(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("period start = %v after the clock went back; want February's", b.PeriodStart)
	}
	e.clock.Set(time.Date(2026, 2, 1, 0, 0, 1, 0, time.UTC))
	wantErr(t, "Commit after a clock behind", e.l.Commit(e.ctx, a, r.ID, 10), nil)
	e.want(a, 60, 40, 0, 0)
}

func allocationChanges(t *testing.T, newLedger NewCreditLedger) {
	e := setup(t, newLedger)
	a := acct("org_a", 100)
	r := e.reserve(a, 80)
	wantErr(t, "Commit", e.l.Commit(e.ctx, a, r.ID, 80), nil)
	// A downgrade counts from the next period: the balance stays ≥ 0.
	down := acct("org_a", 50)
	if b := e.balance(down); b.Allocation != 100 || b.Available != 20 {
		t.Fatalf("after a downgrade: %+v; want Allocation 100, Available 20", b)
	}
	// An upgrade counts at once.
	up := acct("org_a", 1000)
	if b := e.balance(up); b.Allocation != 1000 || b.Available != 920 {
		t.Fatalf("after an upgrade: %+v; want Allocation 1000, Available 920", b)
	}
	e.clock.Set(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))
	if b := e.balance(down); b.Allocation != 50 || b.Available != 50 {
		t.Fatalf("next period after a downgrade: %+v; want Allocation 50", b)
	}
}

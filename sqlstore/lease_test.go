package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/keywardtest"
	"github.com/keyward/keyward/sqlstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// leased is the lease configuration of the tests: leases for any balance
// (MinAvailable 1), so that the contract is kept by the leased paths, not
// only by the exact fallback.
var leased = sqlstore.LeaseOptions{Enabled: true, MinAvailable: 1, FlushInterval: 20 * time.Millisecond}

func TestCreditLedgerLeased(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			keywardtest.TestCreditLedgerScaled(t, func(t *testing.T, now func() time.Time) credit.Ledger {
				return open(t, newDSN(t, engine), sqlstore.Options{Now: now, Lease: leased})
			}, 16, 100)
		})
	}
}

// charge reserves and commits cost for request req; it returns the
// reservation's error.
func charge(ctx context.Context, s *sqlstore.Store, acct credit.Account, cost int64, req string) error {
	r, err := s.Reserve(ctx, credit.ReserveRequest{Account: acct, Amount: cost, KeyID: "key_" + acct.OrgID, RequestID: req})
	if err != nil {
		return err
	}
	return s.Commit(ctx, acct, r.ID, cost)
}

// commitsByRequest returns the period's commit entries by request id.
func commitsByRequest(t *testing.T, s *sqlstore.Store, b credit.Balance) map[string][]sqlstore.LedgerEntry {
	t.Helper()
	entries, err := s.Entries(context.Background(), b.OrgID, b.PeriodStart)
	require.NoError(t, err)
	out := map[string][]sqlstore.LedgerEntry{}
	for _, e := range entries {
		if e.Kind == "commit" {
			out[e.RequestID] = append(out[e.RequestID], e)
		}
	}
	return out
}

// openRows counts the open reservation rows of org: leases (lease = 1)
// and calls.
func openRows(t *testing.T, s *sqlstore.Store, org string) (leases, calls int) {
	t.Helper()
	require.NoError(t, s.DB().QueryRow(`SELECT COALESCE(SUM(lease), 0), COUNT(*) - COALESCE(SUM(lease), 0)
		FROM keyward_reservations WHERE org_id = $1 AND state = 'open'`, org).Scan(&leases, &calls))
	return leases, calls
}

// TestLeaseServesCallsAndWritesEachOnce: calls are served from a lease
// (one lease row, no reservation row per call), each committed call gets
// its own commit entry (kind, amount, org, key, request id) when the lease
// is flushed, the balance rebuilds from the ledger, and Close gives the
// unused credits back.
func TestLeaseServesCallsAndWritesEachOnce(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := newDSN(t, engine)
			s, err := sqlstore.Open(ctx, dsn, sqlstore.Options{Lease: sqlstore.LeaseOptions{Enabled: true, FlushInterval: time.Hour}})
			require.NoError(t, err)
			acct := credit.Account{OrgID: "org_lease", Allocation: 100_000}
			const calls = 400
			for i := range calls {
				require.NoError(t, charge(ctx, s, acct, 2, fmt.Sprintf("req_%d", i)))
			}
			leases, rows := openRows(t, s, acct.OrgID)
			assert.Equal(t, 1, leases, "one lease serves the calls")
			assert.Zero(t, rows, "no reservation row per call")
			b, err := s.Balance(ctx, acct)
			require.NoError(t, err)
			assert.Equal(t, int64(2*calls), b.Spent, "unwritten calls count as spent")
			assert.Positive(t, b.Leased)
			assert.Zero(t, b.Reserved)
			assert.Equal(t, int64(100_000-2*calls), b.Available)

			require.NoError(t, s.FlushLeases(ctx))
			byReq := commitsByRequest(t, s, b)
			require.Len(t, byReq, calls)
			for i := range calls {
				e := byReq[fmt.Sprintf("req_%d", i)]
				if assert.Len(t, e, 1, "request %d in the ledger exactly once", i) {
					assert.Equal(t, int64(2), e[0].Amount)
					assert.Equal(t, "key_org_lease", e[0].KeyID)
				}
			}
			assert.Equal(t, b.Allocation+b.Granted-b.Spent, rebuild(t, s, b), "the balance rebuilds from the ledger")

			require.NoError(t, s.Close())
			other := open(t, dsn, sqlstore.Options{})
			after, err := other.Balance(ctx, acct)
			require.NoError(t, err)
			assert.Equal(t, int64(2*calls), after.Spent)
			assert.Zero(t, after.Reserved, "Close gave the lease back")
			assert.Zero(t, after.OpenReservations)
		})
	}
}

// TestNoFalse402AcrossInstances: two instances, 60 concurrent calls split
// across both: exactly as many succeed as the balance covers, whether the
// balance is too low for leases (30 credits, the exact path) or leases
// were taken first and must be recalled (600 credits, leases for any
// balance).
func TestNoFalse402AcrossInstances(t *testing.T) {
	for _, engine := range backends {
		for _, c := range []struct {
			name    string
			balance int64
			lease   sqlstore.LeaseOptions
			calls   int
		}{
			{"low balance", 30, sqlstore.LeaseOptions{Enabled: true}, 60},
			{"leases recalled", 600, sqlstore.LeaseOptions{Enabled: true, MinAvailable: 1, FlushInterval: 200 * time.Millisecond}, 900},
		} {
			t.Run(engine+"/"+c.name, func(t *testing.T) {
				// Not parallel: 60 workers would slow the other tests'
				// database calls.
				ctx := context.Background()
				dsn := newDSN(t, engine)
				a, b := open(t, dsn, sqlstore.Options{Lease: c.lease}), open(t, dsn, sqlstore.Options{Lease: c.lease})
				acct := credit.Account{OrgID: "org_last", Allocation: c.balance}
				// Both instances have served the organization (and, when the
				// balance allows, hold a lease of it).
				require.NoError(t, charge(ctx, a, acct, 1, "warm_a"))
				require.NoError(t, charge(ctx, b, acct, 1, "warm_b"))
				if leases, _ := openRows(t, a, acct.OrgID); c.balance >= 600 {
					require.Equal(t, 2, leases, "each instance holds a lease")
				} else {
					require.Zero(t, leases, "too low a balance for leases")
				}
				c.balance -= 2
				var ok, refused atomic.Int64
				var wg sync.WaitGroup
				for w := range 60 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						s := []*sqlstore.Store{a, b}[w%2]
						for i := w; i < c.calls; i += 60 {
							err := charge(ctx, s, acct, 1, fmt.Sprintf("req_%d", i))
							switch {
							case err == nil:
								ok.Add(1)
							case errors.Is(err, credit.ErrInsufficientCredits):
								refused.Add(1)
							default:
								t.Errorf("charge: %v", err)
							}
						}
					}()
				}
				wg.Wait()
				assert.Equal(t, c.balance, ok.Load(), "every credit spent, none twice")
				assert.Equal(t, int64(c.calls)-c.balance, refused.Load())
				require.NoError(t, a.FlushLeases(ctx))
				require.NoError(t, b.FlushLeases(ctx))
				bal, err := a.Balance(ctx, acct)
				require.NoError(t, err)
				assert.Equal(t, c.balance+2, bal.Spent)
				assert.Zero(t, bal.Available)
				assert.Len(t, commitsByRequest(t, a, bal), int(c.balance+2))
			})
		}
	}
}

// TestIdempotencyAcrossLeasedInstances: a call with an idempotency key
// takes the exact path, so the guarantee holds across instances: in use
// while in flight, reused for another request, charged once.
func TestIdempotencyAcrossLeasedInstances(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := newDSN(t, engine)
			a, b := open(t, dsn, sqlstore.Options{Lease: leased}), open(t, dsn, sqlstore.Options{Lease: leased})
			acct := credit.Account{OrgID: "org_idem", Allocation: 10_000}
			require.NoError(t, charge(ctx, a, acct, 1, "warm")) // a holds a lease
			require.NoError(t, charge(ctx, b, acct, 1, "warm2"))
			req := credit.ReserveRequest{Account: acct, Amount: 5, IdempotencyKey: "idem", Fingerprint: keywardtest.Fingerprint("POST /x")}
			r, err := a.Reserve(ctx, req)
			require.NoError(t, err)
			_, err = b.Reserve(ctx, req)
			assert.ErrorIs(t, err, credit.ErrIdempotencyKeyInUse)
			other := req
			other.Fingerprint = keywardtest.Fingerprint("POST /y")
			_, err = b.Reserve(ctx, other)
			assert.ErrorIs(t, err, credit.ErrIdempotencyKeyReused)
			require.NoError(t, a.Commit(ctx, acct, r.ID, 5))
			replay, err := b.Reserve(ctx, req)
			require.NoError(t, err)
			assert.True(t, replay.Replayed)
			assert.Equal(t, int64(5), replay.Charged)
			require.NoError(t, a.FlushLeases(ctx))
			require.NoError(t, b.FlushLeases(ctx))
			bal, err := b.Balance(ctx, acct)
			require.NoError(t, err)
			assert.Equal(t, int64(7), bal.Spent, "the idempotent call charged once")
		})
	}
}

// TestGrantsAndPeriodsReachLeasedOrgs: a grant counts at once for an
// organization whose calls are exact and within a flush for the size of a
// lease; an upgrade counts at once; a new period ends the lease (its
// unwritten calls are written to the period they were made in).
func TestGrantsAndPeriodsReachLeasedOrgs(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clock := keywardtest.NewClock(keywardtest.LedgerStart)
			dsn := newDSN(t, engine)
			opts := sqlstore.Options{Now: clock.Now, Lease: sqlstore.LeaseOptions{Enabled: true, FlushInterval: time.Hour}}
			a, b := open(t, dsn, opts), open(t, dsn, opts)
			acct := credit.Account{OrgID: "org_g", Allocation: 0}
			assert.ErrorIs(t, charge(ctx, a, acct, 1, "r0"), credit.ErrInsufficientCredits)
			_, err := b.Grant(ctx, acct, 5000, "top-up")
			require.NoError(t, err)
			require.NoError(t, charge(ctx, a, acct, 1, "r1"), "the grant counts at once")
			upgraded := credit.Account{OrgID: "org_g", Allocation: 20_000}
			require.NoError(t, charge(ctx, a, upgraded, 1, "r2"))
			bal, err := b.Balance(ctx, upgraded)
			require.NoError(t, err)
			assert.Equal(t, int64(20_000), bal.Allocation, "the upgrade counts at once")
			before := bal.PeriodStart
			clock.Set(bal.PeriodEnd)
			require.NoError(t, charge(ctx, a, upgraded, 3, "next"))
			nb, err := a.Balance(ctx, upgraded)
			require.NoError(t, err)
			assert.True(t, nb.PeriodStart.After(before))
			assert.Equal(t, int64(3), nb.Spent, "no rollover")
			require.NoError(t, a.FlushLeases(ctx))
			old := commitsByRequest(t, a, credit.Balance{OrgID: "org_g", PeriodStart: before})
			assert.Len(t, old["r1"], 1, "calls made in the old period are written to it")
			assert.Len(t, old["r2"], 1)
			leases, rows := openRows(t, a, "org_g")
			assert.LessOrEqual(t, leases, 1, "the old period's lease ended")
			assert.Zero(t, rows)
		})
	}
}

// TestCreditsRemainingIsTheInstancesBalance: calls alternating between
// two leased instances each report, as Reservation.Available (from which
// ChargeCredits writes X-Credits-Remaining), what Balance on the same
// instance says once the call is charged: other instances' leases count
// as available there, as they do in Balance.
func TestCreditsRemainingIsTheInstancesBalance(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := newDSN(t, engine)
			opts := sqlstore.Options{Lease: sqlstore.LeaseOptions{Enabled: true, FlushInterval: time.Hour}}
			a, b := open(t, dsn, opts), open(t, dsn, opts)
			acct := credit.Account{OrgID: "org_remaining", Allocation: 4_000}
			call := func(s *sqlstore.Store, i int) {
				t.Helper()
				r, err := s.Reserve(ctx, credit.ReserveRequest{Account: acct, Amount: 3, RequestID: fmt.Sprint(i)})
				require.NoError(t, err)
				require.NoError(t, s.Commit(ctx, acct, r.ID, 1))
				bal, err := s.Balance(ctx, acct)
				require.NoError(t, err)
				assert.Equal(t, bal.Available, r.Available+r.Amount-1, "call %d: the remaining credits are the instance's balance", i)
			}
			for i := range 6 {
				call([]*sqlstore.Store{a, b}[i%2], i)
			}
			leases, _ := openRows(t, a, acct.OrgID)
			require.Equal(t, 2, leases, "both instances hold a lease")
			// Each instance's writes bring the others' calls in.
			require.NoError(t, a.FlushLeases(ctx))
			require.NoError(t, b.FlushLeases(ctx))
			require.NoError(t, a.FlushLeases(ctx))
			for i := 6; i < 10; i++ {
				call([]*sqlstore.Store{a, b}[i%2], i)
			}
		})
	}
}

// TestReturnedLeaseNeverOverspends: instance A's lease is returned by
// instance B once A has not written it for TTL, and B spends what it
// held; the calls A committed from it meanwhile are then charged only as
// far as credits remain: never overspent, and the ledger adds up.
func TestReturnedLeaseNeverOverspends(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clock := keywardtest.NewClock(keywardtest.LedgerStart)
			dsn := newDSN(t, engine)
			opts := sqlstore.Options{Now: clock.Now, Logger: quiet,
				Lease: sqlstore.LeaseOptions{Enabled: true, FlushInterval: time.Hour, MinAvailable: 1}}
			a, b := open(t, dsn, opts), open(t, dsn, opts)
			acct := credit.Account{OrgID: "org_returned", Allocation: 1_000}
			for i := range 20 {
				require.NoError(t, charge(ctx, a, acct, 1, fmt.Sprint("a", i)))
			}
			leases, _ := openRows(t, b, acct.OrgID)
			require.Equal(t, 1, leases, "A serves from a lease")
			for i := 20; i < 40; i++ { // committed, not written
				require.NoError(t, charge(ctx, a, acct, 1, fmt.Sprint("a", i)))
			}
			clock.Advance(credit.DefaultReservationTTL + time.Minute) // A writes nothing all along
			bal, err := b.Balance(ctx, acct)
			require.NoError(t, err)
			assert.Zero(t, bal.Leased, "A's lease was returned")
			require.NoError(t, charge(ctx, b, acct, bal.Available, "b"), "B spends all that is left")
			require.NoError(t, a.FlushLeases(ctx))
			final, err := b.Balance(ctx, acct)
			require.NoError(t, err)
			assert.Equal(t, final.Allocation, final.Spent, "never overspent")
			assert.Equal(t, final.Allocation+final.Granted-final.Spent, rebuild(t, b, final), "Σ commits = spent")
		})
	}
}

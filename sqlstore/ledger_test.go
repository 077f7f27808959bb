package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
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

func TestCreditLedger(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			// Every call is a transaction on one hot row: 16 × 100 calls.
			keywardtest.TestCreditLedgerScaled(t, func(t *testing.T, now func() time.Time) credit.Ledger {
				return open(t, newDSN(t, engine), sqlstore.Options{Now: now})
			}, 16, 100)
		})
	}
}

// rebuild returns the period's balance as the ledger entries alone tell
// it: Σ allocation + Σ grant − Σ commit.
func rebuild(t *testing.T, s *sqlstore.Store, b credit.Balance) int64 {
	t.Helper()
	entries, err := s.Entries(context.Background(), b.OrgID, b.PeriodStart)
	require.NoError(t, err)
	var sum int64
	for _, e := range entries {
		switch e.Kind {
		case "allocation", "grant":
			sum += e.Amount
		case "commit":
			sum -= e.Amount
		}
	}
	return sum
}

// TestBalanceRebuildsFromEntries: allocations are in the ledger (when a
// period starts and when an upgrade raises it), so the balance of every
// period rebuilds from its entries alone.
func TestBalanceRebuildsFromEntries(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clock := keywardtest.NewClock(keywardtest.LedgerStart)
			s := open(t, newDSN(t, engine), sqlstore.Options{Now: clock.Now})
			check := func(acct credit.Account) credit.Balance {
				t.Helper()
				b, err := s.Balance(ctx, acct)
				require.NoError(t, err)
				assert.Equal(t, b.Allocation+b.Granted-b.Spent, rebuild(t, s, b), "the balance rebuilds from the entries")
				return b
			}
			charge := func(acct credit.Account, reserve, commit int64) {
				t.Helper()
				r, err := s.Reserve(ctx, credit.ReserveRequest{Account: acct, Amount: reserve})
				require.NoError(t, err)
				require.NoError(t, s.Commit(ctx, acct, r.ID, commit))
			}
			free, upgraded, downgraded := credit.Account{OrgID: "org_a", Allocation: 100},
				credit.Account{OrgID: "org_a", Allocation: 1000}, credit.Account{OrgID: "org_a", Allocation: 50}
			charge(free, 30, 20)
			_, err := s.Grant(ctx, free, 15, "goodwill")
			require.NoError(t, err)
			check(free)
			charge(upgraded, 500, 400) // the upgrade counts at once
			r, err := s.Reserve(ctx, credit.ReserveRequest{Account: upgraded, Amount: 7})
			require.NoError(t, err)
			require.NoError(t, s.Release(ctx, upgraded, r.ID))
			_, err = s.Reserve(ctx, credit.ReserveRequest{Account: upgraded, Amount: 9}) // abandoned: expires
			require.NoError(t, err)
			clock.Advance(credit.DefaultReservationTTL)
			charge(downgraded, 5, 5) // the downgrade waits for the next period
			b := check(downgraded)
			assert.Equal(t, int64(1000), b.Allocation)
			assert.Equal(t, int64(1000+15-20-400-5), b.Available)

			entries, err := s.Entries(ctx, "org_a", b.PeriodStart)
			require.NoError(t, err)
			var allocations []int64
			for _, e := range entries {
				if e.Kind == "allocation" {
					allocations = append(allocations, e.Amount)
				}
			}
			assert.Equal(t, []int64{100, 900}, allocations, "the period's allocation, then the upgrade's increase")

			clock.Set(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)) // the downgrade counts now
			charge(downgraded, 10, 10)
			b = check(downgraded)
			assert.Equal(t, int64(50), b.Allocation)
			assert.Equal(t, int64(40), b.Available)
		})
	}
}

// TestAllocationMigration: migration 0004 records the allocation of every
// account's current period, so periods begun before it rebuild too.
func TestAllocationMigration(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := newDSN(t, engine)
			clock := keywardtest.NewClock(keywardtest.LedgerStart)
			acct := credit.Account{OrgID: "org_a", Allocation: 250}
			old := open(t, dsn, sqlstore.Options{Now: clock.Now})
			r, err := old.Reserve(ctx, credit.ReserveRequest{Account: acct, Amount: 10})
			require.NoError(t, err)
			require.NoError(t, old.Commit(ctx, acct, r.ID, 10))
			_, err = old.Grant(ctx, acct, 5, "")
			require.NoError(t, err)
			// Back to a ledger before 0004, without allocation entries.
			_, err = old.DB().ExecContext(ctx, `DELETE FROM keyward_ledger WHERE kind = 'allocation'`)
			require.NoError(t, err)
			rewindTo(t, old.DB(), 4)
			require.NoError(t, old.Close())

			s := open(t, dsn, sqlstore.Options{Now: clock.Now})
			b, err := s.Balance(ctx, acct)
			require.NoError(t, err)
			assert.Equal(t, int64(245), b.Allocation+b.Granted-b.Spent)
			assert.Equal(t, int64(245), rebuild(t, s, b), "the balance rebuilds from the entries")
		})
	}
}

// TestTwoInstancesChargeOneOrg: two instances (two pools) × 16 workers
// reserve and settle against one organization. Nothing is overspent and
// every charge is in the ledger exactly once.
func TestTwoInstancesChargeOneOrg(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := newDSN(t, engine)
			instances := []*sqlstore.Store{open(t, dsn, sqlstore.Options{}), open(t, dsn, sqlstore.Options{})}
			const initial = 500
			acct := credit.Account{OrgID: "org_hot", Allocation: initial}
			var committed, attempts, refused atomic.Int64
			var mu sync.Mutex
			charges := map[int64]int64{} // reservation id → charged
			var wg sync.WaitGroup
			for w := range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s := instances[w%2]
					rng := rand.New(rand.NewPCG(uint64(w), 7))
					for range 25 {
						attempts.Add(1)
						cost := int64(1 + rng.IntN(3))
						r, err := s.Reserve(ctx, credit.ReserveRequest{Account: acct, Amount: cost, KeyID: "key_w", RequestID: "req"})
						if errors.Is(err, credit.ErrInsufficientCredits) {
							refused.Add(1)
							continue
						}
						if !assert.NoError(t, err) {
							return
						}
						if rng.IntN(4) == 0 { // the handler failed
							assert.NoError(t, s.Release(ctx, acct, r.ID))
							continue
						}
						final := cost - int64(rng.IntN(int(cost)))
						if assert.NoError(t, s.Commit(ctx, acct, r.ID, final)) {
							committed.Add(final)
							mu.Lock()
							charges[r.ID] += final
							mu.Unlock()
						}
					}
				}()
			}
			wg.Wait()
			b, err := instances[0].Balance(ctx, acct)
			require.NoError(t, err)
			t.Logf("%s: %d attempts, %d refused for credits, %d credits committed", engine, attempts.Load(), refused.Load(), committed.Load())
			assert.Positive(t, refused.Load(), "the load must run the balance out")
			assert.Equal(t, committed.Load(), b.Spent, "committed total = what the ledger spent")
			assert.Equal(t, initial-committed.Load(), b.Available, "balance delta = committed total")
			assert.GreaterOrEqual(t, b.Available, int64(0), "never overspent")
			assert.LessOrEqual(t, committed.Load(), int64(initial))
			assert.Zero(t, b.Reserved)
			assert.Zero(t, b.OpenReservations, "no open reservations at the end")
			assert.Equal(t, b.Allocation+b.Granted-b.Spent, rebuild(t, instances[0], b), "the balance rebuilds from the ledger")
			entries, err := instances[1].Entries(ctx, acct.OrgID, b.PeriodStart)
			require.NoError(t, err)
			seen := map[int64]int64{}
			for _, e := range entries {
				if e.Kind == "commit" {
					_, dup := seen[e.ReservationID]
					assert.False(t, dup, "reservation %d committed twice", e.ReservationID)
					seen[e.ReservationID] = e.Amount
				}
			}
			assert.Equal(t, charges, seen, "every charge in the ledger exactly once")
		})
	}
}

// TestAbandonedReservationIsReleased: a process reserves and dies before
// settling; after the reservation TTL another process sees the credits
// back, with an expire entry in the ledger.
func TestAbandonedReservationIsReleased(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := newDSN(t, engine)
			clock := keywardtest.NewClock(time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC))
			acct := credit.Account{OrgID: "org_a", Allocation: 10}
			dying, err := sqlstore.Open(ctx, engineOf(dsn), sqlstore.Options{Now: clock.Now})
			require.NoError(t, err)
			r, err := dying.Reserve(ctx, credit.ReserveRequest{Account: acct, Amount: 7, KeyID: "key_1", RequestID: "req_1"})
			require.NoError(t, err)
			require.NoError(t, dying.DB().Close()) // dies: no settle, no clean close

			survivor := open(t, dsn, sqlstore.Options{Now: clock.Now})
			b, err := survivor.Balance(ctx, acct)
			require.NoError(t, err)
			assert.Equal(t, int64(3), b.Available, "held while the reservation may still settle")
			clock.Advance(credit.DefaultReservationTTL)
			b, err = survivor.Balance(ctx, acct)
			require.NoError(t, err)
			assert.Equal(t, int64(10), b.Available, "released after its expiry")
			assert.Zero(t, b.OpenReservations)
			assert.ErrorIs(t, survivor.Commit(ctx, acct, r.ID, 7), credit.ErrReservationExpired)
			entries, err := survivor.Entries(ctx, acct.OrgID, b.PeriodStart)
			require.NoError(t, err)
			require.Len(t, entries, 2)
			assert.Equal(t, "allocation", entries[0].Kind)
			assert.Equal(t, "expire", entries[1].Kind)
			assert.Equal(t, int64(7), entries[1].Amount)
			assert.Equal(t, "req_1", entries[1].RequestID)
		})
	}
}

// rewindTo takes db's schema back to before migration version, so that
// the next open applies it and those after it again. Migrations after
// 0004 that cannot run twice are undone here.
func rewindTo(t *testing.T, db *sql.DB, version int) {
	t.Helper()
	for _, q := range []string{`DROP INDEX keyward_keys_hint`,
		`ALTER TABLE keyward_keys DROP COLUMN predecessor`, `ALTER TABLE keyward_keys DROP COLUMN successor`,
		`ALTER TABLE keyward_plans DROP COLUMN requests_per_second`, `ALTER TABLE keyward_plans DROP COLUMN concurrency`,
		`ALTER TABLE keyward_orgs DROP COLUMN rate_per_second`, `ALTER TABLE keyward_orgs DROP COLUMN concurrency`,
		`ALTER TABLE keyward_reservations DROP COLUMN lease`, `ALTER TABLE keyward_credit_accounts DROP COLUMN lease_recall`,
		`ALTER TABLE keyward_reservations DROP COLUMN renewed_at`,
		`ALTER TABLE keyward_plans DROP COLUMN burst`, `ALTER TABLE keyward_orgs DROP COLUMN burst`} {
		_, err := db.Exec(q)
		require.NoError(t, err, q)
	}
	_, err := db.Exec(`DELETE FROM keyward_migrations WHERE version >= $1`, version)
	require.NoError(t, err)
}

// TestFingerprintMigration: rows written before fingerprints were stored
// hex-encoded (raw bytes on SQLite; on PostgreSQL only valid UTF-8 could be
// written) still replay and still refuse another request once migration
// 0003 has converted them.
func TestFingerprintMigration(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := newDSN(t, engine)
			clock := keywardtest.NewClock(keywardtest.LedgerStart)
			legacy := keywardtest.Fingerprint("POST /v1/batch") // raw bytes, as SQLite kept them
			if engine == "postgres" {
				legacy = "POST /v1/batch é" // PostgreSQL could only keep valid UTF-8
			}
			old := open(t, dsn, sqlstore.Options{Now: clock.Now})
			now := clock.Now().UnixNano()
			_, err := old.DB().ExecContext(ctx, `INSERT INTO keyward_reservations
				(org_id, amount, state, key_id, request_id, idempotency_key, fingerprint, charged, period_start, created_at, expires_at, settled_at)
				VALUES ('org_a', 3, 'committed', 'key_1', 'req_1', 'k1', $1, 3, 0, $2, $2, $2)`, legacy, now)
			require.NoError(t, err)
			// Back to the schema before 0003, then open again: it migrates.
			rewindTo(t, old.DB(), 3)
			require.NoError(t, old.Close())

			s := open(t, dsn, sqlstore.Options{Now: clock.Now})
			acct := credit.Account{OrgID: "org_a", Allocation: 10}
			r, err := s.Reserve(ctx, credit.ReserveRequest{Account: acct, Amount: 3, IdempotencyKey: "k1", Fingerprint: legacy})
			require.NoError(t, err)
			assert.True(t, r.Replayed, "a retry of the call charged before the migration is replayed")
			assert.Equal(t, int64(3), r.Charged)
			_, err = s.Reserve(ctx, credit.ReserveRequest{Account: acct, Amount: 3, IdempotencyKey: "k1", Fingerprint: keywardtest.Fingerprint("GET /")})
			assert.ErrorIs(t, err, credit.ErrIdempotencyKeyReused)
		})
	}
}

// A period function whose period does not contain now, or ends past 2200
// (where Unix nanoseconds overflow), is refused with credit.ErrBadPeriod,
// as memstore refuses it, and nothing is written.
func TestLedgerRefusesABadPeriod(t *testing.T) {
	t.Parallel()
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			for name, period := range map[string]credit.PeriodFunc{
				"ahead": func(_ string, t time.Time) (time.Time, time.Time) { return t.Add(time.Hour), t.Add(2 * time.Hour) },
				"9999": func(_ string, t time.Time) (time.Time, time.Time) {
					return t, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
				},
			} {
				s := open(t, newDSN(t, engine), sqlstore.Options{Period: period})
				_, err := s.Reserve(context.Background(), credit.ReserveRequest{Account: credit.Account{OrgID: "org_a", Allocation: 1}, Amount: 1})
				assert.ErrorIs(t, err, credit.ErrBadPeriod, name)
				entries, err := s.Entries(context.Background(), "org_a", time.Time{})
				require.NoError(t, err)
				assert.Empty(t, entries, name)
			}
		})
	}
}

package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/keyward/keyward/credit"
)

var _ credit.Ledger = (*Store)(nil)

// Reservation states.
const (
	stateOpen      = "open"
	stateCommitted = "committed"
)

// account is an organization's credit row as this transaction sees it.
type account struct {
	orgID                                      string
	start, end                                 int64
	allocation, granted, spent, reserved, open int64
	nextExpiry                                 int64
	recall                                     int64 // lease_recall
}

func (a *account) available() int64 {
	return credit.Available(a.allocation, a.granted, a.spent, a.reserved)
}

func (a *account) balance() credit.Balance {
	return credit.Balance{
		OrgID: a.orgID, PeriodStart: time.Unix(0, a.start).UTC(), PeriodEnd: time.Unix(0, a.end).UTC(),
		Allocation: a.allocation, Granted: a.granted, Spent: a.spent, Reserved: a.reserved,
		Available: a.available(), OpenReservations: int(a.open),
	}
}

const accountColumns = `period_start, period_end, allocation, granted, spent, reserved, open_count, next_expiry, lease_recall`

func (a *account) scan(row scanner) error {
	return row.Scan(&a.start, &a.end, &a.allocation, &a.granted, &a.spent, &a.reserved, &a.open, &a.nextExpiry, &a.recall)
}

// credit runs f on the organization's account, brought to now (period,
// allocation, expired reservations), in one transaction that holds the
// account's row lock (PostgreSQL) or the database's write lock (SQLite):
// operations on one organization are serialised by the database, so they
// are exact across processes without any lock of keyward's own.
func (s *Store) credit(ctx context.Context, acct credit.Account, f func(tx *sql.Tx, a *account, now int64) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	nowT := s.now()
	start, end := s.period(acct.OrgID, nowT)
	if err := credit.CheckPeriod(nowT, start, end); err != nil {
		return err
	}
	now := nowT.UnixNano()
	own := int64(0)
	if s.lease != nil {
		own = s.lease.leaseID(acct.OrgID)
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		a, err := s.account(ctx, tx, acct, start.UnixNano(), end.UnixNano(), now, own)
		if err != nil {
			return err
		}
		return f(tx, &a, now)
	})
}

// account returns the organization's account row, locked for the rest of
// tx and brought to now: its period (start, end), its allocation, and its
// expired reservations released, leases among them: other instances'
// leases not renewed in time are returned here, by any instance. own, this
// instance's lease of the organization (0: none), is renewed by its
// writes, never returned here, though it may be late (a frozen clock, a
// write held up).
func (s *Store) account(ctx context.Context, tx *sql.Tx, acct credit.Account, startNs, endNs, now, own int64) (a account, err error) {
	err = func() error {
		// Create the account or, with a write that changes nothing, take its
		// row lock for the rest of the transaction: one round trip. A new
		// account has no period yet: its first one starts below.
		a = account{orgID: acct.OrgID}
		if err := a.scan(tx.QueryRowContext(ctx, `INSERT INTO keyward_credit_accounts (org_id, period_start, period_end, allocation)
			VALUES ($1, 0, 0, 0) ON CONFLICT (org_id) DO UPDATE SET org_id = excluded.org_id
			RETURNING `+accountColumns, acct.OrgID)); err != nil {
			return err
		}
		before := a
		// Periods only move forward: a clock a moment behind the period
		// already begun (another instance's) works in that period.
		newPeriod := startNs > a.start
		if newPeriod {
			// A new period: no rollover; what was still open is expired.
			if err := s.expireWhere(ctx, tx, &a, now, `org_id = $1 AND state = 'open'`, acct.OrgID); err != nil {
				return err
			}
			a.start, a.end = startNs, endNs
			a.granted, a.spent, a.reserved, a.open, a.nextExpiry = 0, 0, 0, 0, 0
			a.allocation = 0
		}
		if newPeriod || acct.Allocation > a.allocation {
			// The period's allocation is the largest seen in it (upgrades
			// count at once). The ledger records what each change adds: the
			// whole allocation when the period starts, the increase when an
			// upgrade raises it.
			why := "upgrade"
			if newPeriod {
				why = "period start"
			}
			if err := appendEntry(ctx, tx, a.orgID, "allocation", acct.Allocation-a.allocation, 0, "", "", "",
				why+": allocation "+strconv.FormatInt(acct.Allocation, 10), a.start, now); err != nil {
				return err
			}
			a.allocation = acct.Allocation
		}
		if a.open > 0 && a.nextExpiry != 0 && now >= a.nextExpiry {
			if err := s.expireWhere(ctx, tx, &a, now, `org_id = $1 AND state = 'open' AND expires_at <= $2 AND id <> $3`,
				acct.OrgID, now, own); err != nil {
				return err
			}
			if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MIN(expires_at), 0) FROM keyward_reservations
				WHERE org_id = $1 AND state = 'open'`, acct.OrgID).Scan(&a.nextExpiry); err != nil {
				return err
			}
		}
		if a != before {
			if _, err := tx.ExecContext(ctx, `UPDATE keyward_credit_accounts SET period_start = $2, period_end = $3,
				allocation = $4, granted = $5, spent = $6, reserved = $7, open_count = $8, next_expiry = $9 WHERE org_id = $1`,
				a.orgID, a.start, a.end, a.allocation, a.granted, a.spent, a.reserved, a.open, a.nextExpiry); err != nil {
				return err
			}
		}
		return nil
	}()
	return a, err
}

// expireWhere expires the open reservations that cond selects (cond's
// placeholders are $1… for args; now follows them) and appends an expire
// entry for each.
func (s *Store) expireWhere(ctx context.Context, tx *sql.Tx, a *account, now int64, cond string, args ...any) error {
	rows, err := tx.QueryContext(ctx, `UPDATE keyward_reservations SET state = 'expired', settled_at = $`+strconv.Itoa(len(args)+1)+
		` WHERE `+cond+` RETURNING id, amount, key_id, request_id, idempotency_key, period_start`, append(args, now)...)
	if err != nil {
		return err
	}
	type expired struct {
		id, amount, period   int64
		keyID, reqID, idemKy string
	}
	var list []expired
	for rows.Next() {
		var e expired
		if err := rows.Scan(&e.id, &e.amount, &e.keyID, &e.reqID, &e.idemKy, &e.period); err != nil {
			_ = rows.Close()
			return err
		}
		list = append(list, e)
	}
	_ = rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, e := range list {
		a.reserved -= e.amount
		a.open--
		if err := appendEntry(ctx, tx, a.orgID, "expire", e.amount, e.id, e.keyID, e.reqID, e.idemKy, "", e.period, now); err != nil {
			return err
		}
	}
	return nil
}

// appendEntry appends one row to the ledger.
func appendEntry(ctx context.Context, tx *sql.Tx, org, kind string, amount, resID int64, keyID, reqID, idem, note string, period, now int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO keyward_ledger
		(org_id, kind, amount, reservation_id, key_id, request_id, idempotency_key, note, period_start, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, org, kind, amount, resID, keyID, reqID, idem, note, period, now)
	return err
}

// Reserve implements credit.Ledger: one conditional update of the
// account (available ≥ amount, unless overage) and one reservation row,
// in one transaction.
func (s *Store) Reserve(ctx context.Context, req credit.ReserveRequest) (credit.Reservation, error) {
	acct := req.Account
	if err := cmp.Or(acct.Check(), credit.CheckAmount(req.Amount)); err != nil {
		return credit.Reservation{}, err
	}
	out := credit.Reservation{OrgID: acct.OrgID}
	// The fingerprint is opaque bytes (ChargeCredits' are raw SHA-256),
	// which PostgreSQL refuses in a TEXT column unless they are UTF-8.
	var err error
	if s.lease != nil {
		out, err = s.lease.reserve(ctx, req)
	} else {
		err = s.credit(ctx, acct, func(tx *sql.Tx, a *account, now int64) error {
			return s.reserveIn(ctx, tx, a, now, req, &out)
		})
	}
	if err != nil {
		return out, err
	}
	return out, nil
}

// reserveIn is Reserve in tx, on the account a (locked, brought to now):
// the exact path, one reservation row per call.
func (s *Store) reserveIn(ctx context.Context, tx *sql.Tx, a *account, now int64, req credit.ReserveRequest, out *credit.Reservation) error {
	acct := req.Account
	fingerprint := hex.EncodeToString([]byte(req.Fingerprint))
	{
		if req.IdempotencyKey != "" {
			var (
				id, charged, created int64
				state, fp            string
			)
			// At most one row: a unique index guards it.
			err := tx.QueryRowContext(ctx, `SELECT id, state, fingerprint, charged, created_at FROM keyward_reservations
				WHERE org_id = $1 AND idempotency_key = $2 AND state IN ('open', 'committed')`,
				acct.OrgID, req.IdempotencyKey).Scan(&id, &state, &fp, &charged, &created)
			switch {
			case errors.Is(err, sql.ErrNoRows):
			case err != nil:
				return err
			case now-created >= int64(s.idemTTL) && state != stateOpen:
				// Remembered longer than the TTL, and not in flight: the key
				// is free again.
				if _, err := tx.ExecContext(ctx, `UPDATE keyward_reservations SET idempotency_key = '' WHERE id = $1`, id); err != nil {
					return err
				}
			case fp != fingerprint:
				return credit.ErrIdempotencyKeyReused
			case state == stateOpen:
				return credit.ErrIdempotencyKeyInUse
			default:
				out.ID, out.Replayed, out.Charged, out.Available = id, true, charged, a.available()
				return nil
			}
		}
		avail := a.available()
		// The conditional update: the account holds the amount only if
		// Available stays at or above its floor (0, or −MaxCredits with
		// overage). The CAST: PostgreSQL types a parameter where it first
		// meets it, and "$2 = 0" alone would make it a 32-bit integer.
		expires := now + int64(s.resTTL)
		err := a.scan(tx.QueryRowContext(ctx, `UPDATE keyward_credit_accounts
			SET reserved = reserved + $2, open_count = open_count + 1,
				next_expiry = CASE WHEN next_expiry = 0 OR next_expiry > $4 THEN $4 ELSE next_expiry END
			WHERE org_id = $1 AND (CAST($2 AS BIGINT) = 0 OR allocation + granted - spent - reserved - $2 >= $3)
			RETURNING `+accountColumns, acct.OrgID, req.Amount, acct.MinAvailable(), expires))
		if errors.Is(err, sql.ErrNoRows) {
			out.Available = max(avail, 0)
			return credit.ErrInsufficientCredits
		}
		if err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `INSERT INTO keyward_reservations
			(org_id, amount, state, key_id, request_id, idempotency_key, fingerprint, period_start, created_at, expires_at)
			VALUES ($1, $2, 'open', $3, $4, $5, $6, $7, $8, $9) RETURNING id`,
			acct.OrgID, req.Amount, req.KeyID, req.RequestID, req.IdempotencyKey, fingerprint, a.start, now, expires).Scan(&out.ID); err != nil {
			return err
		}
		out.Amount, out.ExpiresAt, out.Available = req.Amount, time.Unix(0, expires), a.available()
		return nil
	}
}

// openReservation is what settling needs of a reservation.
type openReservation struct {
	amount               int64
	keyID, reqID, idemKy string
}

// lookupOpen finds an open reservation of the organization. Expired ones
// are already expired by credit.
func lookupOpen(ctx context.Context, tx *sql.Tx, org string, id int64) (openReservation, error) {
	var r openReservation
	var state string
	err := tx.QueryRowContext(ctx, `SELECT amount, state, key_id, request_id, idempotency_key FROM keyward_reservations
		WHERE id = $1 AND org_id = $2 AND lease = 0`, id, org).Scan(&r.amount, &state, &r.keyID, &r.reqID, &r.idemKy)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return r, credit.ErrReservationNotFound
	case err != nil:
		return r, err
	case state == "expired":
		return r, credit.ErrReservationExpired
	case state != stateOpen:
		return r, credit.ErrReservationNotFound
	}
	return r, nil
}

// Adjust implements credit.Ledger.
func (s *Store) Adjust(ctx context.Context, acct credit.Account, id, amount int64) (credit.Reservation, error) {
	if err := cmp.Or(acct.Check(), credit.CheckAmount(amount)); err != nil {
		return credit.Reservation{}, err
	}
	if s.lease != nil && id >= localBase {
		return s.lease.adjust(ctx, acct, id, amount)
	}
	out := credit.Reservation{OrgID: acct.OrgID}
	err := s.credit(ctx, acct, func(tx *sql.Tx, a *account, now int64) error {
		r, err := lookupOpen(ctx, tx, acct.OrgID, id)
		if err != nil {
			return err
		}
		delta := amount - r.amount
		avail := a.available()
		err = a.scan(tx.QueryRowContext(ctx, `UPDATE keyward_credit_accounts SET reserved = reserved + $2
			WHERE org_id = $1 AND (CAST($2 AS BIGINT) <= 0 OR allocation + granted - spent - reserved - $2 >= $3)
			RETURNING `+accountColumns, acct.OrgID, delta, acct.MinAvailable()))
		if errors.Is(err, sql.ErrNoRows) {
			out.Available = max(avail, 0)
			return credit.ErrInsufficientCredits
		}
		if err != nil {
			return err
		}
		var expires int64
		if err := tx.QueryRowContext(ctx, `UPDATE keyward_reservations SET amount = $2 WHERE id = $1 RETURNING expires_at`,
			id, amount).Scan(&expires); err != nil {
			return err
		}
		out.ID, out.Amount, out.ExpiresAt, out.Available = id, amount, time.Unix(0, expires), a.available()
		return nil
	})
	return out, err
}

// Extend implements credit.Ledger. The account's next_expiry is
// left as it is: a later expiry keeps it a lower bound, and credit brings it
// up to date once it has passed.
func (s *Store) Extend(ctx context.Context, acct credit.Account, id int64) (time.Time, error) {
	if err := acct.Check(); err != nil {
		return time.Time{}, err
	}
	if s.lease != nil && id >= localBase {
		return s.lease.extend(ctx, acct, id)
	}
	var expires int64
	err := s.credit(ctx, acct, func(tx *sql.Tx, a *account, now int64) error {
		if _, err := lookupOpen(ctx, tx, acct.OrgID, id); err != nil {
			return err
		}
		expires = now + int64(s.resTTL)
		_, err := tx.ExecContext(ctx, `UPDATE keyward_reservations SET expires_at = $2 WHERE id = $1`, id, expires)
		return err
	})
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, expires).UTC(), nil
}

// Commit implements credit.Ledger.
func (s *Store) Commit(ctx context.Context, acct credit.Account, id, amount int64) error {
	if err := cmp.Or(acct.Check(), credit.CheckAmount(amount)); err != nil {
		return err
	}
	if s.lease != nil && id >= localBase {
		return s.lease.commit(ctx, acct, id, amount)
	}
	return s.credit(ctx, acct, func(tx *sql.Tx, a *account, now int64) error {
		// Settle only an open reservation that covers the amount: one
		// statement decides and writes.
		var r openReservation
		err := tx.QueryRowContext(ctx, `UPDATE keyward_reservations SET state = 'committed', charged = $3, settled_at = $4
			WHERE id = $1 AND org_id = $2 AND state = 'open' AND lease = 0 AND amount >= $3
			RETURNING amount, key_id, request_id, idempotency_key`, id, acct.OrgID, amount, now).
			Scan(&r.amount, &r.keyID, &r.reqID, &r.idemKy)
		if errors.Is(err, sql.ErrNoRows) {
			if _, err := lookupOpen(ctx, tx, acct.OrgID, id); err != nil {
				return err
			}
			return credit.ErrInvalidAmount // open, but amount > its Amount
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE keyward_credit_accounts
			SET reserved = reserved - $2, open_count = open_count - 1, spent = spent + $3 WHERE org_id = $1`,
			acct.OrgID, r.amount, amount); err != nil {
			return err
		}
		return appendEntry(ctx, tx, acct.OrgID, "commit", amount, id, r.keyID, r.reqID, r.idemKy, "", a.start, now)
	})
}

// Release implements credit.Ledger.
func (s *Store) Release(ctx context.Context, acct credit.Account, id int64) error {
	if err := acct.Check(); err != nil {
		return err
	}
	if s.lease != nil && id >= localBase {
		return s.lease.release(ctx, acct, id)
	}
	return s.credit(ctx, acct, func(tx *sql.Tx, a *account, now int64) error {
		var r openReservation
		err := tx.QueryRowContext(ctx, `UPDATE keyward_reservations SET state = 'released', settled_at = $3
			WHERE id = $1 AND org_id = $2 AND state = 'open' AND lease = 0
			RETURNING amount, key_id, request_id, idempotency_key`, id, acct.OrgID, now).
			Scan(&r.amount, &r.keyID, &r.reqID, &r.idemKy)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // not open: nothing to release
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE keyward_credit_accounts
			SET reserved = reserved - $2, open_count = open_count - 1 WHERE org_id = $1`, acct.OrgID, r.amount); err != nil {
			return err
		}
		return appendEntry(ctx, tx, acct.OrgID, "release", r.amount, id, r.keyID, r.reqID, r.idemKy, "", a.start, now)
	})
}

// Grant implements credit.Ledger; the note is kept in the ledger.
func (s *Store) Grant(ctx context.Context, acct credit.Account, amount int64, note string) (credit.Balance, error) {
	if err := acct.Check(); err != nil {
		return credit.Balance{}, err
	}
	var out credit.Balance
	err := s.credit(ctx, acct, func(tx *sql.Tx, a *account, now int64) error {
		if err := credit.CheckGrant(a.allocation, a.granted, amount); err != nil {
			return err
		}
		if err := a.scan(tx.QueryRowContext(ctx, `UPDATE keyward_credit_accounts SET granted = granted + $2 WHERE org_id = $1
			RETURNING `+accountColumns, acct.OrgID, amount)); err != nil {
			return err
		}
		if err := appendEntry(ctx, tx, acct.OrgID, "grant", amount, 0, "", "", "", note, a.start, now); err != nil {
			return err
		}
		var err error
		out, err = balanceIn(ctx, tx, a)
		return err
	})
	if err == nil && s.lease != nil {
		return s.lease.balance(ctx, acct) // with this instance's leases
	}
	return out, err
}

// Balance implements credit.Ledger.
func (s *Store) Balance(ctx context.Context, acct credit.Account) (credit.Balance, error) {
	if err := acct.Check(); err != nil {
		return credit.Balance{}, err
	}
	if s.lease != nil {
		return s.lease.balance(ctx, acct)
	}
	var out credit.Balance
	err := s.credit(ctx, acct, func(tx *sql.Tx, a *account, now int64) error {
		var err error
		out, err = balanceIn(ctx, tx, a)
		return err
	})
	return out, err
}

// balanceIn returns a's balance with the leases (of any instance) as
// Leased, not as Reserved: what they hold unused is available, to the
// instance that holds it.
func balanceIn(ctx context.Context, tx *sql.Tx, a *account) (credit.Balance, error) {
	out := a.balance()
	var leased, leases int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(SUM(amount), 0), COUNT(*) FROM keyward_reservations
		WHERE org_id = $1 AND state = 'open' AND lease = 1`, a.orgID).Scan(&leased, &leases); err != nil {
		return out, err
	}
	out.Reserved -= leased
	out.OpenReservations -= int(leases)
	out.Leased = leased
	return out, nil
}

// LedgerEntry is one row of the append-only credit ledger.
type LedgerEntry = credit.Entry

// Entries returns an organization's ledger entries of the billing period
// that starts at periodStart, oldest first. The period's balance is
// Σ allocation + Σ grant − Σ commit.
func (s *Store) Entries(ctx context.Context, orgID string, periodStart time.Time) ([]LedgerEntry, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `SELECT id, kind, amount, reservation_id, key_id, request_id, idempotency_key, note,
		period_start, created_at FROM keyward_ledger WHERE org_id = $1 AND period_start = $2 ORDER BY id`,
		orgID, periodStart.UnixNano())
	if err != nil {
		return nil, err
	}
	return scanEntries(rows)
}

func scanEntries(rows *sql.Rows) ([]credit.Entry, error) {
	defer rows.Close()
	var out []credit.Entry
	for rows.Next() {
		var e credit.Entry
		var ps, ca int64
		if err := rows.Scan(&e.ID, &e.Kind, &e.Amount, &e.ReservationID, &e.KeyID, &e.RequestID, &e.IdempotencyKey,
			&e.Note, &ps, &ca); err != nil {
			return nil, err
		}
		e.PeriodStart, e.CreatedAt = time.Unix(0, ps).UTC(), time.Unix(0, ca).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// EntriesBefore returns up to limit (1 to 1000) of an organization's
// ledger entries, of every period, whose ID is below beforeID (≤ 0: from
// the newest), newest first: a page of its history.
func (s *Store) EntriesBefore(ctx context.Context, orgID string, beforeID int64, limit int) ([]credit.Entry, error) {
	if limit < 1 || limit > 1000 {
		return nil, fmt.Errorf("keyward: sqlstore: entries: limit %d is out of range 1 to 1000", limit)
	}
	if beforeID <= 0 {
		beforeID = math.MaxInt64
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `SELECT id, kind, amount, reservation_id, key_id, request_id, idempotency_key, note,
		period_start, created_at FROM keyward_ledger WHERE org_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3`,
		orgID, beforeID, limit)
	if err != nil {
		return nil, err
	}
	return scanEntries(rows)
}

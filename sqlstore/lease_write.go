package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The flush: what a lease transaction writes for one organization, and
// the transaction that writes every lease of the Store.

// leaseWrite is one organization's part of a lease transaction: what was
// taken from its orgLease (pending calls, credits given back), what the
// database now holds, and the account as the transaction left it.
type leaseWrite struct {
	ol      *orgLease
	a       account
	pending []pendingEntry // taken from ol (given back to it if tx fails)
	commits []pendingEntry // what of pending is charged: written to the ledger
	dropped int64          // what of pending was not: credits
	give    int64          // taken from free, given back
	grow    int64          // added to the lease
	id      int64          // the lease row after the write (0: none)
	held    int64
	expires int64
	free    int64 // ol.free right after the take (for Available)
	others  int64 // what other instances' leases hold
	covered bool  // the lease now covers need
	lost    bool  // the lease row was gone (expired or a new period)
}

// write brings org's account to now in tx, writes ol's pending calls,
// and resizes ol's lease: to cover need (> 0) and leaseWrites flush
// intervals of recent use, at most 1/leaseShare of what is available,
// nothing when that is below minAvail or the leases are recalled. It takes
// from ol under l.mu what it writes; the caller, once tx is over, gives
// the result to apply or, if tx failed, to undo (w is not nil once
// something was taken, error or not). Called with ol.sync held.
func (l *leaser) write(ctx context.Context, tx *sql.Tx, ol *orgLease, now, start, need int64, must bool) (*leaseWrite, error) {
	l.mu.Lock()
	acct, id := ol.acct, ol.id
	l.mu.Unlock()
	period := l.s.period
	_, end := period(acct.OrgID, time.Unix(0, now))
	a, err := l.s.account(ctx, tx, acct, start, end.UnixNano(), now, id)
	if err != nil {
		return nil, err
	}
	before := a
	alive := false
	if id != 0 {
		var state string
		if err := tx.QueryRowContext(ctx, `SELECT state FROM keyward_reservations WHERE id = $1`, id).Scan(&state); err != nil &&
			!errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
		alive = state == stateOpen
	}

	// Take, under l.mu, what this transaction writes.
	w := &leaseWrite{ol: ol}
	l.mu.Lock()
	w.pending, ol.pending = ol.pending, nil
	if !alive && id != 0 {
		// Expired (its reservations with it) or ended with its period.
		w.lost = true
		ol.id, ol.held, ol.free, ol.reserved, ol.open = 0, 0, 0, 0, 0
	}
	used := ol.used
	ol.used = 0
	spentLease := w.charge(&a, ol.id, acct.MinAvailable())
	// The size: leaseWrites writes' worth of recent use (a call that found
	// the lease short doubles it; an idle lease halves), at most a share of
	// what is available.
	want := max(leaseWrites*used, need, ol.size/2) // unused, a lease halves each write
	if need == 0 && ol.id == 0 {
		want = 0 // a flush keeps a lease, never starts one: calls do
	}
	if need > 0 {
		want = max(want, 2*ol.size, 16*need)
	}
	pool := a.available() + ol.free // what this instance could hold
	want = min(want, pool/leaseShare)
	if want < need || pool < l.minAvail || a.recall > now || a.start != start || l.closing {
		want = 0
	}
	if must && want < need && a.recall <= now && a.start == start && pool-need >= acct.MinAvailable() {
		want = need // an Adjust: exactly what it needs, as a reservation would
	}
	ol.size = want
	if want > ol.free {
		w.grow = want - ol.free
	} else if want == 0 || ol.free > 2*want {
		w.give = ol.free - want
		ol.free = want
	}
	w.free = ol.free
	w.held = ol.held - spentLease - w.give + w.grow
	if ol.id == 0 {
		w.held = w.grow
	}
	l.mu.Unlock()
	w.covered = need > 0 && w.grow+w.free >= need && w.held > 0

	// Write the calls: one commit entry each; the spent of this period.
	if err := l.s.insertCommits(ctx, tx, acct.OrgID, w.commits); err != nil {
		return w, err
	}
	a.spent += spentLease
	w.id, w.expires = ol.id, now+int64(l.ttl)
	switch {
	case w.id == 0 && w.held > 0:
		if err := tx.QueryRowContext(ctx, `INSERT INTO keyward_reservations
			(org_id, amount, state, key_id, request_id, idempotency_key, fingerprint, period_start, created_at, expires_at, lease, renewed_at)
			VALUES ($1, $2, 'open', '', '', '', '', $3, $4, $5, 1, $4) RETURNING id`,
			acct.OrgID, w.held, a.start, now, w.expires).Scan(&w.id); err != nil {
			return w, err
		}
		a.reserved += w.held
		a.open++
	case w.id != 0 && w.held == 0:
		if _, err := tx.ExecContext(ctx, `UPDATE keyward_reservations SET state = 'released', amount = 0, settled_at = $2
			WHERE id = $1`, w.id, now); err != nil {
			return w, err
		}
		a.reserved -= ol.held
		a.open--
		w.id = 0
	case w.id != 0:
		if _, err := tx.ExecContext(ctx, `UPDATE keyward_reservations SET amount = $2, expires_at = $3, renewed_at = $4 WHERE id = $1`,
			w.id, w.held, w.expires, now); err != nil {
			return w, err
		}
		a.reserved += w.held - ol.held
	}
	if w.id != 0 && (a.nextExpiry == 0 || a.nextExpiry > w.expires) {
		a.nextExpiry = w.expires
	}
	if a != before {
		if _, err := tx.ExecContext(ctx, `UPDATE keyward_credit_accounts SET spent = $2, reserved = $3, open_count = $4,
			next_expiry = $5 WHERE org_id = $1`, a.orgID, a.spent, a.reserved, a.open, a.nextExpiry); err != nil {
			return w, err
		}
	}
	w.a = a
	w.others, err = l.othersLeased(ctx, tx, a.orgID, w.id)
	return w, err
}

// charge chooses what of w.pending is written (w.commits) and returns
// what the live lease (0: none) held of it. Calls of the live lease were
// held by it; calls of an ended period are written to it; calls of a
// lease that was returned meanwhile (its holder could not write for TTL)
// are charged to a as far as its credits allow (floor: the lowest
// Available), since another instance may have spent what that lease held:
// never overspent. The rest is not charged (w.dropped).
func (w *leaseWrite) charge(a *account, lease, floor int64) (spentLease int64) {
	for _, e := range w.pending {
		switch {
		case e.leaseID == lease && lease != 0:
			spentLease += e.amount
		case e.period != a.start:
		case a.available()-e.amount >= floor:
			a.spent += e.amount
		default:
			w.dropped += e.amount
			continue
		}
		w.commits = append(w.commits, e)
	}
	return spentLease
}

// apply records in ol what w wrote. Called with l.mu held.
func (l *leaser) apply(w *leaseWrite) {
	ol := w.ol
	if ol.id != w.id {
		ol.period = w.a.start
	}
	ol.id, ol.held, ol.expires = w.id, w.held, w.expires
	ol.free += w.grow
	// What Balance counts available, but for this instance's lease: other
	// leases are available (to their holders), this one's unused part is
	// ol.free.
	ol.dbAvail = w.a.available() + w.others
	if w.dropped > 0 {
		l.s.logger.Warn("keyward: sqlstore: calls committed from a lease returned before they were written exceed the credits left; not charged",
			"orgId", w.a.orgID, "credits", w.dropped)
	}
}

// undo gives back to ol what w took, its transaction having failed.
// Called with l.mu held.
func (l *leaser) undo(w *leaseWrite) {
	ol := w.ol
	ol.pending = append(w.pending, ol.pending...)
	ol.free += w.give
}

// insertCommits appends one commit entry per call: on PostgreSQL in one
// statement whose parameters are arrays (unnest), on SQLite in statements
// of up to 500 rows.
func (s *Store) insertCommits(ctx context.Context, tx *sql.Tx, org string, list []pendingEntry) error {
	if len(list) == 0 {
		return nil
	}
	if s.dialect == postgres {
		n := len(list)
		amount, resID, period, at := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		keyID, reqID := make([]string, n), make([]string, n)
		for i, e := range list {
			amount[i], resID[i], period[i], at[i], keyID[i], reqID[i] = e.amount, e.leaseID, e.period, e.at, e.keyID, e.reqID
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO keyward_ledger
			(org_id, kind, amount, reservation_id, key_id, request_id, period_start, created_at)
			SELECT $1, 'commit', u.* FROM unnest($2::BIGINT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[], $7::BIGINT[]) AS u`,
			org, amount, resID, keyID, reqID, period, at)
		return err
	}
	const cols, chunk = 8, 500
	for len(list) > 0 {
		n := min(len(list), chunk)
		var q strings.Builder
		q.WriteString(`INSERT INTO keyward_ledger (org_id, kind, amount, reservation_id, key_id, request_id, period_start, created_at) VALUES `)
		args := make([]any, 0, n*cols)
		for i, e := range list[:n] {
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteByte('(')
			for j := range cols {
				if j > 0 {
					q.WriteByte(',')
				}
				q.WriteByte('$')
				q.WriteString(strconv.Itoa(i*cols + j + 1))
			}
			q.WriteByte(')')
			args = append(args, org, "commit", e.amount, e.leaseID, e.keyID, e.reqID, e.period, e.at)
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return err
		}
		list = list[n:]
	}
	return nil
}

// flushLoop writes every FlushInterval.
func (l *leaser) flushLoop() {
	defer l.s.wg.Done()
	for l.s.sleep(l.every) {
		ctx, cancel := context.WithTimeout(context.Background(), l.s.timeout)
		if err := l.flush(ctx, false); err != nil {
			l.s.logger.Warn("keyward: sqlstore: writing leases failed; kept for the next flush", "error", err)
		}
		cancel()
	}
}

// FlushLeases writes what every lease of this Store spent, extends and
// resizes them, in one transaction. The Store does it every
// LeaseOptions.FlushInterval, and on Close, returning every lease.
func (s *Store) FlushLeases(ctx context.Context) error {
	if s.lease == nil {
		return nil
	}
	return s.lease.flush(ctx, false)
}

// flush writes every organization's lease in one transaction; with
// closing, it gives every lease's free credits back.
func (l *leaser) flush(ctx context.Context, closing bool) error {
	l.mu.Lock()
	l.sweep(l.s.now().UnixNano())
	var list []*orgLease
	l.closing = l.closing || closing
	for org, ol := range l.orgs {
		switch {
		case ol.id != 0 || len(ol.pending) > 0:
			list = append(list, ol)
		case ol.open == 0 && ol.sync.TryLock():
			// Idle, no lease: forget it, so that memory follows the
			// organizations being served, not all those ever served.
			ol.gone = true
			delete(l.orgs, org)
			ol.sync.Unlock()
		}
	}
	l.mu.Unlock()
	if len(list) == 0 {
		return nil
	}
	// Sorted, so that instances flushing at once lock accounts in one order.
	slices.SortFunc(list, func(a, b *orgLease) int { return strings.Compare(a.acct.OrgID, b.acct.OrgID) })
	for _, ol := range list {
		ol.sync.Lock()
	}
	defer func() {
		for _, ol := range list {
			ol.sync.Unlock()
		}
	}()
	var writes []*leaseWrite
	err := l.s.inTx(ctx, func(tx *sql.Tx) error {
		for _, ol := range list {
			now, start, err := l.clock(ctx, ol.acct.OrgID)
			if err != nil {
				return err
			}
			w, err := l.write(ctx, tx, ol, now, start, 0, false)
			if w != nil {
				writes = append(writes, w) // undone below if tx fails
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, w := range writes {
		if err != nil {
			l.undo(w)
		} else {
			l.apply(w)
		}
	}
	return err
}

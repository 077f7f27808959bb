package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"sync"
	"time"

	"github.com/keyward/keyward/credit"
)

// Defaults of LeaseOptions.
const (
	// DefaultLeaseFlushInterval is how often an instance writes what its
	// leases spent and resizes them.
	DefaultLeaseFlushInterval = 100 * time.Millisecond
	// DefaultLeaseTTL is how long a lease outlives its holder's last
	// write: 20 default flush intervals.
	DefaultLeaseTTL = 2 * time.Second
	// DefaultLeaseMinAvailable is the available credit below which no
	// lease is taken: every call of the organization reserves exactly.
	DefaultLeaseMinAvailable = 1000
)

// LeaseOptions configure leased credits (Options.Lease).
//
// With leases, each instance holds, per organization it serves, a lease:
// credits reserved in the database in one transaction (an open
// reservation row marked as a lease). Calls without an idempotency key
// reserve and settle from the lease in memory; every FlushInterval one
// transaction writes, for every organization, what was spent (one commit
// entry per call, inserted in bulk), extends the leases and resizes them to
// about two flush intervals of the organization's recent use, at most an
// eighth of what the database has available. An organization with less
// than MinAvailable available in the database gets no lease, and one whose
// call found too few credits while other instances held leases has them
// recalled: in both cases every call reserves exactly, as without leases,
// so the last credits can be spent from any instance.
//
// Bounds. A holder renews its leases at every write; a lease not renewed
// for TTL (2 s by default) is returned to the organization by the next
// transaction of any other instance on it, so an instance that dies strands its
// lease's credits for at most TTL. Calls it committed but had not yet
// written (at most one FlushInterval of them, plus the time of the write)
// are never charged. The holder serves new calls from a lease for TTL/2
// after its last write: while the database is unreachable, that long (then
// calls answer an error), and a lease is never used when another instance
// may already have returned it. Its calls in flight when a lease was
// returned are not charged, and calls it committed but could not write in
// time are charged as far as the organization's credits allow (never
// overspent; the rest is logged and not charged). Grants and upgrades
// count in the database at once and in a lease's size within one
// FlushInterval; a new billing period ends every lease at once. A lease
// holds what the last 30 flush intervals used (3 s by default), so that a
// slow write does not make calls wait.
//
// Waiting. A call that its lease does not cover reserves exactly; when
// too few credits are left but other instances' leases hold enough, it
// recalls them (live holders give them back at their next flush) and
// tries again, for at most 800 ms in all, whatever happens meanwhile;
// then it fails with ErrCreditsLeased (keyward answers 503, Retry-After:
// 1). With too few credits even counting every lease it fails at once with
// credit.ErrInsufficientCredits.
//
// Available. A reservation's Available (keyward's X-Credits-Remaining) is
// what Balance on the same instance counts: other instances' leases are
// available, their calls not yet written are not spent; the database's
// part is as of this instance's last write (at most one FlushInterval
// old, as long as it can reach the database).
type LeaseOptions struct {
	// Enabled turns leases on.
	Enabled bool
	// FlushInterval is how often spent credits are written and leases
	// resized. Zero: DefaultLeaseFlushInterval.
	FlushInterval time.Duration
	// TTL is how long a lease outlives its holder's last write before any
	// instance returns it to the organization; the holder serves new calls
	// from it for TTL/2 after that write. Keep it several FlushIntervals.
	// Zero: DefaultLeaseTTL.
	TTL time.Duration
	// MinAvailable is the available credit below which an organization's
	// calls reserve exactly. Zero: DefaultLeaseMinAvailable.
	MinAvailable int64
}

// leaseWait is the longest a call waits, from its first try, for credits
// that other instances' leases hold (see LeaseOptions): with a transaction
// of a few milliseconds after it, a call is answered within a second.
const leaseWait = 800 * time.Millisecond

// ErrCreditsLeased: the credits a call needs exist but other instances'
// leases hold them, and were not given back within 800 ms (their
// holders are busy with calls of their own, or one died and its lease is
// returned at most LeaseOptions.TTL after its last write). Not an answer of
// the credit contract: keyward answers it as a ledger failure (503 with
// Retry-After). A retry shortly after succeeds.
var ErrCreditsLeased = errors.New("keyward: sqlstore: the credits are held by other instances' leases; retry shortly")

// localBase is the first id of a reservation served from a lease: far
// above any database id, so that settling knows where to look.
const localBase = int64(1) << 62

// leaser holds the Store's leases and the reservations served from them.
type leaser struct {
	s        *Store
	every    time.Duration
	ttl      time.Duration
	minAvail int64

	mu      sync.Mutex
	closing bool // Close: every lease is given back
	orgs    map[string]*orgLease
	res     map[int64]*localRes
	expired map[int64]expiredRes // expired local reservations, remembered for the reservation TTL
	next    int64
}

// orgLease is one organization's lease at this instance. Fields other
// than sync are guarded by leaser.mu.
type orgLease struct {
	sync sync.Mutex // held while the lease is written to the database

	acct     credit.Account // the account as last seen (largest allocation)
	id       int64          // the lease's reservation row; 0: none
	period   int64          // the lease's period start
	expires  int64          // the lease row's expires_at
	held     int64          // the lease row's amount
	free     int64          // held − reserved − pendingSum
	reserved int64          // what open local reservations hold
	open     int
	pending  []pendingEntry // committed, not yet written
	used     int64          // reserved from the lease since the last write
	size     int64          // the free credits the last write aimed at
	dbAvail  int64          // the account's available credit when last written
	gone     bool           // dropped from leaser.orgs: look it up again
	short    shortState     // the last call that recalled the leases
}

// shortState is what the last call that recalled an organization's leases
// found: until when other calls wait with it, what an exact reservation
// could take, and the organization's Available.
type shortState struct {
	until, exact, available int64
}

// localRes is a reservation served from a lease.
type localRes struct {
	ol                   *orgLease
	org                  string
	leaseID              int64
	amount, expires, per int64
	keyID, reqID         string
}

// expiredRes is what is remembered of an expired local reservation.
type expiredRes struct {
	org   string
	until int64 // when to forget it
}

// pendingEntry is a committed call not yet written.
type pendingEntry struct {
	leaseID, period, amount, at int64
	keyID, reqID                string
}

func newLeaser(s *Store, o LeaseOptions) *leaser {
	return &leaser{
		s: s, every: cmp.Or(o.FlushInterval, DefaultLeaseFlushInterval), ttl: cmp.Or(o.TTL, DefaultLeaseTTL),
		minAvail: cmp.Or(o.MinAvailable, DefaultLeaseMinAvailable),
		orgs:     map[string]*orgLease{}, res: map[int64]*localRes{}, expired: map[int64]expiredRes{}, next: localBase,
	}
}

// clock returns now and the current period's start of org, or ctx's
// error once it is done.
func (l *leaser) clock(ctx context.Context, org string) (now, start int64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	nowT := l.s.now()
	st, end := l.s.period(org, nowT)
	if err := credit.CheckPeriod(nowT, st, end); err != nil {
		return 0, 0, err
	}
	return nowT.UnixNano(), st.UnixNano(), nil
}

// org returns org's lease state, made if missing, with acct's allocation
// remembered. Called with l.mu held.
func (l *leaser) org(acct credit.Account) *orgLease {
	ol := l.orgs[acct.OrgID]
	if ol == nil {
		ol = &orgLease{acct: acct}
		l.orgs[acct.OrgID] = ol
	}
	if acct.Allocation > ol.acct.Allocation || acct.AllowOverage != ol.acct.AllowOverage {
		ol.acct.Allocation = max(ol.acct.Allocation, acct.Allocation)
		ol.acct.AllowOverage = acct.AllowOverage
	}
	return ol
}

// leaseID returns this instance's lease of org (0: none).
func (l *leaser) leaseID(org string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ol := l.orgs[org]; ol != nil {
		return ol.id
	}
	return 0
}

// callWait is a call's one deadline, whatever is tried again inside: it
// stops waiting for leased credits at until. since is when it began, on
// the Store's clock (as leases' renewed_at).
type callWait struct {
	since int64
	until time.Time
}

// startWait starts a call's wait.
func (l *leaser) startWait() callWait {
	return callWait{since: l.s.now().UnixNano(), until: time.Now().Add(leaseWait)}
}

// reserve is Reserve with leases: from the lease when it covers the call,
// else through the database (refill).
func (l *leaser) reserve(ctx context.Context, req credit.ReserveRequest) (credit.Reservation, error) {
	now, start, err := l.clock(ctx, req.Account.OrgID)
	if err != nil {
		return credit.Reservation{}, err
	}
	l.mu.Lock()
	ol := l.org(req.Account)
	if req.IdempotencyKey == "" {
		if r, ok := l.take(ol, req, now, start); ok {
			l.mu.Unlock()
			return r, nil
		}
	}
	l.mu.Unlock()
	out := credit.Reservation{OrgID: req.Account.OrgID}
	need := req.Amount
	if req.IdempotencyKey != "" {
		need = 0 // exact, whatever the lease holds
	}
	cw := l.startWait()
	for {
		res, err := l.refill(ctx, cw, ol, need, func(ol *orgLease, now, start int64) bool {
			if req.IdempotencyKey != "" {
				return false
			}
			r, ok := l.take(ol, req, now, start)
			if ok {
				out = r
			}
			return ok
		}, &req, &out)
		if res != refillGone {
			return out, err
		}
		// Dropped while the call waited (the flush forgets an idle
		// organization): the same call goes on, with the same deadline.
		l.mu.Lock()
		ol = l.org(req.Account)
		l.mu.Unlock()
	}
}

// refillResult is what a try of refill came to, its error aside.
type refillResult int

const (
	// refillDone: the call is served (into out), or answered by the error.
	refillDone refillResult = iota
	// refillGone: the orgLease was dropped (the flush forgets an idle
	// organization) before the call locked it: look it up again.
	refillGone
	// refillRecalled: other instances' leases hold enough for the call
	// and were recalled: try again once they are given back.
	refillRecalled
	// refillRetry: the lease grew, but other calls took it first: try
	// again at once.
	refillRetry
)

// refill is the slow path of a call that its lease does not cover: under
// ol.sync, it tries the lease again (fromLease), else writes ol's pending
// calls and resizes the lease to cover need in one transaction and tries
// again, else (exact != nil) reserves exactly in the same transaction,
// into out. When too few credits are left but other instances' leases
// hold enough, it recalls them and tries again every half flush interval
// until cw's deadline; the last try answers ErrCreditsLeased if a holder
// that did not write since the call began holds enough (it may be dead:
// its lease comes back at its expiry), else the exact answer (what live
// holders still hold is in flight). It returns refillDone or refillGone.
func (l *leaser) refill(ctx context.Context, cw callWait, ol *orgLease, need int64,
	fromLease func(ol *orgLease, now, start int64) bool, exact *credit.ReserveRequest, out *credit.Reservation) (refillResult, error) {
	for {
		last := !time.Now().Before(cw.until)
		res, err := l.refillOnce(ctx, cw, last, ol, need, fromLease, exact, out)
		switch {
		case res == refillRetry:
			continue
		case res != refillRecalled:
			return res, err
		case last:
			return refillDone, ErrCreditsLeased
		}
		select {
		case <-ctx.Done():
			return refillDone, ctx.Err()
		case <-time.After(min(l.every/2, time.Until(cw.until))):
		}
	}
}

// refillOnce is one try of refill.
func (l *leaser) refillOnce(ctx context.Context, cw callWait, last bool, ol *orgLease, need int64,
	fromLease func(ol *orgLease, now, start int64) bool, exact *credit.ReserveRequest, out *credit.Reservation) (refillResult, error) {
	ol.sync.Lock()
	defer ol.sync.Unlock()
	now, start, err := l.clock(ctx, ol.acct.OrgID)
	if err != nil {
		return refillDone, err
	}
	l.mu.Lock()
	if ol.gone {
		l.mu.Unlock()
		return refillGone, nil
	}
	ok := fromLease(ol, now, start)
	// Another call of this instance found the organization short and
	// recalled its leases a moment ago: this one, which needs more than
	// it found, waits with it instead of asking the database again.
	short := !ok && !last && exact != nil && exact.IdempotencyKey == "" && now < ol.short.until && exact.Amount > ol.short.exact
	if short {
		out.Available = ol.short.available
	}
	l.mu.Unlock()
	switch {
	case ok:
		return refillDone, nil
	case short:
		return refillRecalled, nil
	}
	w, answer, recalled, err := l.refillTx(ctx, cw, last, ol, now, start, need, exact, out)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if w != nil {
			l.undo(w)
		}
		return refillDone, err
	}
	l.apply(w)
	if recalled && exact != nil {
		ol.short = shortState{until: now + int64(l.every/2), exact: w.a.available() + w.free, available: out.Available}
	}
	if w.covered || exact == nil {
		if fromLease(ol, now, start) {
			return refillDone, nil
		}
		if w.covered {
			return refillRetry, nil
		}
	}
	switch {
	case recalled:
		return refillRecalled, nil
	case exact != nil:
		return refillDone, answer // the exact reservation's
	}
	out.Available = max(w.a.available()+ol.free+w.others, 0)
	return refillDone, credit.ErrInsufficientCredits
}

// refillTx is refillOnce's transaction: it writes ol's lease (w, to
// apply, or to undo when err is not nil), reserves exact when the lease
// does not cover need and exact is set (answer: the credit contract's
// answer to it), and recalls other instances' leases when too few
// credits are left but they hold some.
func (l *leaser) refillTx(ctx context.Context, cw callWait, last bool, ol *orgLease, now, start, need int64,
	exact *credit.ReserveRequest, out *credit.Reservation) (w *leaseWrite, answer error, recalled bool, err error) {
	err = l.s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if w, err = l.write(ctx, tx, ol, now, start, need, exact == nil && need > 0); err != nil {
			return err // w, if taken, is undone by the caller
		}
		if w.covered {
			return nil
		}
		insufficient, amount := need > 0, need
		if exact != nil {
			// Too little for a lease: reserve this call exactly.
			amount = exact.Amount
			answer = l.s.reserveIn(ctx, tx, &w.a, now, *exact, out)
			if answer != nil && !isLedgerAnswer(answer) {
				return answer
			}
			out.Available += w.free + w.others // as Balance counts it
			insufficient = errors.Is(answer, credit.ErrInsufficientCredits)
		}
		if !insufficient || w.others == 0 {
			return nil
		}
		recalled, err = l.recall(ctx, tx, w, now, amount, cw, last, out)
		return err
	})
	return w, answer, recalled, err
}

// recall is refillOnce's answer to a call that found too few credits
// while other instances' leases hold some (w.others > 0): it recalls them
// (no lease of the organization is taken, and each holder gives back what
// its lease holds unused at its next flush) and reports whether the call
// should wait for them: whether, with them, there is amount. On the last
// try only the leases of holders silent since the call began count.
// out.Available is set as Balance counts it.
func (l *leaser) recall(ctx context.Context, tx *sql.Tx, w *leaseWrite, now, amount int64, cw callWait, last bool,
	out *credit.Reservation) (bool, error) {
	out.Available = max(w.a.available()+w.free+w.others, 0)
	held := w.others
	if last {
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(SUM(amount), 0) FROM keyward_reservations
			WHERE org_id = $1 AND state = 'open' AND lease = 1 AND id <> $2 AND renewed_at < $3`,
			w.a.orgID, w.id, cw.since).Scan(&held); err != nil {
			return false, err
		}
	}
	_, err := tx.ExecContext(ctx, `UPDATE keyward_credit_accounts SET lease_recall = $2 WHERE org_id = $1`,
		w.a.orgID, now+int64(4*l.every))
	return w.a.available()+w.free+held >= amount, err
}

// isLedgerAnswer reports whether err is one of the answers of the credit
// contract (as opposed to a failure of the database).
func isLedgerAnswer(err error) bool {
	return errors.Is(err, credit.ErrInsufficientCredits) || errors.Is(err, credit.ErrIdempotencyKeyInUse) ||
		errors.Is(err, credit.ErrIdempotencyKeyReused) || errors.Is(err, credit.ErrInvalidAmount)
}

// othersLeased returns what leases other than own hold of org.
func (l *leaser) othersLeased(ctx context.Context, tx *sql.Tx, org string, own int64) (int64, error) {
	var n int64
	err := tx.QueryRowContext(ctx, `SELECT COALESCE(SUM(amount), 0) FROM keyward_reservations
		WHERE org_id = $1 AND state = 'open' AND lease = 1 AND id <> $2`, org, own).Scan(&n)
	return n, err
}

// balance is Balance with leases: the database's account, with this
// instance's unwritten calls as spent, its local reservations as
// reserved, and every lease's unused credits as Leased.
func (l *leaser) balance(ctx context.Context, acct credit.Account) (credit.Balance, error) {
	if err := acct.Check(); err != nil {
		return credit.Balance{}, err
	}
	var ol *orgLease
	for ol == nil || ol.gone {
		if ol != nil {
			ol.sync.Unlock()
		}
		l.mu.Lock()
		ol = l.org(acct)
		l.mu.Unlock()
		ol.sync.Lock()
		l.mu.Lock()
		if !ol.gone {
			l.mu.Unlock()
			break
		}
		l.mu.Unlock()
	}
	defer ol.sync.Unlock()
	var out credit.Balance
	err := l.s.credit(ctx, acct, func(tx *sql.Tx, a *account, now int64) error {
		var err error
		if out, err = balanceIn(ctx, tx, a); err != nil {
			return err
		}
		alive := false
		l.mu.Lock()
		if ol.id != 0 {
			var state string
			if err := tx.QueryRowContext(ctx, `SELECT state FROM keyward_reservations WHERE id = $1`, ol.id).Scan(&state); err != nil {
				l.mu.Unlock()
				return err
			}
			alive = state == stateOpen
		}
		l.sweep(now)
		var pending, pendingLease int64
		for _, e := range ol.pending {
			if e.period == a.start {
				pending += e.amount
			}
			if alive && e.leaseID == ol.id {
				pendingLease += e.amount
			}
		}
		var reserved, open int64
		if alive && ol.period == a.start {
			reserved, open = ol.reserved, int64(ol.open)
		}
		l.mu.Unlock()
		// This instance's part of its lease: unwritten calls are spent,
		// its calls in flight reserved.
		out.Spent += pending
		out.Reserved += reserved
		out.OpenReservations += int(open)
		out.Leased -= reserved + pendingLease
		out.Available = credit.Available(out.Allocation, out.Granted, out.Spent, out.Reserved)
		return nil
	})
	return out, err
}

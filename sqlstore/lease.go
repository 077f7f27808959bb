package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"slices"
	"strconv"
	"strings"
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

// leaseShare: a lease takes at most 1/leaseShare of the credit available.
const leaseShare = 8

// leaseWrites: a lease holds what the last leaseWrites flush intervals
// used, so that a slow write (a SQLite checkpoint can take hundreds of
// milliseconds) does not leave calls waiting for the database.
const leaseWrites = 30

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

// usable reports whether ol's lease may serve a call now in the period
// that starts at start: within TTL/2 of its last write, so that no other
// instance can have returned it yet (it does so TTL after that write).
func (l *leaser) usable(ol *orgLease, now, start int64) bool {
	return ol.id != 0 && ol.period == start && now+int64(l.ttl/2) <= ol.expires
}

// take reserves amount from ol's lease, if it can. Called with l.mu held.
func (l *leaser) take(ol *orgLease, req credit.ReserveRequest, now, start int64) (credit.Reservation, bool) {
	if !l.usable(ol, now, start) || ol.free < req.Amount {
		return credit.Reservation{}, false
	}
	ol.free -= req.Amount
	ol.reserved += req.Amount
	ol.open++
	ol.used += req.Amount
	l.next++
	r := &localRes{ol: ol, org: req.Account.OrgID, leaseID: ol.id, amount: req.Amount, expires: now + int64(l.s.resTTL),
		per: start, keyID: req.KeyID, reqID: req.RequestID}
	l.res[l.next] = r
	return credit.Reservation{ID: l.next, OrgID: r.org, Amount: r.amount, ExpiresAt: time.Unix(0, r.expires),
		Available: ol.dbAvail + ol.free}, true
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
		err = l.refill(ctx, cw, ol, need, func(ol *orgLease, now, start int64) bool {
			if req.IdempotencyKey != "" {
				return false
			}
			r, ok := l.take(ol, req, now, start)
			if ok {
				out = r
			}
			return ok
		}, &req, &out)
		if !errors.Is(err, errGone) {
			return out, err
		}
		// Dropped while the call waited (the flush forgets an idle
		// organization): the same call goes on, with the same deadline.
		l.mu.Lock()
		ol = l.org(req.Account)
		l.mu.Unlock()
	}
}

// errGone: the orgLease was dropped (idle) before the call locked it.
var errGone = errors.New("keyward: sqlstore: lease state dropped")

// errRecalled asks refill to try again once other instances returned
// their leases (they hold enough for the call); errRetry, at once.
var (
	errRecalled = errors.New("keyward: sqlstore: leases recalled")
	errRetry    = errors.New("keyward: sqlstore: lease taken by other calls")
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
// holders still hold is in flight).
func (l *leaser) refill(ctx context.Context, cw callWait, ol *orgLease, need int64,
	fromLease func(ol *orgLease, now, start int64) bool, exact *credit.ReserveRequest, out *credit.Reservation) error {
	for {
		last := !time.Now().Before(cw.until)
		err := l.refillOnce(ctx, cw, last, ol, need, fromLease, exact, out)
		if errors.Is(err, errRetry) {
			continue // the lease grew, but other calls took it first
		}
		if !errors.Is(err, errRecalled) {
			return err
		}
		if last {
			return ErrCreditsLeased
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(l.every/2, time.Until(cw.until))):
		}
	}
}

func (l *leaser) refillOnce(ctx context.Context, cw callWait, last bool, ol *orgLease, need int64,
	fromLease func(ol *orgLease, now, start int64) bool, exact *credit.ReserveRequest, out *credit.Reservation) error {
	ol.sync.Lock()
	defer ol.sync.Unlock()
	now, start, err := l.clock(ctx, ol.acct.OrgID)
	if err != nil {
		return err
	}
	l.mu.Lock()
	if ol.gone {
		l.mu.Unlock()
		return errGone
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
		return nil
	case short:
		return errRecalled
	}
	var w *leaseWrite
	exactErr := error(nil)
	err = l.s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if w, err = l.write(ctx, tx, ol, now, start, need, exact == nil && need > 0); err != nil {
			return err // w, if taken, is undone below
		}
		if w.covered {
			return nil
		}
		insufficient, amount := need > 0, need
		if exact != nil {
			// Too little for a lease: reserve this call exactly.
			amount = exact.Amount
			exactErr = l.s.reserveIn(ctx, tx, &w.a, now, *exact, out)
			if exactErr != nil && !isLedgerAnswer(exactErr) {
				return exactErr
			}
			out.Available += w.free + w.others // as Balance counts it
			insufficient = errors.Is(exactErr, credit.ErrInsufficientCredits)
		}
		if !insufficient || w.others == 0 {
			return nil
		}
		recalled, err := l.recall(ctx, tx, w, now, amount, cw, last, out)
		if recalled {
			exactErr = errRecalled
		}
		return err
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if w != nil {
			l.undo(w)
		}
		return err
	}
	l.apply(w)
	if errors.Is(exactErr, errRecalled) && exact != nil {
		ol.short = shortState{until: now + int64(l.every/2), exact: w.a.available() + w.free, available: out.Available}
	}
	if w.covered || exact == nil {
		if fromLease(ol, now, start) {
			return nil
		}
		if w.covered {
			return errRetry
		}
	}
	if exact != nil || exactErr != nil {
		return exactErr // the exact reservation's answer, or errRecalled
	}
	out.Available = max(w.a.available()+ol.free+w.others, 0)
	return credit.ErrInsufficientCredits
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
	// Calls of the live lease were held by it; calls of a lease that was
	// returned meanwhile (its holder could not write for TTL) are charged
	// as far as the credits allow, since another instance may have spent
	// what the lease held: never overspent.
	var spentLease int64
	for _, e := range w.pending {
		switch {
		case e.leaseID == ol.id && ol.id != 0:
			spentLease += e.amount
		case e.period != a.start: // written to the period it was made in
		case a.available()-e.amount >= acct.MinAvailable():
			a.spent += e.amount
		default:
			w.dropped += e.amount
			continue
		}
		w.commits = append(w.commits, e)
	}
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

// sweep expires the local reservations whose time is up and forgets the
// expired ones after the reservation TTL. Called with l.mu held.
func (l *leaser) sweep(now int64) {
	for id, r := range l.res {
		if now >= r.expires {
			l.expire(id, r, now)
		}
	}
	for id, e := range l.expired {
		if now >= e.until {
			delete(l.expired, id)
		}
	}
}

// expire ends local reservation id: its credits go back to the lease.
// Called with l.mu held.
func (l *leaser) expire(id int64, r *localRes, now int64) {
	delete(l.res, id)
	l.expired[id] = expiredRes{org: r.org, until: max(now, r.expires) + int64(l.s.resTTL)}
	l.drop(r)
}

// drop takes r out of its lease's counts. Called with l.mu held.
func (l *leaser) drop(r *localRes) {
	if r.ol.id == r.leaseID {
		r.ol.reserved -= r.amount
		r.ol.open--
		r.ol.free += r.amount
	}
}

// open returns the open local reservation id of acct's organization, or
// the error of settling one that is not open.
func (l *leaser) open(acct credit.Account, id int64, now, start int64) (*localRes, error) {
	r := l.res[id]
	if r == nil || r.org != acct.OrgID {
		if e, ok := l.expired[id]; ok && e.org == acct.OrgID {
			return nil, credit.ErrReservationExpired
		}
		return nil, credit.ErrReservationNotFound
	}
	if now >= r.expires || r.per != start || r.ol.id != r.leaseID {
		l.expire(id, r, now)
		return nil, credit.ErrReservationExpired
	}
	return r, nil
}

// settled is the answer for local reservation id once its organization's
// state was dropped (errGone), which happens only when it holds no lease
// and no open reservation: the reservation was settled meanwhile
// (ErrReservationNotFound) or expired with its lease.
func (l *leaser) settled(acct credit.Account, id, now, start int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.open(acct, id, now, start); err != nil {
		return err
	}
	return credit.ErrReservationExpired // not reached: a dropped state has no open reservation
}

// commit is Commit of a local reservation.
func (l *leaser) commit(ctx context.Context, acct credit.Account, id, amount int64) error {
	now, start, err := l.clock(ctx, acct.OrgID)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r, err := l.open(acct, id, now, start)
	if err != nil {
		return err
	}
	if amount > r.amount {
		return credit.ErrInvalidAmount
	}
	delete(l.res, id)
	l.drop(r)
	r.ol.free -= amount
	r.ol.pending = append(r.ol.pending, pendingEntry{leaseID: r.leaseID, period: r.per, amount: amount, at: now,
		keyID: r.keyID, reqID: r.reqID})
	return nil
}

// release is Release of a local reservation.
func (l *leaser) release(ctx context.Context, acct credit.Account, id int64) error {
	now, start, err := l.clock(ctx, acct.OrgID)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r, err := l.open(acct, id, now, start)
	if err != nil {
		return nil // not open: nothing to release
	}
	delete(l.res, id)
	l.drop(r)
	return nil
}

// adjust is Adjust of a local reservation: raising it takes from the
// lease, which grows (exactly, from what the database has available) when
// it does not cover the raise.
func (l *leaser) adjust(ctx context.Context, acct credit.Account, id, amount int64) (credit.Reservation, error) {
	out := credit.Reservation{OrgID: acct.OrgID}
	try := func(ol *orgLease, now, start int64) (bool, error) {
		r, err := l.open(acct, id, now, start)
		if err != nil {
			return false, err
		}
		d := amount - r.amount
		if d > r.ol.free {
			return false, nil
		}
		r.ol.free -= d
		r.ol.reserved += d
		r.ol.used += max(d, 0)
		r.amount = amount
		out.ID, out.Amount, out.ExpiresAt, out.Available = id, amount, time.Unix(0, r.expires), r.ol.dbAvail+r.ol.free
		return true, nil
	}
	now, start, err := l.clock(ctx, acct.OrgID)
	if err != nil {
		return out, err
	}
	l.mu.Lock()
	ok, err := try(nil, now, start)
	var ol *orgLease
	need := int64(0)
	if r := l.res[id]; r != nil {
		ol, need = r.ol, amount-r.amount
	}
	l.mu.Unlock()
	if ok || err != nil {
		return out, err
	}
	var tryErr error
	err = l.refill(ctx, l.startWait(), ol, need, func(ol *orgLease, now, start int64) bool {
		ok, tryErr = try(ol, now, start)
		return ok || tryErr != nil
	}, nil, &out)
	if errors.Is(err, errGone) {
		err = l.settled(acct, id, now, start)
	}
	return out, cmp.Or(tryErr, err)
}

// extend is Extend of a local reservation: its lease is renewed first
// when it was not written for TTL/2 (not usable).
func (l *leaser) extend(ctx context.Context, acct credit.Account, id int64) (time.Time, error) {
	var expires int64
	try := func(_ *orgLease, now, start int64) (bool, error) {
		r, err := l.open(acct, id, now, start)
		if err != nil {
			return false, err
		}
		if !l.usable(r.ol, now, start) {
			return false, nil
		}
		r.expires = now + int64(l.s.resTTL)
		expires = r.expires
		return true, nil
	}
	now, start, err := l.clock(ctx, acct.OrgID)
	if err != nil {
		return time.Time{}, err
	}
	l.mu.Lock()
	ok, err := try(nil, now, start)
	var ol *orgLease
	if r := l.res[id]; r != nil {
		ol = r.ol
	}
	l.mu.Unlock()
	if !ok && err == nil {
		var tryErr error
		var out credit.Reservation
		err = l.refill(ctx, l.startWait(), ol, 0, func(ol *orgLease, now, start int64) bool {
			ok, tryErr = try(ol, now, start)
			return ok || tryErr != nil
		}, nil, &out)
		if errors.Is(err, errGone) {
			err = l.settled(acct, id, now, start)
		}
		err = cmp.Or(tryErr, err)
		if err == nil && !ok {
			err = credit.ErrReservationExpired
		}
	}
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, expires).UTC(), nil
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
		out.Available = out.Allocation + out.Granted - out.Spent - out.Reserved
		return nil
	})
	return out, err
}

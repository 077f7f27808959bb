package memstore

import (
	"cmp"
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/internal/clock"
)

// LedgerOptions configure a Ledger. Every zero value means the default
// said beside it.
type LedgerOptions struct {
	// Now is the clock. Nil: the system clock, read through a shared clock
	// that advances every 10 ms (reservation expiry and period boundaries
	// are exact to that).
	Now func() time.Time
	// Period gives each organization's billing period. Nil:
	// credit.MonthlyUTC.
	Period credit.PeriodFunc
	// ReservationTTL is how long a reservation may stay unsettled before it
	// is released. Zero: credit.DefaultReservationTTL (5 minutes).
	ReservationTTL time.Duration
	// IdempotencyTTL is how long an idempotency key is remembered from its
	// call's reservation. Zero: credit.DefaultIdempotencyTTL (24 hours).
	IdempotencyTTL time.Duration
	// MaxIdempotencyKeys bounds the idempotency keys of committed calls
	// that an organization's ledger remembers. Beyond it the key committed
	// longest ago is forgotten before its TTL: a retry of that call is then
	// charged again, as a new call. The key of a call in flight is never
	// forgotten (those are bounded by the open reservations). Zero:
	// DefaultMaxIdempotencyKeys.
	MaxIdempotencyKeys int
}

// DefaultMaxIdempotencyKeys is the default LedgerOptions.MaxIdempotencyKeys:
// at most about 30 MB per organization (a key of 64 bytes costs up to
// about 300 B), enough to remember every key for 24 hours at a sustained
// rate of one committed call with a key a second.
const DefaultMaxIdempotencyKeys = 100_000

// Ledger is an in-memory credit.Ledger, exact under concurrency:
// each organization's credits change under its own lock. Expired
// reservations are released lazily, when their organization is next
// touched (or by Sweep). Grants keep only their sum (the note is dropped),
// reservations only what settling needs (not the key and request ids).
// Nothing survives a restart. Make one with NewLedger (the zero value is
// not usable).
//
// Reservation ids are unique within the ledger for its first 2^43
// reservations; an organization holds at most 2^20 open (or recently
// expired) reservations at once, beyond which Reserve fails, and remembers
// at most LedgerOptions.MaxIdempotencyKeys keys of committed calls.
type Ledger struct {
	now     func() int64 // Unix nanoseconds
	period  credit.PeriodFunc
	resTTL  time.Duration
	idemTTL time.Duration
	maxKeys int
	lastGen atomic.Int64

	orgs sync.Map // org id → *orgCredits; read without a lock
}

var _ credit.Ledger = (*Ledger)(nil)

// A reservation id is a generation, unique in the ledger, above the index
// of the organization's slot that holds it: settling finds it without a
// map lookup, and a stale or foreign id never matches the slot's id.
const (
	slotBits = 20
	slotMask = 1<<slotBits - 1
	maxGen   = 1<<(63-slotBits) - 1
)

var (
	errTooManyOpen  = errors.New("keyward: memstore: too many open reservations for one organization")
	errIDsExhausted = errors.New("keyward: memstore: reservation ids exhausted")
)

type resState uint8

const (
	resOpen resState = iota + 1
	resExpired
)

// reservation is one slot: free (id 0), open until settled (then freed),
// or expired (then kept until expires+resTTL to answer
// ErrReservationExpired).
type reservation struct {
	id      int64
	amount  int64
	expires int64 // Unix nanoseconds
	state   resState
	idemKey string
}

type idemRecord struct {
	id          int64
	created     int64 // Unix nanoseconds
	committed   bool
	charged     int64
	fingerprint string
}

// idemEntry queues a committed key, in commit order, to be forgotten.
type idemEntry struct {
	key     string
	id      int64
	created int64
}

// orgCredits is one organization's ledger; mu guards every field.
type orgCredits struct {
	mu           sync.Mutex
	start, end   time.Time // the current billing period; zero before the first touch
	startN, endN int64     // the same in Unix nanoseconds
	allocation   int64
	granted      int64
	spent        int64
	reserved     int64
	open         int
	slots        []reservation
	free         []int32
	// nextSweep is a lower bound of the next time a reservation expires or
	// an expired one may be forgotten.
	nextSweep int64
	idem      map[string]idemRecord
	idemQ     []idemEntry // committed keys in commit order, for forgetting them
	idemHead  int
}

// NewLedger returns an empty Ledger.
func NewLedger(opts LedgerOptions) (*Ledger, error) {
	var errs []error
	if opts.ReservationTTL < 0 {
		errs = append(errs, &keyward.ConfigError{Field: "LedgerOptions.ReservationTTL", Problem: "is negative"})
	}
	if opts.IdempotencyTTL < 0 {
		errs = append(errs, &keyward.ConfigError{Field: "LedgerOptions.IdempotencyTTL", Problem: "is negative"})
	}
	if opts.MaxIdempotencyKeys < 0 {
		errs = append(errs, &keyward.ConfigError{Field: "LedgerOptions.MaxIdempotencyKeys", Problem: "is negative"})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	l := &Ledger{
		period:  opts.Period,
		resTTL:  opts.ReservationTTL,
		idemTTL: opts.IdempotencyTTL,
		maxKeys: cmp.Or(opts.MaxIdempotencyKeys, DefaultMaxIdempotencyKeys),
	}
	if now := opts.Now; now != nil {
		l.now = func() int64 { return now().UnixNano() }
	} else {
		l.now = clock.Process.UnixNano
	}
	if l.period == nil {
		l.period = credit.MonthlyUTC
	}
	if l.resTTL == 0 {
		l.resTTL = credit.DefaultReservationTTL
	}
	if l.idemTTL == 0 {
		l.idemTTL = credit.DefaultIdempotencyTTL
	}
	return l, nil
}

// org returns the organization's ledger, creating it when create is set
// (nil otherwise).
func (l *Ledger) org(id string, create bool) *orgCredits {
	if o, ok := l.orgs.Load(id); ok {
		return o.(*orgCredits)
	}
	if !create {
		return nil
	}
	o, _ := l.orgs.LoadOrStore(id, &orgCredits{nextSweep: math.MaxInt64})
	return o.(*orgCredits)
}

// touch brings o to now: a new billing period, expired reservations,
// forgotten idempotency keys. o.mu is held.
func (l *Ledger) touch(o *orgCredits, acct credit.Account, n int64) error {
	if o.endN == 0 || n >= o.endN || n < o.startN {
		now := time.Unix(0, n).UTC()
		start, end := l.period(acct.OrgID, now)
		if err := credit.CheckPeriod(now, start, end); err != nil {
			return err
		}
		// Periods only move forward: a clock a moment behind the period
		// already begun (a step back) works in that period.
		if start.After(o.start) {
			// A new period: no rollover, and the old period's open
			// reservations are released as expired.
			for i := range o.slots {
				if o.slots[i].state == resOpen {
					l.expire(o, &o.slots[i])
				}
			}
			o.granted, o.spent, o.reserved = 0, 0, 0
			o.allocation = acct.Allocation
			o.start, o.end = start, end
			o.startN, o.endN = start.UnixNano(), end.UnixNano()
		}
	}
	if acct.Allocation > o.allocation {
		o.allocation = acct.Allocation // upgrades count at once
	}
	if n >= o.nextSweep {
		l.sweep(o, n)
	}
	l.forgetKeys(o, n)
	return nil
}

// expire releases an open reservation as expired and keeps it, so that a
// late Commit learns why it charges nothing. o.mu is held.
func (l *Ledger) expire(o *orgCredits, r *reservation) {
	o.reserved -= r.amount
	o.open--
	r.state = resExpired
	o.nextSweep = min(o.nextSweep, r.expires+int64(l.resTTL))
	l.unlinkKey(o, r.id, r.idemKey)
}

// sweep expires what is due and forgets expired reservations older than
// resTTL; it returns how many it expired. o.mu is held.
func (l *Ledger) sweep(o *orgCredits, n int64) int {
	next := int64(math.MaxInt64)
	expired := 0
	for i := range o.slots {
		r := &o.slots[i]
		if r.state == resOpen && n >= r.expires {
			l.expire(o, r)
			expired++
		}
		switch {
		case r.state == resOpen:
			next = min(next, r.expires)
		case r.state == resExpired && n >= r.expires+int64(l.resTTL):
			o.freeSlot(i)
		case r.state == resExpired:
			next = min(next, r.expires+int64(l.resTTL))
		}
	}
	o.nextSweep = next
	return expired
}

func (o *orgCredits) freeSlot(i int) {
	o.slots[i] = reservation{}
	o.free = append(o.free, int32(i))
}

// newSlot returns a free slot's index. o.mu is held.
func (o *orgCredits) newSlot() (int, error) {
	if n := len(o.free); n > 0 {
		i := o.free[n-1]
		o.free = o.free[:n-1]
		return int(i), nil
	}
	if len(o.slots) > slotMask {
		return 0, errTooManyOpen
	}
	o.slots = append(o.slots, reservation{})
	return len(o.slots) - 1, nil
}

// slot returns the reservation id names, or nil. o.mu is held.
func (o *orgCredits) slot(id int64) *reservation {
	i := id & slotMask
	if id <= 0 || i >= int64(len(o.slots)) || o.slots[i].id != id {
		return nil
	}
	return &o.slots[i]
}

// unlinkKey frees an idempotency key whose call was released. o.mu is
// held.
func (l *Ledger) unlinkKey(o *orgCredits, id int64, key string) {
	if key == "" {
		return
	}
	if rec, ok := o.idem[key]; ok && rec.id == id {
		delete(o.idem, key)
	}
}

// forgetKeys drops the committed idempotency keys older than idemTTL, and
// the oldest beyond maxKeys (a key in flight is not queued, so it is never
// forgotten). The queue is in commit order, so a key can stay behind a
// younger one a little past its TTL: Reserve checks the age too. o.mu is
// held.
func (l *Ledger) forgetKeys(o *orgCredits, n int64) {
	ttl := int64(l.idemTTL)
	for o.idemHead < len(o.idemQ) {
		e := o.idemQ[o.idemHead]
		if n-e.created < ttl && len(o.idemQ)-o.idemHead <= l.maxKeys {
			break
		}
		if rec, ok := o.idem[e.key]; ok && rec.id == e.id {
			delete(o.idem, e.key)
		}
		o.idemQ[o.idemHead] = idemEntry{}
		o.idemHead++
	}
	if o.idemHead > 64 && o.idemHead*2 > len(o.idemQ) {
		o.idemQ = append(o.idemQ[:0], o.idemQ[o.idemHead:]...)
		o.idemHead = 0
	}
}

func (o *orgCredits) available() int64 {
	return credit.Available(o.allocation, o.granted, o.spent, o.reserved)
}

func (o *orgCredits) balance(orgID string) credit.Balance {
	return credit.Balance{
		OrgID:            orgID,
		PeriodStart:      o.start,
		PeriodEnd:        o.end,
		Allocation:       o.allocation,
		Granted:          o.granted,
		Spent:            o.spent,
		Reserved:         o.reserved,
		Available:        o.available(),
		OpenReservations: o.open,
	}
}

// Reserve implements credit.Ledger.
func (l *Ledger) Reserve(ctx context.Context, req credit.ReserveRequest) (credit.Reservation, error) {
	if err := ctx.Err(); err != nil {
		return credit.Reservation{}, err
	}
	acct := req.Account
	if err := cmp.Or(acct.Check(), credit.CheckAmount(req.Amount)); err != nil {
		return credit.Reservation{}, err
	}
	o := l.org(acct.OrgID, true)
	n := l.now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := l.touch(o, acct, n); err != nil {
		return credit.Reservation{}, err
	}
	out := credit.Reservation{OrgID: acct.OrgID}
	if key := req.IdempotencyKey; key != "" {
		rec, seen := o.idem[key]
		if seen && rec.committed && n-rec.created >= int64(l.idemTTL) {
			delete(o.idem, key) // remembered for its TTL: free again
			seen = false
		}
		switch {
		case !seen:
		case rec.fingerprint != req.Fingerprint:
			return out, credit.ErrIdempotencyKeyReused
		case !rec.committed: // in flight, however long ago it was reserved
			return out, credit.ErrIdempotencyKeyInUse
		default:
			out.ID, out.Replayed, out.Charged, out.Available = rec.id, true, rec.charged, o.available()
			return out, nil
		}
	}
	avail := o.available()
	if req.Amount > 0 && avail-req.Amount < acct.MinAvailable() {
		out.Available = max(avail, 0)
		return out, credit.ErrInsufficientCredits
	}
	gen := l.lastGen.Add(1)
	if gen > maxGen {
		return out, errIDsExhausted
	}
	i, err := o.newSlot()
	if err != nil {
		return out, err
	}
	id := gen<<slotBits | int64(i)
	exp := n + int64(l.resTTL)
	o.slots[i] = reservation{id: id, amount: req.Amount, expires: exp, state: resOpen, idemKey: req.IdempotencyKey}
	o.reserved += req.Amount
	o.open++
	o.nextSweep = min(o.nextSweep, exp)
	if req.IdempotencyKey != "" {
		if o.idem == nil {
			o.idem = make(map[string]idemRecord)
		}
		o.idem[req.IdempotencyKey] = idemRecord{id: id, created: n, fingerprint: req.Fingerprint}
	}
	out.ID, out.Amount, out.ExpiresAt, out.Available = id, req.Amount, time.Unix(0, exp).UTC(), avail-req.Amount
	return out, nil
}

// lookupOpen finds an open reservation, expiring it if it is due. o.mu is
// held.
func (l *Ledger) lookupOpen(o *orgCredits, id, n int64) (*reservation, error) {
	r := o.slot(id)
	if r == nil {
		return nil, credit.ErrReservationNotFound
	}
	if r.state == resOpen && n >= r.expires {
		l.expire(o, r)
	}
	if r.state == resExpired {
		return nil, credit.ErrReservationExpired
	}
	return r, nil
}

// Adjust implements credit.Ledger.
func (l *Ledger) Adjust(ctx context.Context, acct credit.Account, id, amount int64) (credit.Reservation, error) {
	if err := ctx.Err(); err != nil {
		return credit.Reservation{}, err
	}
	if err := cmp.Or(acct.Check(), credit.CheckAmount(amount)); err != nil {
		return credit.Reservation{}, err
	}
	o := l.org(acct.OrgID, false)
	if o == nil {
		return credit.Reservation{}, credit.ErrReservationNotFound
	}
	n := l.now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := l.touch(o, acct, n); err != nil {
		return credit.Reservation{}, err
	}
	out := credit.Reservation{OrgID: acct.OrgID}
	r, err := l.lookupOpen(o, id, n)
	if err != nil {
		return out, err
	}
	avail := o.available()
	delta := amount - r.amount
	if delta > 0 && avail-delta < acct.MinAvailable() {
		out.Available = max(avail, 0)
		return out, credit.ErrInsufficientCredits
	}
	r.amount = amount
	o.reserved += delta
	out.ID, out.Amount, out.ExpiresAt, out.Available = id, amount, time.Unix(0, r.expires).UTC(), avail-delta
	return out, nil
}

// Extend implements credit.Ledger.
func (l *Ledger) Extend(ctx context.Context, acct credit.Account, id int64) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	if err := acct.Check(); err != nil {
		return time.Time{}, err
	}
	o := l.org(acct.OrgID, false)
	if o == nil {
		return time.Time{}, credit.ErrReservationNotFound
	}
	n := l.now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := l.touch(o, acct, n); err != nil {
		return time.Time{}, err
	}
	r, err := l.lookupOpen(o, id, n)
	if err != nil {
		return time.Time{}, err
	}
	// Later only: nextSweep stays a lower bound of the next expiry.
	r.expires = n + int64(l.resTTL)
	return time.Unix(0, r.expires).UTC(), nil
}

// Commit implements credit.Ledger.
func (l *Ledger) Commit(ctx context.Context, acct credit.Account, id, amount int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := cmp.Or(acct.Check(), credit.CheckAmount(amount)); err != nil {
		return err
	}
	o := l.org(acct.OrgID, false)
	if o == nil {
		return credit.ErrReservationNotFound
	}
	n := l.now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := l.touch(o, acct, n); err != nil {
		return err
	}
	r, err := l.lookupOpen(o, id, n)
	if err != nil {
		return err
	}
	if amount > r.amount {
		return credit.ErrInvalidAmount
	}
	o.reserved -= r.amount
	o.open--
	o.spent += amount
	if r.idemKey != "" {
		if rec, ok := o.idem[r.idemKey]; ok && rec.id == id {
			rec.committed, rec.charged = true, amount
			o.idem[r.idemKey] = rec
			o.idemQ = append(o.idemQ, idemEntry{key: r.idemKey, id: id, created: rec.created})
			l.forgetKeys(o, n)
		}
	}
	o.freeSlot(int(id & slotMask))
	return nil
}

// Release implements credit.Ledger.
func (l *Ledger) Release(ctx context.Context, acct credit.Account, id int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := acct.Check(); err != nil {
		return err
	}
	o := l.org(acct.OrgID, false)
	if o == nil {
		return nil
	}
	n := l.now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := l.touch(o, acct, n); err != nil {
		return err
	}
	r, err := l.lookupOpen(o, id, n)
	if err != nil {
		return nil // not open: nothing to release
	}
	o.reserved -= r.amount
	o.open--
	l.unlinkKey(o, id, r.idemKey)
	o.freeSlot(int(id & slotMask))
	return nil
}

// Grant implements credit.Ledger. The note is not kept.
func (l *Ledger) Grant(ctx context.Context, acct credit.Account, amount int64, note string) (credit.Balance, error) {
	if err := ctx.Err(); err != nil {
		return credit.Balance{}, err
	}
	if err := acct.Check(); err != nil {
		return credit.Balance{}, err
	}
	o := l.org(acct.OrgID, true)
	n := l.now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := l.touch(o, acct, n); err != nil {
		return credit.Balance{}, err
	}
	if err := credit.CheckGrant(o.allocation, o.granted, amount); err != nil {
		return credit.Balance{}, err
	}
	o.granted += amount
	return o.balance(acct.OrgID), nil
}

// Balance implements credit.Ledger.
func (l *Ledger) Balance(ctx context.Context, acct credit.Account) (credit.Balance, error) {
	if err := ctx.Err(); err != nil {
		return credit.Balance{}, err
	}
	if err := acct.Check(); err != nil {
		return credit.Balance{}, err
	}
	o := l.org(acct.OrgID, true)
	n := l.now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := l.touch(o, acct, n); err != nil {
		return credit.Balance{}, err
	}
	return o.balance(acct.OrgID), nil
}

// Sweep releases every reservation, of every organization, that has
// expired, and returns how many it released. The ledger does this lazily
// anyway; Sweep only frees memory of organizations that see no calls.
func (l *Ledger) Sweep() int {
	n := l.now()
	released := 0
	l.orgs.Range(func(_, v any) bool {
		o := v.(*orgCredits)
		o.mu.Lock()
		if n >= o.nextSweep {
			released += l.sweep(o, n)
		}
		l.forgetKeys(o, n)
		o.mu.Unlock()
		return true
	})
	return released
}

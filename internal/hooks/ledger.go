package hooks

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/credit"
)

type ledgerOp uint8

const (
	opReserve ledgerOp = iota
	opAdjust
	opExtend
	opCommit
	opRelease
	opGrant
	opBalance
	numOps
)

var opNames = [numOps]string{"reserve", "adjust", "extend", "commit", "release", "grant", "balance"}

var spanNames = [numOps]string{"keyward.ledger.reserve", "keyward.ledger.adjust", "keyward.ledger.extend",
	"keyward.ledger.commit", "keyward.ledger.release", "keyward.ledger.grant", "keyward.ledger.balance"}

// Ledger returns l wrapped once for telemetry: every call timed
// (keyward.ledger.duration) and, under a recording span, given a span of
// its own ("keyward.ledger.<operation>", with the organization and, for
// Reserve, the key id); and the credits counted from the calls it sees
// (reserved, committed, released, and the reservations open). A ledger
// already wrapped is returned as it is.
//
// While nothing listens every method is l's own call, after a few atomic
// loads. A reservation is counted open only if the wrapper saw it opened
// while metering, and counted closed only then, so that an SDK installed
// while a call runs never drives the open count below zero.
func Ledger(l credit.Ledger) credit.Ledger {
	if _, ok := l.(*ledger); ok || l == nil || !compiled {
		return l
	}
	return &ledger{l: l, held: map[int64]int64{}}
}

type ledger struct {
	l credit.Ledger

	// held: the reservations counted open, by id, with the amount each
	// holds; tracked is len(held), read without the lock by the fast path.
	mu      sync.Mutex
	held    map[int64]int64
	tracked atomic.Int64
}

// quiet reports whether a call may go straight to the ledger: nothing
// listens, and no reservation counted open waits to be counted closed.
func (l *ledger) quiet() bool { return l.tracked.Load() == 0 && !Listening() }

func (l *ledger) Reserve(ctx context.Context, req credit.ReserveRequest) (credit.Reservation, error) {
	if l.quiet() {
		return l.l.Reserve(ctx, req)
	}
	ctx, c := startLedger(ctx, opReserve, req.Account.OrgID, req.KeyID)
	res, err := l.l.Reserve(ctx, req)
	c.endLedger(ctx, opReserve, err)
	if err == nil && !res.Replayed && Metering() {
		l.mu.Lock()
		l.held[res.ID] = res.Amount
		l.tracked.Store(int64(len(l.held)))
		l.mu.Unlock()
		in := get()
		o := in.with(in.none, req.Account.OrgID)
		if res.Amount > 0 {
			in.count(cellReserved, o, res.Amount)
		}
		in.count(cellOpen, o, 1)
	}
	return res, err
}

func (l *ledger) Adjust(ctx context.Context, acct credit.Account, id, amount int64) (credit.Reservation, error) {
	if l.quiet() {
		return l.l.Adjust(ctx, acct, id, amount)
	}
	ctx, c := startLedger(ctx, opAdjust, acct.OrgID, "")
	res, err := l.l.Adjust(ctx, acct, id, amount)
	c.endLedger(ctx, opAdjust, err)
	if err == nil {
		l.mu.Lock()
		was, ok := l.held[id]
		if ok {
			l.held[id] = res.Amount
		}
		l.mu.Unlock()
		if ok { // a raise is reserved; a cut is released at once
			in := get()
			o := in.with(in.none, acct.OrgID)
			if res.Amount > was {
				in.count(cellReserved, o, res.Amount-was)
			} else if res.Amount < was {
				in.count(cellReleased, o, was-res.Amount)
			}
		}
	}
	return res, err
}

func (l *ledger) Extend(ctx context.Context, acct credit.Account, id int64) (time.Time, error) {
	if l.quiet() {
		return l.l.Extend(ctx, acct, id)
	}
	ctx, c := startLedger(ctx, opExtend, acct.OrgID, "")
	t, err := l.l.Extend(ctx, acct, id)
	c.endLedger(ctx, opExtend, err)
	return t, err
}

func (l *ledger) Commit(ctx context.Context, acct credit.Account, id, amount int64) error {
	if l.quiet() {
		return l.l.Commit(ctx, acct, id, amount)
	}
	ctx, c := startLedger(ctx, opCommit, acct.OrgID, "")
	err := l.l.Commit(ctx, acct, id, amount)
	c.endLedger(ctx, opCommit, err)
	l.closed(acct, id, amount, err)
	return err
}

func (l *ledger) Release(ctx context.Context, acct credit.Account, id int64) error {
	if l.quiet() {
		return l.l.Release(ctx, acct, id)
	}
	ctx, c := startLedger(ctx, opRelease, acct.OrgID, "")
	err := l.l.Release(ctx, acct, id)
	c.endLedger(ctx, opRelease, err)
	l.closed(acct, id, 0, err)
	return err
}

// closed counts the settlement of reservation id, committed for amount
// (0: released), if it was counted open: no longer open, and, when the
// ledger took it (err nil), amount committed and the rest released. A
// settlement that failed counts as neither (the reservation expires in the
// ledger).
func (l *ledger) closed(acct credit.Account, id, amount int64, err error) {
	l.mu.Lock()
	held, ok := l.held[id]
	delete(l.held, id)
	l.tracked.Store(int64(len(l.held)))
	l.mu.Unlock()
	if !ok {
		return
	}
	in := get()
	o := in.with(in.none, acct.OrgID)
	in.count(cellOpen, o, -1)
	if err != nil {
		return
	}
	if amount > 0 {
		in.count(cellCommitted, o, amount)
	}
	if held > amount {
		in.count(cellReleased, o, held-amount)
	}
}

func (l *ledger) Grant(ctx context.Context, acct credit.Account, amount int64, note string) (credit.Balance, error) {
	if l.quiet() {
		return l.l.Grant(ctx, acct, amount, note)
	}
	ctx, c := startLedger(ctx, opGrant, acct.OrgID, "")
	b, err := l.l.Grant(ctx, acct, amount, note)
	c.endLedger(ctx, opGrant, err)
	return b, err
}

func (l *ledger) Balance(ctx context.Context, acct credit.Account) (credit.Balance, error) {
	if l.quiet() {
		return l.l.Balance(ctx, acct)
	}
	ctx, c := startLedger(ctx, opBalance, acct.OrgID, "")
	b, err := l.l.Balance(ctx, acct)
	c.endLedger(ctx, opBalance, err)
	return b, err
}

func startLedger(ctx context.Context, op ledgerOp, org, key string) (context.Context, Call) {
	ctx, c := Start(ctx, spanNames[op], org, key)
	if Metering() && get().ledgerDuration.Enabled(ctx) { // not timed while nothing listens
		c.began()
	}
	return ctx, c
}

// refused are the ledger's answers under its contract: decisions, not
// failures.
var refused = []error{credit.ErrInsufficientCredits, credit.ErrIdempotencyKeyInUse, credit.ErrIdempotencyKeyReused,
	credit.ErrReservationExpired, credit.ErrReservationNotFound, credit.ErrInvalidAmount}

func (c Call) endLedger(ctx context.Context, op ledgerOp, err error) {
	i, outcome := 0, "ok"
	if err != nil {
		i, outcome = 2, "error"
		for _, r := range refused {
			if errors.Is(err, r) {
				i, outcome, err = 1, "refused", nil
				break
			}
		}
	}
	in := get()
	c.record(ctx, in.ledgerDuration, in.ledgerOpts[op][i].rec)
	c.End(outcome, err)
}

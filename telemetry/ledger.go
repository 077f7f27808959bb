package telemetry

import (
	"context"
	"errors"
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

// Ledger returns l with every call timed (keyward.ledger.duration) and,
// under a recording span, given a span of its own
// ("keyward.ledger.<operation>", with the organization and, for Reserve,
// the key id). keyward.ChargeCredits wraps its ledger so; a ledger already
// wrapped is returned as it is.
func Ledger(l credit.Ledger) credit.Ledger {
	if _, ok := l.(ledger); ok || l == nil {
		return l
	}
	return ledger{l}
}

type ledger struct{ l credit.Ledger }

var spanNames = [numOps]string{"keyward.ledger.reserve", "keyward.ledger.adjust", "keyward.ledger.extend",
	"keyward.ledger.commit", "keyward.ledger.release", "keyward.ledger.grant", "keyward.ledger.balance"}

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

func (l ledger) Reserve(ctx context.Context, req credit.ReserveRequest) (credit.Reservation, error) {
	if !tracing() && !Metering() { // nothing listens: the ledger's own call
		return l.l.Reserve(ctx, req)
	}
	ctx, c := startLedger(ctx, opReserve, req.Account.OrgID, req.KeyID)
	res, err := l.l.Reserve(ctx, req)
	c.endLedger(ctx, opReserve, err)
	return res, err
}

func (l ledger) Adjust(ctx context.Context, acct credit.Account, id, amount int64) (credit.Reservation, error) {
	ctx, c := startLedger(ctx, opAdjust, acct.OrgID, "")
	res, err := l.l.Adjust(ctx, acct, id, amount)
	c.endLedger(ctx, opAdjust, err)
	return res, err
}

func (l ledger) Extend(ctx context.Context, acct credit.Account, id int64) (time.Time, error) {
	ctx, c := startLedger(ctx, opExtend, acct.OrgID, "")
	t, err := l.l.Extend(ctx, acct, id)
	c.endLedger(ctx, opExtend, err)
	return t, err
}

func (l ledger) Commit(ctx context.Context, acct credit.Account, id, amount int64) error {
	if !tracing() && !Metering() {
		return l.l.Commit(ctx, acct, id, amount)
	}
	ctx, c := startLedger(ctx, opCommit, acct.OrgID, "")
	err := l.l.Commit(ctx, acct, id, amount)
	c.endLedger(ctx, opCommit, err)
	return err
}

func (l ledger) Release(ctx context.Context, acct credit.Account, id int64) error {
	ctx, c := startLedger(ctx, opRelease, acct.OrgID, "")
	err := l.l.Release(ctx, acct, id)
	c.endLedger(ctx, opRelease, err)
	return err
}

func (l ledger) Grant(ctx context.Context, acct credit.Account, amount int64, note string) (credit.Balance, error) {
	ctx, c := startLedger(ctx, opGrant, acct.OrgID, "")
	b, err := l.l.Grant(ctx, acct, amount, note)
	c.endLedger(ctx, opGrant, err)
	return b, err
}

func (l ledger) Balance(ctx context.Context, acct credit.Account) (credit.Balance, error) {
	ctx, c := startLedger(ctx, opBalance, acct.OrgID, "")
	b, err := l.l.Balance(ctx, acct)
	c.endLedger(ctx, opBalance, err)
	return b, err
}

// Reserved reports credits reserved for a call of organization org: a new
// reservation of amount (open: it is now one of the open reservations),
// or a raise of one by amount. It reports whether it counted: pass that to
// Settle, so that a reservation counted open is counted closed, and no
// other.
func Reserved(ctx context.Context, org string, amount int64, open bool) bool {
	if !Metering() {
		return false
	}
	in := get()
	o := in.with(in.none, org)
	if amount > 0 {
		in.count(cellReserved, o, amount)
	}
	if open {
		in.count(cellOpen, o, 1)
	}
	return true
}

// Settle settles the reservation res of a call through l: it commits cost
// when commit is set and releases res otherwise, and, if Reserved counted
// res (counted), reports what it did: the reservation is no longer open;
// on success cost is committed (when commit) and the rest of res.Amount
// released. A settle that fails counts as neither (the reservation expires
// in the ledger).
func Settle(ctx context.Context, l credit.Ledger, acct credit.Account, res credit.Reservation, cost int64, commit, counted bool) error {
	var err error
	if commit {
		err = l.Commit(ctx, acct, res.ID, cost)
	} else {
		cost, err = 0, l.Release(ctx, acct, res.ID)
	}
	if !counted {
		return err
	}
	in := get()
	o := in.with(in.none, acct.OrgID)
	in.count(cellOpen, o, -1)
	if err == nil {
		if cost > 0 {
			in.count(cellCommitted, o, cost)
		}
		if res.Amount > cost {
			in.count(cellReleased, o, res.Amount-cost)
		}
	}
	return err
}

package sqlstore

import (
	"cmp"
	"context"
	"errors"
	"time"

	"github.com/keyward/keyward/credit"
)

// Reservations served from a lease: settled, adjusted and extended in
// memory, expired by the flush's sweep.

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

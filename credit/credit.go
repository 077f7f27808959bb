// Package credit is the contract of credit ledgers: what
// keyward.ChargeCredits asks of the store that holds organizations'
// credits, and the values that pass between them. memstore.Ledger and
// sqlstore.Store keep it; keywardtest.TestCreditLedger proves a ledger
// does.
package credit

import (
	"context"
	"errors"
	"time"
)

// Defaults of a ledger.
const (
	// DefaultReservationTTL is how long a reservation stays open before it
	// expires and is released.
	DefaultReservationTTL = 5 * time.Minute
	// DefaultIdempotencyTTL is how long an idempotency key, once its call
	// was charged, makes retries free.
	DefaultIdempotencyTTL = 24 * time.Hour
)

// MaxCredits (10^15) bounds every credit amount a ledger takes: an
// allocation, a reservation, an adjustment, a commit, a grant, a period's
// allocation plus grants, and an overage account's debt (Available ≥
// −MaxCredits). Every figure of a Balance then stays within 3·MaxCredits
// of zero: it cannot overflow int64 in Go or in any database, and it is
// below 2^53, so a JSON reader that uses float64 (JavaScript) reads it
// exactly. At a credit per micro-dollar it is a billion dollars a period.
const MaxCredits int64 = 1_000_000_000_000_000

// Errors of a ledger. keyward.ChargeCredits answers them with a
// keyward.Error that wraps them, so errors.Is works on both.
var (
	// ErrInsufficientCredits: the organization does not allow overage and
	// its available credit does not cover the amount.
	ErrInsufficientCredits = errors.New("keyward: insufficient credits")
	// ErrReservationNotFound: no reservation with this id is open for the
	// organization (it never existed, was settled, or has been forgotten).
	ErrReservationNotFound = errors.New("keyward: reservation not found")
	// ErrReservationExpired: the reservation expired (or its billing period
	// ended) before it was settled; it was released and charges nothing.
	ErrReservationExpired = errors.New("keyward: reservation expired")
	// ErrIdempotencyKeyInUse: a call with this idempotency key is in flight.
	ErrIdempotencyKeyInUse = errors.New("keyward: idempotency key in use by a call in flight")
	// ErrIdempotencyKeyReused: the idempotency key belongs to a call with a
	// different fingerprint.
	ErrIdempotencyKeyReused = errors.New("keyward: idempotency key reused for a different request")
	// ErrInvalidAmount: an amount that is negative or above MaxCredits, a
	// commit above the reservation, a grant that CheckGrant refuses, or an
	// account that Account.Check refuses.
	ErrInvalidAmount = errors.New("keyward: invalid credit amount")
	// ErrBadPeriod: the PeriodFunc returned a period that CheckPeriod
	// refuses; the ledger call changes nothing.
	ErrBadPeriod = errors.New("keyward: the period function returned a period that does not contain now, or one outside the years 1700–2200")
)

// Account is an organization's credit policy, passed into every ledger
// call so that a ledger needs no plan table of its own
// (keyward.Organization.Account builds it).
type Account struct {
	// OrgID identifies the organization. Required.
	OrgID string
	// Allocation is the organization's credits per billing period, ≥ 0.
	Allocation int64
	// AllowOverage lets calls go on when credits run out: the balance may
	// then go below zero.
	AllowOverage bool
}

// Check returns ErrInvalidAmount unless a is an account a ledger takes:
// an OrgID, and an Allocation that CheckAmount takes.
func (a Account) Check() error {
	if a.OrgID == "" {
		return ErrInvalidAmount
	}
	return CheckAmount(a.Allocation)
}

// MinAvailable is the lowest Available a reservation may leave a: 0, or
// −MaxCredits when a allows overage.
func (a Account) MinAvailable() int64 {
	if a.AllowOverage {
		return -MaxCredits
	}
	return 0
}

// CheckAmount returns ErrInvalidAmount unless 0 ≤ n ≤ MaxCredits: the
// rule for an amount a ledger reserves, adjusts to or commits.
func CheckAmount(n int64) error {
	if n < 0 || n > MaxCredits {
		return ErrInvalidAmount
	}
	return nil
}

// CheckGrant returns ErrInvalidAmount unless n credits may be granted to a
// period with this allocation and these grants so far: n > 0 and
// allocation + granted + n ≤ MaxCredits.
func CheckGrant(allocation, granted, n int64) error {
	if n <= 0 || n > MaxCredits-allocation-granted {
		return ErrInvalidAmount
	}
	return nil
}

// PeriodFunc returns the billing period of an organization that contains
// t: start ≤ t < end.
type PeriodFunc func(orgID string, t time.Time) (start, end time.Time)

// CheckPeriod returns ErrBadPeriod unless start ≤ now < end and the
// period lies within the years 1700 to 2200, where its Unix nanoseconds
// (what ledgers store) are exact: the rule every ledger applies to what
// its PeriodFunc returns.
func CheckPeriod(now, start, end time.Time) error {
	if now.Before(start) || !now.Before(end) || start.Year() < 1700 || end.Year() > 2200 {
		return ErrBadPeriod
	}
	return nil
}

// MonthlyUTC is the default PeriodFunc: the calendar month, in UTC, for
// every organization.
func MonthlyUTC(_ string, t time.Time) (start, end time.Time) {
	t = t.UTC()
	start = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	return start, start.AddDate(0, 1, 0)
}

// ReserveRequest asks a ledger to hold credits for one call.
type ReserveRequest struct {
	// Account is the organization and its policy.
	Account Account
	// Amount is the number of credits to hold, ≥ 0.
	Amount int64
	// KeyID, RequestID: metadata kept with the reservation (may be empty).
	KeyID, RequestID string
	// IdempotencyKey, when not empty, makes the call spend at most once per
	// organization and key within the ledger's idempotency TTL.
	IdempotencyKey string
	// Fingerprint identifies the request an IdempotencyKey was first used
	// with (opaque bytes; keyward.ChargeCredits uses SHA-256 of method, path, query
	// and body). A different fingerprint with the same key is refused.
	Fingerprint string
}

// Reservation is what a ledger holds for one call, or, for a replay, what
// it remembers of the call that was charged.
type Reservation struct {
	// ID identifies the reservation within the ledger (> 0).
	ID int64
	// OrgID is the organization.
	OrgID string
	// Amount is the number of credits held.
	Amount int64
	// ExpiresAt is when an unsettled reservation is released.
	ExpiresAt time.Time
	// Available is the organization's available credit once this
	// reservation is held. With ErrInsufficientCredits it is the credit that
	// was available (≥ 0); only an organization with overage can see it
	// below zero.
	Available int64
	// Replayed is true when the idempotency key names a call that was
	// already charged: nothing is held, ID is that call's reservation and
	// Charged what it was charged.
	Replayed bool
	// Charged is, for a replay, what the original call was charged.
	Charged int64
}

// Balance is an organization's credit in its current billing period.
type Balance struct {
	// OrgID is the organization.
	OrgID string
	// PeriodStart and PeriodEnd bound the current billing period.
	PeriodStart, PeriodEnd time.Time
	// Allocation is the period's allocation.
	Allocation int64
	// Granted is what was granted during the period.
	Granted int64
	// Spent is what committed calls spent during the period.
	Spent int64
	// Reserved is what open reservations hold.
	Reserved int64
	// Available is Available(Allocation, Granted, Spent, Reserved): what
	// new calls can reserve. It is never below zero for an account without overage.
	Available int64
	// OpenReservations counts the open reservations.
	OpenReservations int
	// Leased is the part of Available that leases hold: credits taken
	// from the database in a block by an instance that serves calls from
	// them in memory (sqlstore with LeaseOptions.Enabled), not yet used.
	// Zero for a ledger without leases.
	Leased int64
}

// Available is what new calls can reserve: allocation + granted − spent −
// reserved. It is the one formula of a Balance's Available; every ledger
// computes it here.
func Available(allocation, granted, spent, reserved int64) int64 {
	return allocation + granted - spent - reserved
}

// Ledger holds organizations' credits: calls reserve before they run
// and settle after. memstore.Ledger implements it in memory, sqlstore in a
// database; both keep this contract.
//
// Balance. In each billing period (a PeriodFunc of the ledger, by default
// MonthlyUTC) an organization has balance = Allocation + Granted − Spent
// and Available = balance − Reserved (open reservations). A period starts
// lazily, on the first call that touches the organization at or after the
// previous period's end: Granted and Spent start at zero (no rollover),
// and reservations still open from the previous period are released as if
// expired (ErrReservationExpired). The period's Allocation is the largest
// Account.Allocation seen in it: an upgrade counts at once, a downgrade
// from the next period. So, for an account without overage (in the whole
// period), Available and balance are never below zero, and for any account
// never below −MaxCredits.
//
// Reserve holds Amount for the account: without AllowOverage it succeeds
// only if Available ≥ Amount, else it returns ErrInsufficientCredits with
// Reservation.Available set to what was available (≥ 0); with overage it
// succeeds unless it would take Available below −MaxCredits
// (Account.MinAvailable). An Amount of zero always succeeds. Check and hold
// are one atomic step: concurrent reservations never overspend.
//
// Idempotency. A ReserveRequest with an IdempotencyKey, scoped to the
// organization, is remembered from its reservation for the idempotency TTL
// (default DefaultIdempotencyTTL), and for as long as its call is in
// flight (a ledger that bounds how many keys it remembers forgets the
// oldest committed ones first, never one in flight, and says so):
//   - a key not seen (or whose last call was released or expired):
//     reserve as usual, and link the key to the reservation;
//   - a key seen with another Fingerprint: ErrIdempotencyKeyReused;
//   - a key whose call is in flight (its reservation is open):
//     ErrIdempotencyKeyInUse;
//   - a key whose call was committed: no reservation; a Reservation with
//     Replayed, the original ID, Charged and the current Available.
//
// A Fingerprint is opaque bytes, not text: a ledger keeps any bytes and
// compares them exactly (keyward.ChargeCredits' are raw SHA-256, seldom valid
// UTF-8).
//
// Settling. Commit charges an open reservation amount ≤ its Amount
// (releasing the rest); amount > Amount is ErrInvalidAmount and changes
// nothing (raise it with Adjust first). Release gives the whole Amount back.
// Both act only on an open reservation, so neither can charge twice:
//   - Commit of a reservation that expired: ErrReservationExpired, nothing
//     charged (a ledger must say so for at least the reservation TTL after
//     the expiry; after that it may answer ErrReservationNotFound);
//   - Commit of one already committed or released, or unknown:
//     ErrReservationNotFound, nothing changed;
//   - Release of one not open (settled, expired, unknown): nil, nothing
//     changed; Release is always safe to repeat and never undoes a commit.
//
// Adjust sets an open reservation's Amount: lowering always succeeds;
// raising it by d follows Reserve's rule for d (ErrInsufficientCredits,
// nothing changed). Not open: as Commit.
//
// Extend pushes an open reservation's ExpiresAt to now + the reservation
// TTL and returns the new ExpiresAt: a call that runs longer than the TTL
// keeps its reservation by extending it before it expires. Not open: as
// Commit (ErrReservationExpired, ErrReservationNotFound), nothing changed.
//
// Expiry. A reservation not settled by ExpiresAt (reserve time, or its
// last Extend, + the reservation TTL, default DefaultReservationTTL) is
// released. Expiry may be applied lazily, but every call must answer as if
// it had happened at ExpiresAt: an expired reservation is never in
// Reserved, never blocks an idempotency key, and cannot be committed.
//
// Grant adds amount > 0 credits to the current period (an entry, not an
// overwrite) and returns the new Balance; a grant that would take the
// period's Allocation + Granted above MaxCredits is ErrInvalidAmount
// (CheckGrant), nothing changed. Balance returns the current one.
//
// Every method honours ctx's cancellation and deadline, returns
// ErrInvalidAmount for an amount outside 0…MaxCredits (CheckAmount) or an
// account with an empty OrgID or an Allocation outside 0…MaxCredits
// (Account.Check), and is safe for concurrent use. Any error not named
// here means the ledger failed: keyward.ChargeCredits then answers 503 and the
// handler does not run.
type Ledger interface {
	// Reserve holds req.Amount for a call, or replays a charged call.
	Reserve(ctx context.Context, req ReserveRequest) (Reservation, error)
	// Adjust sets an open reservation's amount.
	Adjust(ctx context.Context, acct Account, id, amount int64) (Reservation, error)
	// Extend pushes an open reservation's expiry to now + the reservation
	// TTL and returns the new expiry.
	Extend(ctx context.Context, acct Account, id int64) (time.Time, error)
	// Commit charges an open reservation amount ≤ its Amount.
	Commit(ctx context.Context, acct Account, id, amount int64) error
	// Release gives an open reservation back, charging nothing.
	Release(ctx context.Context, acct Account, id int64) error
	// Grant adds credits to the current period; note says why.
	Grant(ctx context.Context, acct Account, amount int64, note string) (Balance, error)
	// Balance returns the account's current period.
	Balance(ctx context.Context, acct Account) (Balance, error)
}

// Entry is one row of a ledger's append-only history (sqlstore keeps
// one; see its Entries).
type Entry struct {
	// ID orders the entries.
	ID int64
	// Kind is allocation, grant, commit, release or expire.
	Kind string
	// Amount is the credits allocated (the whole allocation when the period
	// starts, the increase when an upgrade raises it), granted, charged
	// (commit) or given back.
	Amount int64
	// ReservationID links commit, release and expire entries to their
	// reservation.
	ReservationID int64
	// KeyID, RequestID and IdempotencyKey are the reservation's.
	KeyID, RequestID, IdempotencyKey string
	// Note is a grant's note; an allocation's says why and the new
	// allocation.
	Note string
	// PeriodStart is the billing period the entry belongs to.
	PeriodStart time.Time
	// CreatedAt is when it was written.
	CreatedAt time.Time
}

// History is a ledger that keeps its entries and pages through them.
type History interface {
	// EntriesBefore returns up to limit (1 to 1000) of an organization's
	// entries whose ID is below beforeID (≤ 0: from the newest), newest
	// first.
	EntriesBefore(ctx context.Context, orgID string, beforeID int64, limit int) ([]Entry, error)
}

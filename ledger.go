package keyward

import (
	"context"
	"errors"
	"time"
)

// Defaults of the credit ledger and of ChargeCredits.
const (
	// DefaultReservationTTL is how long a reservation stays open before it
	// expires and is released.
	DefaultReservationTTL = 5 * time.Minute
	// DefaultIdempotencyTTL is how long an idempotency key, once its call
	// was charged, makes retries free.
	DefaultIdempotencyTTL = 24 * time.Hour
	// DefaultMaxIdempotentBody bounds the request body that ChargeCredits
	// reads to fingerprint a call that carries an Idempotency-Key.
	DefaultMaxIdempotentBody = 1 << 20
)

// Errors of the credit ledger and of SetCost. ChargeCredits answers them
// with an *Error that wraps them, so errors.Is works on both.
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
	// ErrInvalidAmount: a negative amount, a commit above the reservation,
	// a grant that is not positive, or an account that is not valid.
	ErrInvalidAmount = errors.New("keyward: invalid credit amount")
	// ErrNoCharge: SetCost was called outside a ChargeCredits chain.
	ErrNoCharge = errors.New("keyward: no ChargeCredits in the request's chain")
	// ErrChargeSettled: SetCost was called after the charge was settled.
	ErrChargeSettled = errors.New("keyward: the charge is already settled")
)

// Account is an organization's credit policy, passed into every ledger
// call so that a ledger needs no plan table of its own
// (Organization.Account).
type Account struct {
	// OrgID identifies the organization. Required.
	OrgID string
	// Allocation is the organization's credits per billing period, ≥ 0.
	Allocation int64
	// AllowOverage lets calls go on when credits run out: the balance may
	// then go below zero.
	AllowOverage bool
}

// Account returns the organization's credit policy, from its Limits.
func (o *Organization) Account() Account {
	return Account{OrgID: o.ID, Allocation: o.Limits.MonthlyCredits, AllowOverage: o.AllowOverage}
}

// PeriodFunc returns the billing period of an organization that contains
// t: start ≤ t < end.
type PeriodFunc func(orgID string, t time.Time) (start, end time.Time)

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
	// with (opaque bytes; ChargeCredits uses SHA-256 of method, path, query
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
	// Available is Allocation + Granted − Spent − Reserved: what new calls
	// can reserve. It is never below zero for an account without overage.
	Available int64
	// OpenReservations counts the open reservations.
	OpenReservations int
}

// CreditLedger holds organizations' credits: calls reserve before they run
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
// period), Available and balance are never below zero.
//
// Reserve holds Amount for the account: without AllowOverage it succeeds
// only if Available ≥ Amount, else it returns ErrInsufficientCredits with
// Reservation.Available set to what was available (≥ 0); with overage it
// always succeeds. An Amount of zero always succeeds. Check and hold are one
// atomic step: concurrent reservations never overspend.
//
// Idempotency. A ReserveRequest with an IdempotencyKey, scoped to the
// organization, is remembered from its reservation for the idempotency TTL
// (default DefaultIdempotencyTTL):
//   - a key not seen (or whose last call was released or expired):
//     reserve as usual, and link the key to the reservation;
//   - a key seen with another Fingerprint: ErrIdempotencyKeyReused;
//   - a key whose call is in flight (its reservation is open):
//     ErrIdempotencyKeyInUse;
//   - a key whose call was committed: no reservation; a Reservation with
//     Replayed, the original ID, Charged and the current Available.
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
// Expiry. A reservation not settled by ExpiresAt (reserve time + the
// reservation TTL, default DefaultReservationTTL) is released. Expiry may
// be applied lazily, but every call must answer as if it had happened at
// ExpiresAt: an expired reservation is never in Reserved, never blocks an
// idempotency key, and cannot be committed.
//
// Grant adds amount > 0 credits to the current period (an entry, not an
// overwrite) and returns the new Balance. Balance returns the current one.
//
// Every method honours ctx's cancellation and deadline, returns
// ErrInvalidAmount for a negative amount or an account with an empty OrgID
// or a negative Allocation, and is safe for concurrent use. Any error not
// named here means the ledger failed: ChargeCredits then answers 503 and the
// handler does not run.
type CreditLedger interface {
	// Reserve holds req.Amount for a call, or replays a charged call.
	Reserve(ctx context.Context, req ReserveRequest) (Reservation, error)
	// Adjust sets an open reservation's amount.
	Adjust(ctx context.Context, acct Account, id, amount int64) (Reservation, error)
	// Commit charges an open reservation amount ≤ its Amount.
	Commit(ctx context.Context, acct Account, id, amount int64) error
	// Release gives an open reservation back, charging nothing.
	Release(ctx context.Context, acct Account, id int64) error
	// Grant adds credits to the current period; note says why.
	Grant(ctx context.Context, acct Account, amount int64, note string) (Balance, error)
	// Balance returns the account's current period.
	Balance(ctx context.Context, acct Account) (Balance, error)
	// Extend pushes an open reservation's expiry to now + the ledger's
	// reservation TTL and returns the new expiry.
	Extend(ctx context.Context, acct Account, id int64) (time.Time, error)
}

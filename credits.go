package keyward

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unsafe"
)

// Headers that ChargeCredits reads and writes.
const (
	// HeaderIdempotencyKey names a call so that retries of it spend once.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderXIdempotencyKey is accepted in place of Idempotency-Key.
	HeaderXIdempotencyKey = "X-Idempotency-Key"
	// HeaderCreditsRemaining is set on every 2xx response of a charged
	// call: the organization's available credits once this call is charged.
	HeaderCreditsRemaining = "X-Credits-Remaining"
	// HeaderIdempotentReplayed is "true" on a 2xx response to a retry of a
	// call that was already charged: this response was not charged again.
	HeaderIdempotentReplayed = "Idempotent-Replayed"
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

// MaxCredits (10^15) bounds every credit amount a ledger takes: an
// allocation, a reservation, an adjustment, a commit, a grant, a period's
// allocation plus grants, and an overage account's debt (Available ≥
// −MaxCredits). Every figure of a Balance then stays within 3·MaxCredits
// of zero: it cannot overflow int64 in Go or in any database, and it is
// below 2^53, so a JSON reader that uses float64 (JavaScript) reads it
// exactly. At a credit per micro-dollar it is a billion dollars a period.
const MaxCredits int64 = 1_000_000_000_000_000

// Reasons (details.reason) of the failures ChargeCredits adds to the
// catalogue. All are validation_error.
const (
	// ReasonInvalidIdempotencyKey (400): the key is not 1 to 64 letters,
	// digits, '_' or '-'.
	ReasonInvalidIdempotencyKey = "invalid_idempotency_key"
	// ReasonConflictingIdempotencyKeys (400): Idempotency-Key and
	// X-Idempotency-Key differ, or one of them was sent twice.
	ReasonConflictingIdempotencyKeys = "conflicting_idempotency_keys"
	// ReasonIdempotencyKeyInUse (409, Retry-After: 1): a call with the same
	// key is still in flight.
	ReasonIdempotencyKeyInUse = "idempotency_key_in_use"
	// ReasonIdempotencyKeyReused (422): the key was used for a different
	// request (method, path, query or body).
	ReasonIdempotencyKeyReused = "idempotency_key_reused"
	// ReasonIdempotentBodyTooLarge (413): a call with an idempotency key has
	// a body larger than CreditConfig.MaxIdempotentBody.
	ReasonIdempotentBodyTooLarge = "idempotent_body_too_large"
	// ReasonUnreadableBody (400): the body of a call with an idempotency key
	// could not be read.
	ReasonUnreadableBody = "unreadable_body"
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
	// ErrInvalidAmount: an amount that is negative or above MaxCredits, a
	// commit above the reservation, a grant that CheckGrant refuses, or an
	// account that Account.Check refuses.
	ErrInvalidAmount = errors.New("keyward: invalid credit amount")
	// ErrNoCharge: SetCost was called outside a ChargeCredits chain.
	ErrNoCharge = errors.New("keyward: no ChargeCredits in the request's chain")
	// ErrChargeSettled: SetCost was called after the charge was settled.
	ErrChargeSettled = errors.New("keyward: the charge is already settled")
)

// Account is an organization's credit policy, passed into every ledger
// call so that a ledger needs no plan table of its own. ChargeCredits
// builds it from the Principal's organization and its plan table
// (AccountFor).
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

// AccountFor returns the credit policy of org: its MonthlyCredits when
// > 0, else the MonthlyCredits of its plan in plans. An unknown plan
// without an override, or a negative allocation, is an error.
func AccountFor(org Organization, plans map[string]Plan) (Account, error) {
	alloc := org.MonthlyCredits
	if alloc <= 0 {
		p, ok := plans[org.Plan]
		if !ok {
			return Account{}, errors.New("keyward: plan " + strconv.Quote(org.Plan) + " is not in the plan table")
		}
		alloc = p.MonthlyCredits
	}
	if alloc < 0 {
		return Account{}, errors.New("keyward: plan " + strconv.Quote(org.Plan) + " has a negative credit allocation")
	}
	return Account{OrgID: org.ID, Allocation: alloc, AllowOverage: org.AllowOverage}, nil
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
// compares them exactly (ChargeCredits' are raw SHA-256, seldom valid
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
// here means the ledger failed: ChargeCredits then answers 503 and the
// handler does not run.
type CreditLedger interface {
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

// CostFunc gives the cost of a call from its request. An error stops the
// call: an *Error is written as it is (Validation(400, …) for a bad
// request), any other error as a 500. A negative cost is a 500.
type CostFunc func(r *http.Request) (int64, error)

// CreditConfig configures a Charger. Every zero value means the default
// said beside it; every other problem is an error from NewCharger.
type CreditConfig struct {
	// Ledger holds the credits. Required.
	Ledger CreditLedger
	// Plans gives each plan's MonthlyCredits (an organization's
	// MonthlyCredits > 0 overrides it). Nil: DefaultPlans(). It is copied.
	Plans map[string]Plan
	// Cost is what each call reserves, for ChargeCredits; ignored by
	// Charger.Charge, which takes its own. Zero: 1. Set CostFunc instead for
	// a cost that depends on the request (or is 0 until SetCost).
	Cost int64
	// CostFunc gives each call's cost, for ChargeCredits; setting it and
	// Cost is an error.
	CostFunc CostFunc
	// MaxIdempotentBody bounds the body a call with an idempotency key may
	// have (it is read into memory to fingerprint the call; larger is 413).
	// Zero: DefaultMaxIdempotentBody (1 MiB).
	MaxIdempotentBody int64
	// Errors writes every failure. Nil: the defaults of ErrorWriter.
	Errors *ErrorWriter
}

// Charger reserves credits before a call and settles them after. It is
// what ChargeCredits runs, exported so that adapters for other routers
// share the decisions (Begin, Charge.Settle). It is immutable and safe for
// concurrent use.
type Charger struct {
	ledger  CreditLedger
	plans   map[string]Plan
	maxBody int64
	errors  *ErrorWriter

	errNoPrincipal, errBadKey, errTwoKeys, errKeyInUse, errKeyReused, errBodyTooLarge, errBodyUnreadable *Error
}

// NewCharger checks cfg and returns the Charger it describes, or every
// problem in cfg joined into one error. Cost and CostFunc are checked only
// by ChargeCredits.
func NewCharger(cfg CreditConfig) (*Charger, error) {
	var errs []error
	if cfg.Ledger == nil {
		errs = append(errs, &ConfigError{Field: "CreditConfig.Ledger", Problem: "is nil; a CreditLedger is required"})
	}
	plans := cfg.Plans
	if plans == nil {
		plans = DefaultPlans()
	} else if len(plans) == 0 {
		errs = append(errs, &ConfigError{Field: "CreditConfig.Plans", Problem: "is empty; leave it nil for DefaultPlans"})
	}
	copied := make(map[string]Plan, len(plans))
	for name, p := range plans {
		if p.MonthlyCredits < 0 {
			errs = append(errs, &ConfigError{Field: "CreditConfig.Plans[" + strconv.Quote(name) + "].MonthlyCredits", Problem: "is negative"})
		}
		copied[name] = p
	}
	if cfg.MaxIdempotentBody < 0 {
		errs = append(errs, &ConfigError{Field: "CreditConfig.MaxIdempotentBody", Problem: "is negative"})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	c := &Charger{
		ledger:  cfg.Ledger,
		plans:   copied,
		maxBody: orDefault(cfg.MaxIdempotentBody, DefaultMaxIdempotentBody),
		errors:  cfg.Errors,
	}
	c.errNoPrincipal = Misconfigured("ChargeCredits needs RequireAPIKey in front of it")
	c.errBadKey = &Error{Status: http.StatusBadRequest, Code: CodeValidation, Reason: ReasonInvalidIdempotencyKey,
		Message: "Idempotency-Key must be 1 to 64 letters, digits, '_' or '-'."}
	c.errTwoKeys = &Error{Status: http.StatusBadRequest, Code: CodeValidation, Reason: ReasonConflictingIdempotencyKeys,
		Message: "Idempotency-Key and X-Idempotency-Key disagree. Send one idempotency key, once."}
	c.errKeyInUse = &Error{Status: http.StatusConflict, Code: CodeValidation, Reason: ReasonIdempotencyKeyInUse,
		Message: "A request with this Idempotency-Key is still in progress. Retry after it completes.",
		Header:  http.Header{"Retry-After": {"1"}}, Cause: ErrIdempotencyKeyInUse}
	c.errKeyReused = &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Reason: ReasonIdempotencyKeyReused,
		Message: "This Idempotency-Key was used for a different request. Use a new key for a new request.",
		Cause:   ErrIdempotencyKeyReused}
	c.errBodyTooLarge = &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeValidation, Reason: ReasonIdempotentBodyTooLarge,
		Message: "The body of a request with an Idempotency-Key may be at most " + strconv.FormatInt(c.maxBody, 10) + " bytes.",
		Details: map[string]any{"maxBytes": c.maxBody}}
	c.errBodyUnreadable = &Error{Status: http.StatusBadRequest, Code: CodeValidation, Reason: ReasonUnreadableBody,
		Message: "The request body could not be read."}
	return c, nil
}

// ChargeCredits returns the middleware that charges each call cfg.Cost (or
// cfg.CostFunc(r)) credits of the caller's organization: it reserves them
// before the handler runs and settles after, committing on a 2xx response
// and releasing otherwise. It needs RequireAPIKey in front of it. See
// Charger.Charge for the answers it gives.
func ChargeCredits(cfg CreditConfig) (Middleware, error) {
	var errs []error
	if cfg.Cost < 0 {
		errs = append(errs, &ConfigError{Field: "CreditConfig.Cost", Problem: "is negative"})
	}
	if cfg.Cost != 0 && cfg.CostFunc != nil {
		errs = append(errs, &ConfigError{Field: "CreditConfig.CostFunc", Problem: "is set with Cost; set one of them"})
	}
	c, err := NewCharger(cfg)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if cfg.CostFunc != nil {
		return c.middleware(0, cfg.CostFunc), nil
	}
	return c.middleware(orDefault(cfg.Cost, 1), nil), nil
}

// Charge returns the middleware that charges each call cost credits (≥ 0;
// 0 for a call whose handler sets its cost with SetCost).
//
// Before the handler it reserves the cost (Begin). It answers, without
// running the handler: 402 insufficient_credits (details creditsRequired,
// creditsRemaining) when the organization has no overage and too few
// credits; 409 idempotency_key_in_use with Retry-After: 1 while a call
// with the same Idempotency-Key is in flight; 422 idempotency_key_reused
// for a key used with a different request; 400 for a malformed or
// conflicting idempotency key; 503 service_unavailable when the ledger
// fails (fail closed); 500 without RequireAPIKey in front.
//
// After the handler it commits the final cost (SetCost) on a 2xx status,
// and releases the reservation on any other final status, on a hijacked
// connection, on a panic (which goes on unrecovered, with its own stack),
// and when the handler wrote nothing and the request's context is done
// (the client went away). A handler that returns without writing and
// with the client still there has answered 200: it is charged.
//
// Every 2xx response of a charged call carries X-Credits-Remaining. A
// retry of a charged call (same Idempotency-Key, same request, within the
// ledger's idempotency TTL) runs the handler again but is not charged; its
// 2xx response carries Idempotent-Replayed: true and the current
// X-Credits-Remaining.
func (c *Charger) Charge(cost int64) (Middleware, error) {
	if cost < 0 {
		return nil, &ConfigError{Field: "cost", Problem: "is negative"}
	}
	return c.middleware(cost, nil), nil
}

// ChargeFunc is Charge with a cost computed from each request.
func (c *Charger) ChargeFunc(cost CostFunc) (Middleware, error) {
	if cost == nil {
		return nil, &ConfigError{Field: "cost", Problem: "is nil"}
	}
	return c.middleware(0, cost), nil
}

var errNegativeCost = Misconfigured("the cost of the call is negative")

func (c *Charger) middleware(cost int64, costFn CostFunc) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, err := cost, error(nil)
			if costFn != nil {
				n, err = costFn(r)
			}
			var ch *Charge
			if err == nil {
				ch, err = c.Begin(r, n)
			}
			if err != nil {
				c.WriteError(w, r, err)
				return
			}
			ch.serve(next, w, r)
		})
	}
}

// WriteError writes err (an error of Begin or of a CostFunc) with the
// charger's ErrorWriter, unless r's context is done: a client that went
// away gets no answer (and a ledger call it cancelled is not logged as a
// failure).
func (c *Charger) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	// Answer unless the client went away. A request whose deadline passed
	// still has a client waiting: returning without writing would send it
	// an empty 200.
	if errors.Is(r.Context().Err(), context.Canceled) {
		return
	}
	c.errors.WriteError(w, r, err)
}

// Begin decides whether the call r may run, and reserves its cost: it is
// the first half of what Charge does, for adapters. The error, when not
// nil, is an *Error ready for ErrorWriter (see Charge for which). On
// success the caller must run the handler with the request ch.Request(r)
// (its context carries the Charge, so that SetCost works) inside ch.Run,
// and report the
// status its framework sends: through ch.ResponseWriter for a framework
// that sends the status when WriteHeader is called, or with
// ch.ObserveStatus at the moment it sends it. (By hand: set
// ch.SetResponseHeaders just before writing a 2xx status, then call
// ch.Settle with the final status, or ch.Release if the handler panicked or
// the client went away.) Write a Begin error with WriteError.
//
// When r carries an idempotency key, Begin reads r's body (at most
// MaxIdempotentBody bytes) to fingerprint the call and replaces r.Body
// with an in-memory copy.
func (c *Charger) Begin(r *http.Request, cost int64) (*Charge, error) {
	if cost < 0 {
		return nil, errNegativeCost
	}
	p, ok := FromContext(r.Context())
	if !ok {
		return nil, c.errNoPrincipal
	}
	acct, err := c.account(p)
	if err != nil {
		return nil, err
	}
	req := ReserveRequest{Account: acct, Amount: cost, KeyID: p.KeyID}
	if ids := r.Header["X-Request-Id"]; len(ids) == 1 && saneRequestID(ids[0]) {
		req.RequestID = ids[0]
	}
	if req.IdempotencyKey, err = c.idempotencyKey(r.Header); err != nil {
		return nil, err
	}
	if req.IdempotencyKey != "" {
		if req.Fingerprint, err = c.fingerprint(r); err != nil {
			return nil, err
		}
	}
	ctx := r.Context()
	res, err := c.ledger.Reserve(ctx, req)
	if err != nil {
		switch {
		case errors.Is(err, ErrInsufficientCredits):
			e := InsufficientCredits(cost, max(res.Available, 0))
			e.Cause = err
			return nil, e
		case errors.Is(err, ErrIdempotencyKeyInUse):
			return nil, c.errKeyInUse
		case errors.Is(err, ErrIdempotencyKeyReused):
			return nil, c.errKeyReused
		}
		return nil, ServiceUnavailable("credit ledger", err)
	}
	// On a request from RequireAPIKey (AttachPrincipal) the Charge lives in
	// the request's state, claimed only now that the call is allowed: no
	// allocation of its own.
	ch := stateOf(ctx).claimCharge()
	if ch == nil {
		ch = new(Charge)
	}
	ch.c, ch.parent, ch.acct, ch.cost = c, ctx, acct, cost
	ch.res = chargeRes{ID: res.ID, Amount: res.Amount, Available: res.Available, Charged: res.Charged,
		ExpiresAt: res.ExpiresAt, Replayed: res.Replayed}
	if res.Replayed {
		ch.cost = res.Charged
	}
	return ch, nil
}

func (c *Charger) account(p *Principal) (Account, error) {
	org := &Organization{ID: p.OrgID, Plan: p.Plan}
	if p.Key != nil {
		org = &p.Key.Org
	}
	alloc := org.MonthlyCredits
	if alloc <= 0 {
		plan, ok := c.plans[org.Plan]
		if !ok {
			return Account{}, Misconfigured("the organization's plan " + strconv.Quote(org.Plan) + " is not in ChargeCredits' plan table")
		}
		alloc = plan.MonthlyCredits
	}
	return Account{OrgID: org.ID, Allocation: alloc, AllowOverage: org.AllowOverage}, nil
}

// idempotencyKey returns the call's idempotency key, "" for none.
func (c *Charger) idempotencyKey(h http.Header) (string, error) {
	a, b := h[HeaderIdempotencyKey], h[HeaderXIdempotencyKey]
	var k string
	switch {
	case len(a) > 1 || len(b) > 1:
		return "", c.errTwoKeys
	case len(a) == 1 && len(b) == 1:
		if a[0] != b[0] {
			return "", c.errTwoKeys
		}
		k = a[0]
	case len(a) == 1:
		k = a[0]
	case len(b) == 1:
		k = b[0]
	default:
		return "", nil
	}
	if !ValidIdempotencyKey(k) {
		return "", c.errBadKey
	}
	return k, nil
}

// ValidIdempotencyKey reports whether k matches ^[A-Za-z0-9_-]{1,64}$.
func ValidIdempotencyKey(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for i := 0; i < len(k); i++ {
		ch := k[i]
		if !('a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || ch == '_' || ch == '-') {
			return false
		}
	}
	return true
}

// fingerprint is SHA-256 of the method, path, query and body of r. It
// replaces r.Body with the bytes it read.
func (c *Charger) fingerprint(r *http.Request) (string, error) {
	h := sha256.New()
	_, _ = io.WriteString(h, r.Method)
	h.Write([]byte{0})
	if r.URL != nil {
		_, _ = io.WriteString(h, r.URL.EscapedPath())
		h.Write([]byte{0})
		_, _ = io.WriteString(h, r.URL.RawQuery)
	}
	h.Write([]byte{0})
	if r.Body != nil && r.Body != http.NoBody {
		body, err := io.ReadAll(io.LimitReader(r.Body, c.maxBody+1))
		if err != nil {
			return "", c.errBodyUnreadable
		}
		if int64(len(body)) > c.maxBody {
			return "", c.errBodyTooLarge
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.Write(body)
	}
	return string(h.Sum(nil)), nil
}

// Charge is one call's reservation, from Begin to Settle. Its methods are
// safe for concurrent use.
type Charge struct {
	c      *Charger
	parent context.Context
	acct   Account
	res    chargeRes

	// w, status, hijacked and returned belong to the goroutine serving the
	// request (the middleware and the handler's writes).
	w        http.ResponseWriter
	status   int
	hijacked bool
	returned bool

	mu      sync.Mutex
	cost    int64
	settled bool
	hdrSet  bool
	hdrBuf  [20]byte
	hdrVal  [1]string
}

// chargeRes is a Reservation without its OrgID, which is the account's.
type chargeRes struct {
	ID, Amount, Available, Charged int64
	ExpiresAt                      time.Time
	Replayed                       bool
}

// ChargeFromContext returns the Charge of the call ctx belongs to, if any.
func ChargeFromContext(ctx context.Context) (*Charge, bool) {
	ch, ok := ctx.Value(chargeKey{}).(*Charge)
	return ch, ok && ch != nil
}

// SetCost sets the final cost, in credits (≥ 0), of the call ctx belongs
// to; a batch endpoint calls it once it knows the size of the batch.
//
// Lowering the cost needs no ledger call: the commit charges the lower
// cost and releases the rest. Raising it above what is reserved reserves
// the difference at once, so that no call can spend credit it did not
// hold: when the organization has no overage and too few credits, SetCost
// returns a 402 *Error (errors.Is ErrInsufficientCredits) and the cost is
// unchanged; the handler decides whether to answer it (an ErrorWriter
// writes it) or to go on at the old cost. A ledger failure is a 503
// *Error. On a replayed call SetCost does nothing. Call it before the
// response is written: X-Credits-Remaining is computed then.
//
// It returns ErrNoCharge outside a ChargeCredits chain, ErrInvalidAmount
// for a negative cost and ErrChargeSettled after the call was settled.
func SetCost(ctx context.Context, credits int64) error {
	ch, ok := ChargeFromContext(ctx)
	if !ok {
		return ErrNoCharge
	}
	return ch.SetCost(credits)
}

// SetCost is the package's SetCost for this charge.
func (ch *Charge) SetCost(credits int64) error {
	if credits < 0 {
		return ErrInvalidAmount
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.settled {
		return ErrChargeSettled
	}
	if ch.res.Replayed {
		return nil
	}
	if credits > ch.res.Amount {
		res, err := ch.c.ledger.Adjust(ch.parent, ch.acct, ch.res.ID, credits)
		if err != nil {
			if errors.Is(err, ErrInsufficientCredits) {
				e := InsufficientCredits(credits-ch.res.Amount, max(res.Available, 0))
				e.Cause = err
				return e
			}
			return ServiceUnavailable("credit ledger", err)
		}
		ch.res.Amount, ch.res.Available = res.Amount, res.Available
	}
	ch.cost = credits
	return nil
}

// Cost returns the call's current cost: what a commit would charge now.
// For a replay it is what the original call was charged.
func (ch *Charge) Cost() int64 {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.cost
}

// Reservation returns what the ledger holds for the call.
func (ch *Charge) Reservation() Reservation {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	r := ch.res
	return Reservation{ID: r.ID, OrgID: ch.acct.OrgID, Amount: r.Amount, ExpiresAt: r.ExpiresAt,
		Available: r.Available, Replayed: r.Replayed, Charged: r.Charged}
}

// Replayed reports whether the call retries one already charged (same
// idempotency key): it will not be charged.
func (ch *Charge) Replayed() bool { return ch.res.Replayed }

// Remaining returns the organization's available credits once this call
// is charged its current cost (≥ 0), as of its reservation: concurrent
// calls are not counted.
func (ch *Charge) Remaining() int64 {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.remaining()
}

func (ch *Charge) remaining() int64 {
	if ch.res.Replayed {
		return max(ch.res.Available, 0)
	}
	return max(ch.res.Available+ch.res.Amount-ch.cost, 0)
}

// SetResponseHeaders sets X-Credits-Remaining (and, on a replay,
// Idempotent-Replayed) in h. Call it just before writing a 2xx status.
func (ch *Charge) SetResponseHeaders(h http.Header) {
	ch.mu.Lock()
	n := ch.remaining()
	if !ch.hdrSet {
		// The first value is formatted into the Charge itself: no
		// allocation. The bytes are never written again, so the string
		// stays immutable.
		ch.hdrSet = true
		b := strconv.AppendInt(ch.hdrBuf[:0], n, 10)
		ch.hdrVal[0] = unsafe.String(unsafe.SliceData(b), len(b))
		h[HeaderCreditsRemaining] = ch.hdrVal[:1:1]
	} else {
		h[HeaderCreditsRemaining] = []string{strconv.FormatInt(n, 10)}
	}
	ch.mu.Unlock()
	if ch.res.Replayed {
		h[HeaderIdempotentReplayed] = []string{"true"}
	}
}

// Settle ends the call: it commits the current cost when status is 2xx
// and releases the reservation otherwise. Only the first Settle or
// Release acts; later ones return nil. On a replay nothing is settled.
// The ledger is called without the request's cancellation, so that a
// client going away cannot leave the call half settled. An error is the
// ledger's (see CreditLedger): the reservation then expires and is
// released, so the call is not charged.
func (ch *Charge) Settle(status int) error {
	ch.mu.Lock()
	if ch.settled {
		ch.mu.Unlock()
		return nil
	}
	ch.settled = true
	cost := ch.cost
	ch.mu.Unlock()
	if ch.res.Replayed {
		return nil
	}
	ctx := (*detachedCtx)(ch)
	if status >= 200 && status <= 299 {
		return ch.c.ledger.Commit(ctx, ch.acct, ch.res.ID, cost)
	}
	return ch.c.ledger.Release(ctx, ch.acct, ch.res.ID)
}

// Release ends the call without charging it: Settle with no status.
func (ch *Charge) Release() error { return ch.Settle(0) }

// Context returns the request context of the call, carrying the Charge
// (for SetCost and ChargeFromContext).
func (ch *Charge) Context() context.Context { return (*chargeCtx)(ch) }

// ResponseWriter returns w seen through the Charge: the first final
// status written through it (WriteHeader, or 200 on the first Write, Flush
// or ReadFrom) is the one the call settles on, and a 2xx gets the credit
// headers set in w's header just before it goes out. Flusher, Hijacker
// (a hijacked call is not charged) and io.ReaderFrom keep working; Unwrap
// lets http.ResponseController reach the rest. ChargeCredits serves its
// handler with it; an adapter for a framework that sends the status when
// WriteHeader is called (echo's Response) installs it under the
// framework's writer. Call it once, before Run.
func (ch *Charge) ResponseWriter(w http.ResponseWriter) http.ResponseWriter {
	ch.w = w
	return (*chargeWriter)(ch)
}

// Request returns r as the rest of the chain must see it, its context
// carrying the Charge (SetCost and ChargeFromContext find it): r itself
// when r's context is RequireAPIKey's request state with no Charge yet (the
// Charge is put there), else a copy of r with the context ch.Context().
func (ch *Charge) Request(r *http.Request) *http.Request {
	if st := stateOf(r.Context()); st != nil && (st.charge.Load() == ch || st.charge.CompareAndSwap(nil, ch)) {
		return r
	}
	return r.WithContext(ch.Context())
}

// ObserveStatus tells the Charge that the response's status code is being
// sent, with header h: the first final status (not 1xx, except 101) is the
// one the call settles on, and for a 2xx it sets the credit headers in h
// first (see SetResponseHeaders). Later calls do nothing. An adapter for a
// framework that sends the status later than WriteHeader (gin's
// ResponseWriter) calls it at that moment, from the goroutine serving the
// request.
func (ch *Charge) ObserveStatus(h http.Header, code int) { ch.sawStatus(h, code) }

// ObserveHijack tells the Charge that the handler took the connection
// over: the call is not charged.
func (ch *Charge) ObserveHijack() { ch.hijacked = true }

// Run runs next, the rest of the chain, and then settles the call, as
// ChargeCredits does:
//   - if next panics (or calls runtime.Goexit), or the connection was
//     hijacked, the reservation is released and the panic goes on, with
//     its own stack;
//   - if no status was sent and the request's context is done, the client
//     went away: released;
//   - if no status was sent and the client is still there, commit is
//     called: it must send the status the framework sends for a handler
//     that wrote nothing, through the writer that reports to the Charge
//     (nil: the server sends 200 once the handler returns; the credit
//     headers are set on the writer given to ResponseWriter);
//   - then the call settles on the status sent: committed on a 2xx,
//     released otherwise. A failure to settle is logged (the reservation
//     then expires and is released).
//
// Call it once, from the goroutine serving the request.
func (ch *Charge) Run(next func(), commit func()) {
	defer ch.finish(commit)
	next()
	ch.returned = true
}

// serve runs next with the Charge as response writer and context, then
// settles. A panic is not recovered: finish releases and lets it go on.
func (ch *Charge) serve(next http.Handler, w http.ResponseWriter, r *http.Request) {
	cw := ch.ResponseWriter(w)
	// Directly behind RequireAPIKey the request's context is its state,
	// which has a slot for the Charge: no second copy of the request. Any
	// other context (or a second ChargeCredits) gets the Charge's own.
	r = ch.Request(r)
	ch.Run(func() { next.ServeHTTP(cw, r) }, nil)
}

func (ch *Charge) finish(commit func()) {
	status := ch.status
	switch {
	case !ch.returned || ch.hijacked: // a panic, runtime.Goexit, or a hijack
		status = 0
	case status == 0 && ch.parent.Err() != nil: // nothing written, client gone
	case status == 0: // nothing written: the framework answers now
		if commit != nil {
			commit()
		}
		if ch.status == 0 { // net/http answers 200 when the handler returns
			var h http.Header
			if ch.w != nil {
				h = ch.w.Header()
			}
			ch.sawStatus(h, http.StatusOK)
		}
		status = ch.status
	}
	if err := ch.Settle(status); err != nil {
		level := slog.LevelError
		if errors.Is(err, ErrReservationExpired) {
			level = slog.LevelWarn
		}
		ch.c.errors.logger().LogAttrs((*detachedCtx)(ch), level, "keyward: settling credits failed; the call is not charged",
			slog.String("orgId", ch.acct.OrgID),
			slog.Int64("reservationId", ch.res.ID),
			slog.Int("status", status),
			slog.Any("error", err),
		)
	}
}

// sawStatus records the first final status the handler sends and, for a
// 2xx, sets the credit headers in h (when not nil) before it goes out.
func (ch *Charge) sawStatus(h http.Header, code int) {
	if ch.status != 0 || code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		return
	}
	ch.status = code
	if code >= 200 && code <= 299 && h != nil {
		ch.SetResponseHeaders(h)
	}
}

type chargeKey struct{}

// chargeCtx is the Charge seen as the request's context: the parent
// context plus the Charge as a value, in the Charge's own allocation.
type chargeCtx Charge

func (c *chargeCtx) Deadline() (time.Time, bool) { return c.parent.Deadline() }
func (c *chargeCtx) Done() <-chan struct{}       { return c.parent.Done() }
func (c *chargeCtx) Err() error                  { return c.parent.Err() }
func (c *chargeCtx) Value(key any) any {
	if _, ok := key.(chargeKey); ok {
		return (*Charge)(c)
	}
	return c.parent.Value(key)
}
func (c *chargeCtx) String() string { return "keyward.Charge context" }

// detachedCtx is the parent context without its cancellation or deadline
// (context.WithoutCancel, without the allocation): settling must finish
// even when the client went away.
type detachedCtx Charge

func (c *detachedCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *detachedCtx) Done() <-chan struct{}       { return nil }
func (c *detachedCtx) Err() error                  { return nil }
func (c *detachedCtx) Value(key any) any {
	if _, ok := key.(chargeKey); ok {
		return (*Charge)(c)
	}
	// Rare (a ledger reading a trace span, say): WithoutCancel also hides
	// the parent's cancellation cause.
	return context.WithoutCancel(c.parent).Value(key)
}
func (c *detachedCtx) String() string { return "keyward.Charge context (detached)" }

// chargeWriter is the Charge seen as the handler's ResponseWriter: it
// records the status and keeps Flusher, Hijacker and ReaderFrom working;
// Unwrap lets http.ResponseController reach the rest.
type chargeWriter Charge

func (cw *chargeWriter) Header() http.Header { return cw.w.Header() }

func (cw *chargeWriter) WriteHeader(code int) {
	(*Charge)(cw).sawStatus(cw.w.Header(), code)
	cw.w.WriteHeader(code)
}

func (cw *chargeWriter) Write(p []byte) (int, error) {
	if cw.status == 0 {
		(*Charge)(cw).sawStatus(cw.w.Header(), http.StatusOK)
	}
	return cw.w.Write(p)
}

// ReadFrom implements io.ReaderFrom, so that io.Copy keeps the underlying
// writer's fast path (sendfile).
func (cw *chargeWriter) ReadFrom(src io.Reader) (int64, error) {
	if cw.status == 0 {
		(*Charge)(cw).sawStatus(cw.w.Header(), http.StatusOK)
	}
	if rf, ok := cw.w.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(writerOnly{cw.w}, src)
}

type writerOnly struct{ io.Writer }

// Flush implements http.Flusher.
func (cw *chargeWriter) Flush() { _ = cw.FlushError() }

// FlushError flushes as http.ResponseController does, returning its error
// (http.ErrNotSupported when the underlying writer cannot flush).
func (cw *chargeWriter) FlushError() error {
	first := cw.status == 0
	if first {
		(*Charge)(cw).sawStatus(cw.w.Header(), http.StatusOK) // flushing sends the headers
	}
	err := http.NewResponseController(cw.w).Flush()
	if err != nil && first { // nothing was sent after all
		cw.status = 0
		cw.w.Header().Del(HeaderCreditsRemaining)
		cw.w.Header().Del(HeaderIdempotentReplayed)
	}
	return err
}

// Hijack implements http.Hijacker. A hijacked call is not charged.
func (cw *chargeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(cw.w).Hijack()
	if err == nil {
		cw.hijacked = true
	}
	return conn, brw, err
}

// Unwrap returns the underlying ResponseWriter, for http.ResponseController.
func (cw *chargeWriter) Unwrap() http.ResponseWriter { return cw.w }

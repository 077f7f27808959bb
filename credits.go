package keyward

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/internal/clock"
	"github.com/keyward/keyward/internal/detach"
	"github.com/keyward/keyward/internal/hooks"
	"github.com/keyward/keyward/internal/keepalive"
	"github.com/keyward/keyward/internal/statuswriter"
)

// Headers that ChargeCredits reads and writes.
const (
	// HeaderIdempotencyKey names a call so that retries of it spend once.
	// A ledger keeps only its SHA-256.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderXIdempotencyKey is accepted in place of Idempotency-Key.
	HeaderXIdempotencyKey = "X-Idempotency-Key"
	// HeaderCreditsRemaining, on every 2xx of a charged call: Available as the ledger's
	// Balance where the call was served counts it, once the call is charged (Charge.Remaining).
	HeaderCreditsRemaining = "X-Credits-Remaining"
	// HeaderIdempotentReplayed is "true" on a 2xx of a retry of a call
	// already charged: this response was not charged again.
	HeaderIdempotentReplayed = "Idempotent-Replayed"
)

// Errors of SetCost.
var (
	// ErrNoCharge: SetCost was called outside a ChargeCredits chain.
	ErrNoCharge = errors.New("keyward: no ChargeCredits in the request's chain")
	// ErrChargeSettled: SetCost was called after the charge was settled.
	ErrChargeSettled = errors.New("keyward: the charge is already settled")
)

// CostFunc gives the cost of a call from its request. An error stops the
// call: an *Error is written as it is (Validation(400, …) for a bad
// request), any other error as a 500. A negative cost is a 500.
type CostFunc func(r *http.Request) (int64, error)

// CreditConfig configures ChargeCredits. A zero value means the default
// said beside it.
type CreditConfig struct {
	// Ledger holds the credits. Required.
	Ledger credit.Ledger
	// Cost is what each call reserves. Zero: 1, unless CostFunc is set.
	Cost int64
	// CostFunc gives each call's cost instead (0 for a call whose handler
	// sets it with SetCost); setting it and Cost is an error.
	CostFunc CostFunc
	// MaxIdempotentBody bounds the body of a call with an idempotency key
	// (read into memory to fingerprint it; larger is 413). Zero: 1 MiB.
	MaxIdempotentBody int64
	// Errors writes every failure. Nil: the defaults of ErrorWriter.
	Errors *ErrorWriter
}

// Charger reserves credits before a call and settles them after:
// ChargeCredits. Its Middleware is the net/http handler; adapters for
// other routers call Begin, the Charge's methods and WriteError. It is
// immutable and safe for concurrent use.
type Charger struct {
	ledger  credit.Ledger // the configured one, wrapped once for telemetry
	cost    CostFunc
	maxBody int64
	errors  *ErrorWriter
	fail    creditFailures
	running keepalive.Set // the reservations of calls running now, renewed
}

// ChargeCredits checks cfg and returns the Charger it describes, or every
// problem in cfg joined into one error.
//
// Before the handler it reserves the call's cost (Begin), or answers
// without running it: 402 when the organization has no overage and too few
// credits; 409, 422 or 400 for an idempotency key in flight, reused for
// another request, or malformed; 503 when the ledger fails; 500 without
// RequireAPIKey in front (failures.go has every message). While the
// handler runs the reservation is renewed (credit.Ledger.Extend), so a slow
// handler or client does not make a call free (for a day). After it, a
// 2xx commits the final cost (SetCost); any other status, a hijack, a
// panic (which goes on) or a client gone before anything was written
// releases it. A handler that returns without writing answered 200.
// A 2xx carries X-Credits-Remaining; a retry of a charged call (same
// Idempotency-Key and request) runs again uncharged, with
// Idempotent-Replayed: true.
func ChargeCredits(cfg CreditConfig) (*Charger, error) {
	var errs []error
	if cfg.Ledger == nil {
		errs = append(errs, &ConfigError{Field: "CreditConfig.Ledger", Problem: "is nil; a credit.Ledger is required"})
	}
	if cfg.Cost < 0 {
		errs = append(errs, &ConfigError{Field: "CreditConfig.Cost", Problem: "is negative"})
	}
	if cfg.Cost != 0 && cfg.CostFunc != nil {
		errs = append(errs, &ConfigError{Field: "CreditConfig.CostFunc", Problem: "is set with Cost; set one of them"})
	}
	if cfg.MaxIdempotentBody < 0 {
		errs = append(errs, &ConfigError{Field: "CreditConfig.MaxIdempotentBody", Problem: "is negative"})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	c := &Charger{ledger: hooks.Ledger(cfg.Ledger), cost: cfg.CostFunc, maxBody: cmp.Or(cfg.MaxIdempotentBody, 1<<20), errors: cfg.Errors}
	if c.cost == nil {
		cost := cmp.Or(cfg.Cost, 1)
		c.cost = func(*http.Request) (int64, error) { return cost, nil }
	}
	c.fail = newCreditFailures(c.maxBody)
	return c, nil
}

// Middleware runs Begin, then the handler inside the Charge (see
// ChargeCredits for the answers).
func (c *Charger) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if st := stateFrom(r.Context()); st != nil && st.shared {
			r = AttachKey(r, st.key) // a state of this request's own
		}
		ch, err := c.Begin(r)
		if err != nil {
			c.errors.WriteError(w, r, err)
			return
		}
		ch.serve(next, w, r)
	})
}

// WriteError writes an error of Begin with c's ErrorWriter.
func (c *Charger) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	c.errors.WriteError(w, r, err)
}

var errCostOutOfRange = misconfigured("the cost of the call is negative or above credit.MaxCredits")

// Begin decides whether the call r may run and reserves its cost: the
// first half of Middleware, for adapters. Write its error with WriteError.
// On success run the handler inside ch.Run and report the status the
// framework sends: through ch.ResponseWriter when it sends it on
// WriteHeader, else with ch.ObserveStatus when it does (or by hand:
// ch.SetResponseHeaders before a 2xx, then ch.Settle or ch.Release). With
// an idempotency key Begin reads r's body (at most MaxIdempotentBody
// bytes) to fingerprint the call and replaces r.Body with a copy.
func (c *Charger) Begin(r *http.Request) (ch *Charge, err error) {
	st, k, err := callerOf(r.Context(), "ChargeCredits")
	defer func() { observe(r.Context(), st, hooks.Credits, nil, err) }()
	switch {
	case c.ledger == nil:
		return nil, misconfigured("a Charger must be made by ChargeCredits")
	case err != nil:
		return nil, err
	}
	if _, err := limitsOf(k); err != nil {
		return nil, err
	}
	cost, err := c.cost(r)
	if err != nil {
		return nil, err
	}
	if credit.CheckAmount(cost) != nil {
		return nil, errCostOutOfRange
	}
	req := credit.ReserveRequest{Account: k.Account(), Amount: cost, KeyID: k.ID}
	req.RequestID, _ = incomingRequestID(r)
	if key, err := idemKey(r.Header); err != nil {
		return nil, c.fail.of(err)
	} else if key != "" {
		req.IdempotencyKey = idemDigest(key)
		if req.Fingerprint, err = idemFingerprint(r, c.maxBody); err != nil {
			return nil, c.fail.of(err)
		}
	}
	res, err := c.ledger.Reserve(r.Context(), req)
	if err != nil {
		switch {
		case errors.Is(err, credit.ErrIdempotencyKeyInUse):
			return nil, c.fail.keyInUse
		case errors.Is(err, credit.ErrIdempotencyKeyReused):
			return nil, c.fail.keyReused
		}
		return nil, ledgerFailure(cost, res, err)
	}
	ch = st.newCharge()
	ch.c, ch.st, ch.detached, ch.acct, ch.cost, ch.reqID = c, st, detach.Context{Parent: r.Context()}, req.Account, cost, req.RequestID
	ch.res = res
	if res.Replayed {
		ch.cost = res.Charged
	} else {
		c.running.Add(&ch.alive, (*chargeRenewer)(ch), renewAt(res.ExpiresAt))
	}
	return ch, nil
}

// ledgerFailure is the answer to a ledger error while reserving amount:
// 402 for too few credits, 500 for an amount out of range, 503 else.
func ledgerFailure(amount int64, res credit.Reservation, err error) *Error {
	switch {
	case errors.Is(err, credit.ErrInsufficientCredits):
		return insufficientCredits(amount, res.Available, err)
	case errors.Is(err, credit.ErrInvalidAmount): // no retry would help
		return misconfigured("the credit ledger refused the amount or the organization's allocation")
	}
	return ServiceUnavailable("credit ledger", err)
}

// Charge is one call's reservation, from Begin to Settle. Its methods are
// safe for concurrent use.
type Charge struct {
	c        *Charger
	detached detach.Context // the request's context (Parent) without its cancellation, for settling
	acct     credit.Account
	res      credit.Reservation
	reqID    string // the request's incoming X-Request-Id, for the log
	alive    keepalive.Node

	// w, status, hijacked and returned belong to the goroutine serving the
	// request (the middleware and the handler's writes).
	sw       statuswriter.Writer
	status   int
	hijacked bool
	returned bool

	mu      sync.Mutex
	endedOn int32 // the status Settle settled on; with done, charged and failed, in padding (the state keeps its size class)
	cost    int64
	settled bool
	done    bool // Settle had the ledger's answer: charged (cost committed), or failed
	charged bool
	failed  bool
	st      *requestState
}

// ChargeFromContext returns the Charge of the call ctx belongs to: the
// innermost ChargeCredits in front of the handler.
func ChargeFromContext(ctx context.Context) (*Charge, bool) {
	ch := stateFrom(ctx).charge()
	return ch, ch != nil
}

// SetCost sets the final cost, in credits (≥ 0), of the call ctx belongs
// to (a batch endpoint, once it knows the batch's size); call it before
// the response is written. Lowering it needs no ledger call. Raising it
// above what is reserved reserves the difference at once: with too few
// credits and no overage that is a 402 *Error and the cost is unchanged
// (the handler may write it, or go on at the old cost); a ledger failure
// is a 503 *Error. On a replayed call it does nothing. Other errors:
// ErrNoCharge outside a ChargeCredits chain, credit.ErrInvalidAmount for a
// cost outside 0…credit.MaxCredits, ErrChargeSettled after the call was
// settled.
func SetCost(ctx context.Context, credits int64) error {
	ch := stateFrom(ctx).charge()
	if ch == nil {
		return ErrNoCharge
	}
	return ch.SetCost(credits)
}

// SetCost is the package's SetCost for this charge.
func (ch *Charge) SetCost(credits int64) error {
	if credit.CheckAmount(credits) != nil {
		return credit.ErrInvalidAmount
	}
	if ch.c == nil {
		return ErrNoCharge // a Charge that Begin did not make
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
		res, err := ch.c.ledger.Adjust(ch.detached.Parent, ch.acct, ch.res.ID, credits)
		if err != nil {
			return ledgerFailure(credits-ch.res.Amount, res, err)
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
func (ch *Charge) Reservation() credit.Reservation {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.res
}

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
	ch.mu.Unlock()
	h[HeaderCreditsRemaining] = ch.st.headerValue(strconv.FormatInt(n, 10))
	if ch.res.Replayed {
		h[HeaderIdempotentReplayed] = ch.st.headerValue("true")
	}
}

// Settle ends the call: it commits the current cost on a 2xx status and
// releases the reservation otherwise; only the first Settle or Release
// acts, and a replay settles nothing. The ledger is called without the
// request's cancellation. An error is the ledger's: the reservation then
// expires, and the call is not charged.
func (ch *Charge) Settle(status int) error {
	if ch.c == nil {
		return ErrNoCharge // a Charge that Begin did not make
	}
	ch.mu.Lock()
	if ch.settled {
		ch.mu.Unlock()
		return nil
	}
	ch.settled = true
	cost := ch.cost
	ch.mu.Unlock()
	ch.c.running.Remove(&ch.alive)
	commit := status >= 200 && status <= 299
	var err error
	switch {
	case ch.res.Replayed: // nothing is held
	case commit:
		err = ch.c.ledger.Commit(&ch.detached, ch.acct, ch.res.ID, cost)
	default:
		err = ch.c.ledger.Release(&ch.detached, ch.acct, ch.res.ID)
	}
	ch.mu.Lock()
	ch.endedOn, ch.done, ch.failed = int32(status), true, err != nil
	ch.charged = commit && err == nil && !ch.res.Replayed
	ch.mu.Unlock()
	return err
}

// Settlement is how a call's Charge ended: the Status it settled on (a 2xx
// commits; 0: none was sent), the Credits the ledger committed (0 when
// released, for a replay, or when settling Failed: the ledger's error,
// which Settle returned, and the reservation expires uncharged).
type Settlement struct {
	Status  int
	Credits int64
	Failed  bool
}

// Settled returns how the call ended, once it has (ok): what a usage
// chart shows of a charged call.
func (ch *Charge) Settled() (s Settlement, ok bool) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.charged {
		s.Credits = ch.cost
	}
	s.Status, s.Failed = int(ch.endedOn), ch.failed
	return s, ch.done
}

// Release ends the call without charging it: Settle with no status.
func (ch *Charge) Release() error { return ch.Settle(0) }

// ResponseWriter returns w seen through the Charge: the first final
// status written through it (WriteHeader, or 200 on the first Write, Flush
// or ReadFrom) is the one the call settles on, and a 2xx gets the credit
// headers just before it goes out; a hijacked call is not charged
// (internal/statuswriter). An adapter for a framework that sends the
// status when WriteHeader is called (echo) installs it under the
// framework's writer. Call it once, before Run.
func (ch *Charge) ResponseWriter(w http.ResponseWriter) http.ResponseWriter {
	ch.sw = statuswriter.Writer{W: w, O: (*chargeObserver)(ch)}
	return &ch.sw
}

// ObserveStatus tells the Charge that status code is being sent with
// header h: the first final status (not 1xx, but 101) is the one the call
// settles on, and a 2xx gets the credit headers first. An adapter for a
// framework that sends the status after WriteHeader (gin) calls it then.
func (ch *Charge) ObserveStatus(h http.Header, code int) { ch.sawStatus(h, code) }

// ObserveHijack tells the Charge that the handler took the connection
// over: the call is not charged.
func (ch *Charge) ObserveHijack() { ch.hijacked = true }

// Run runs next, the rest of the chain, and then settles the call, as
// ChargeCredits does: released if next panicked (the panic goes on with
// its stack) or hijacked the connection, or if nothing was sent and the
// request's context is done; if nothing was sent and the client is still
// there, commit must send the status the framework sends for a handler
// that wrote nothing (nil: net/http's 200). Then the call settles on the
// status sent; a failure to settle is logged (the reservation then expires
// and is released). Call it once, from the goroutine serving the request.
func (ch *Charge) Run(next func(), commit func()) {
	defer ch.finish(commit)
	next()
	ch.returned = true
}

// serve runs next with the Charge as response writer and context, then
// settles. A panic is not recovered: finish releases and lets it go on.
func (ch *Charge) serve(next http.Handler, w http.ResponseWriter, r *http.Request) {
	cw := ch.ResponseWriter(w)
	ch.Run(func() { next.ServeHTTP(cw, r) }, nil)
}

func (ch *Charge) finish(commit func()) {
	status := ch.status
	switch {
	case ch.c == nil: // a Charge that Begin did not make: nothing to settle
		return
	case !ch.returned || ch.hijacked: // a panic, runtime.Goexit, or a hijack
		status = 0
	case status == 0 && detach.ClientGone(ch.detached.Parent): // nothing written, client gone
	case status == 0: // nothing written: the framework answers now
		if commit != nil {
			commit()
		}
		if ch.status == 0 { // net/http answers 200 when the handler returns
			var h http.Header
			if ch.sw.W != nil {
				h = ch.sw.W.Header()
			}
			ch.sawStatus(h, http.StatusOK)
		}
		status = ch.status
	}
	if err := ch.Settle(status); err != nil {
		level := slog.LevelError
		if errors.Is(err, credit.ErrReservationExpired) {
			level = slog.LevelWarn
		}
		ch.c.errors.logger().LogAttrs(&ch.detached, level, "keyward: settling credits failed; the call is not charged", slog.String("requestId", ch.reqID),
			slog.String("orgId", ch.acct.OrgID), slog.Int64("reservationId", ch.res.ID), slog.Int("status", status), slog.Any("error", err))
	}
}

// sawStatus records the first final status the handler sends and, for a
// 2xx, sets the credit headers in h (when not nil) before it goes out.
func (ch *Charge) sawStatus(h http.Header, code int) {
	if ch.status != 0 || !statuswriter.Final(code) {
		return
	}
	ch.status = code
	if code >= 200 && code <= 299 && h != nil {
		ch.SetResponseHeaders(h)
	}
}

// chargeObserver is the Charge as its statuswriter sees it.
type chargeObserver Charge

func (o *chargeObserver) Sending(h http.Header, code int) { (*Charge)(o).sawStatus(h, code) }
func (o *chargeObserver) Sent() bool                      { return o.status != 0 }
func (o *chargeObserver) Hijacked()                       { o.hijacked = true }
func (o *chargeObserver) NotSent(h http.Header) {
	o.status = 0
	h.Del(HeaderCreditsRemaining)
	h.Del(HeaderIdempotentReplayed)
}

// renewAt is when to renew a reservation that expires at expires: a third
// of the way there, on the shared clock (the rest is slack for a busy
// machine or a slow ledger), at least 100 ms and at most
// credit.DefaultReservationTTL/3 from now.
func renewAt(expires time.Time) int64 {
	now := clock.Process.UnixNano()
	return now + min(max((expires.UnixNano()-now)/3, int64(100*time.Millisecond)), int64(credit.DefaultReservationTTL/3))
}

// chargeRenewer is a Charge as internal/keepalive sees it.
type chargeRenewer Charge

// Renew extends the call's reservation while its handler runs, so that a
// live call's reservation never expires under it (a slow handler, a client
// that sends or reads slowly): only a dead process's reservation expires.
// The Charger's keepalive.Set runs it, bounds each call to 10 s, and gives
// a call up after a day (a Charge an adapter began and never settled).
func (r *chargeRenewer) Renew(ctx context.Context) (int64, bool) {
	ch := (*Charge)(r)
	expires, err := ch.c.ledger.Extend(ctx, ch.acct, ch.res.ID)
	switch {
	case err == nil:
		return renewAt(expires), true
	case errors.Is(err, credit.ErrReservationExpired) || errors.Is(err, credit.ErrReservationNotFound):
		// Settled meanwhile, or lost: either way nothing is left to renew.
		return 0, false
	}
	ch.c.errors.logger().LogAttrs(&ch.detached, slog.LevelWarn, "keyward: renewing a running call's reservation failed; retrying",
		slog.String("requestId", ch.reqID), slog.String("orgId", ch.acct.OrgID), slog.Int64("reservationId", ch.res.ID), slog.Any("error", err))
	return clock.Process.UnixNano() + int64(time.Second), true
}

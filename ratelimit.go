package keyward

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/internal/hooks"
	"github.com/keyward/keyward/internal/policy"
	"github.com/keyward/keyward/rate"
)

// RateLimitConfig configures RateLimitByOrg. Every zero value means the
// default said beside it.
type RateLimitConfig struct {
	// Store keeps each organization's limits: its per-second bucket, its
	// per-minute quota, its requests in flight, and the quotas of its keys
	// that have their own. Nil: one rate.Memory for the process, shared by
	// every RateLimiter without a Store, so an organization's limits hold
	// across routes. Use redislimit when several instances share the
	// limits; rate.Ulule plugs any ulule limiter.Store in for the quotas.
	Store rate.Store
	// FailClosed answers 503 when the Store fails. Zero (false): fail
	// open — the request is served without rate-limit headers and the
	// failure is logged (at most once a second).
	FailClosed bool
	// UnixReset writes X-RateLimit-Reset in Unix seconds. Zero: an
	// ISO-8601 time (RFC 3339, UTC), as Triqai does.
	UnixReset bool
	// Errors writes every failure. Nil: the defaults of ErrorWriter.
	Errors *ErrorWriter
	// Logger receives store failures in fail-open mode. Nil:
	// slog.Default().
	Logger *slog.Logger
	// Now is the limiter's clock. Nil: the system clock, read through a
	// shared clock that advances every 10 ms. It is only a clock: whether
	// limiters share their counts is the Store's to say, so a limiter on a
	// clock of its own (a test's) is given a Store of its own, since the
	// process's forgets organizations idle for a minute of its clock.
	Now func() time.Time
}

// RateLimiter holds each organization, across all of its keys, to the
// three limits of its plan (Organization.Limits): a token bucket of
// RequestsPerSecond holding Burst requests, RequestsPerMinute over any 60
// seconds, and Concurrency requests in flight; and each key with a limit
// of its own to that many requests a minute: RateLimitByOrg. A request is
// refused (429) by the first limit it would break, in that order, and then
// counts against none. Its Middleware is the net/http handler; adapters
// for other routers call Check, RateDecision.WriteHeaders, then Done when
// the request ends, and WriteError. It is safe for concurrent use.
type RateLimiter struct {
	store      rate.Store
	failClosed bool
	errors     *ErrorWriter
	logger     *slog.Logger
	now        func() time.Time // nil: time.Now
	lastLog    atomic.Int64     // Unix nanoseconds of the last fail-open log record
	reset      policy.Reset
	policies   policy.Last
}

// RateLimitByOrg returns the RateLimiter cfg describes.
func RateLimitByOrg(cfg RateLimitConfig) (*RateLimiter, error) {
	l := &RateLimiter{store: cfg.Store, failClosed: cfg.FailClosed, errors: cfg.Errors,
		logger: cmp.Or(cfg.Logger, slog.Default()), now: cfg.Now, reset: policy.Reset{Unix: cfg.UnixReset}}
	return l, nil
}

// RateDecision is the outcome of RateLimiter.Allow for one request.
type RateDecision struct {
	// Allowed is false when a limit refused the request.
	Allowed bool
	// Scope is the limit that refused it: rate.PerSecond ("rps"),
	// rate.PerMinute ("rpm"), rate.KeyPerMinute ("key") or rate.InFlight
	// ("concurrency"); "" when allowed.
	Scope rate.Scope
	// Limit, Remaining and Reset are X-RateLimit-Limit, -Remaining and
	// -Reset: the per-second bucket's (rate.Request.Headline), or when
	// refused the refusing limit's (Scope), 0, and when it admits again.
	Limit, Remaining int64
	Reset            time.Time
	// RetryAfter is, when refused, the wait until the same request would
	// pass the limit that refused it.
	RetryAfter time.Duration
	// Concurrency and InFlight are the organization's cap on requests in
	// flight and how many run now, this one included when allowed.
	Concurrency, InFlight int64

	limits   Limits
	keyLimit int64
	res      rate.Result
	org      string        // the account the slot is held in
	store    rate.Store    // where the slot is held; nil: none
	st       *requestState // where header values are kept, if any
	l        *RateLimiter
}

// Allow decides one request of k's organization (and of k, if it has its
// own limit) at now: counted in every limit and holding an in-flight slot
// if allowed (give it back with Done), counted in none if refused. The
// error is an *Error: 500 when the organization has no limits, or the
// store's failure as a 503 (Check serves the request anyway in fail-open
// mode).
func (l *RateLimiter) Allow(ctx context.Context, k *KeyRecord, now time.Time) (RateDecision, error) {
	var d RateDecision
	err := l.allow(ctx, k, now, &d)
	return d, err
}

// allow is Allow into d (left zero on an error): a decision is large, and
// Middleware's is never copied.
func (l *RateLimiter) allow(ctx context.Context, k *KeyRecord, now time.Time, d *RateDecision) error {
	if k == nil {
		return misconfigured("RateLimiter.Allow was given no key")
	}
	limits, err := limitsOf(k)
	if err != nil {
		return err
	}
	org, _ := k.budget() // a test key counts apart from live ones
	store := l.store
	if store == nil {
		store = &processLimits
	}
	req := rate.Request{Org: org, Key: k.ID, PerSecond: limits.RequestsPerSecond, Burst: limits.Burst,
		PerMinute: limits.RequestsPerMinute, Concurrency: limits.Concurrency, KeyPerMinute: k.RatePerMinute, Now: now}
	res, err := store.Take(ctx, req)
	limit, remaining, reset := req.Headline(res)
	if errors.Is(err, rate.ErrBadRequest) { // limits a KeyStore resolved out of range
		return misconfigured("organization " + strconv.Quote(k.Org.ID) + ": " + err.Error())
	} else if err != nil {
		hooks.LimiterFailed(ctx)
		return ServiceUnavailable("rate limiter", err)
	}
	*d = RateDecision{Allowed: res.Refused == "", Scope: res.Refused, Limit: limit,
		Remaining: remaining, Reset: now.Add(reset), RetryAfter: res.Wait,
		Concurrency: limits.Concurrency, InFlight: res.InFlight,
		limits: limits, keyLimit: k.RatePerMinute, res: res, org: org, l: l}
	if res.Slot != 0 {
		d.store = store
	}
	return nil
}

// Done gives the decision's in-flight slot back: call it once the request
// ends, whatever its outcome (Middleware does). A second call, or a call
// on a refused decision, does nothing.
func (d *RateDecision) Done() {
	if d.store != nil {
		d.store.Release(d.org, d.res.Slot)
		d.store = nil
	}
}

// Check decides one request: Allow for the key in r's context at the
// limiter's clock, with the rule for a failing store. It writes nothing
// (it logs a fail-open store failure, at most once a second). Set the
// decision's headers (WriteHeaders; none when the store failed open), then
// serve on a nil error, and call Done when the request ends; or write the
// error: 429 over a limit, 500 without RequireAPIKey in front or for an
// organization without limits, 503 when the store failed and FailClosed
// is set.
func (l *RateLimiter) Check(r *http.Request) (RateDecision, error) {
	var d RateDecision
	err := l.check(r, &d)
	return d, err
}

// check is Check into d.
func (l *RateLimiter) check(r *http.Request, d *RateDecision) (err error) {
	st, k, err := callerOf(r.Context(), "RateLimitByOrg")
	defer func() { observe(r.Context(), st, hooks.RateLimit, nil, err) }()
	if err != nil {
		return err
	}
	// The system clock itself, not a coarse one: a client that paces itself
	// at exactly the advertised rate (Triqai's own does) leaves the bucket
	// a few milliseconds of margin, less than a coarse clock's lag.
	now := time.Now
	if l.now != nil {
		now = l.now
	}
	if err = l.allow(r.Context(), k, now(), d); err != nil {
		var e *Error
		if !l.failClosed && errors.As(err, &e) && e.Code == CodeServiceUnavailable {
			hooks.FailedOpen(r.Context())
			l.logFailOpen(r, k, e.Cause)
			*d = RateDecision{Allowed: true}
			return nil
		}
		return err
	}
	if d.st = st; !d.Allowed {
		return d.refusal()
	}
	return nil
}

// WriteHeaders sets (never adds) the rate-limit headers of d on h, as
// Triqai's clients read them: X-RateLimit-Limit, -Remaining and -Reset
// (RateDecision.Limit), X-RateLimit-Concurrency-Limit and -Remaining;
// and the IETF draft fields RateLimit-Policy and RateLimit for every
// limit ("rps", "rpm", "key" when the key has its own, "concurrency").
// A decision without limits (none made, or the store failed open) sets
// nothing. X-RateLimit-Scope is on the 429 (WriteError).
func (d *RateDecision) WriteHeaders(h http.Header) {
	if d.l == nil {
		return
	}
	strs := d.l.policies.Of(policy.Limits{PerSecond: d.limits.RequestsPerSecond, PerMinute: d.limits.RequestsPerMinute,
		KeyPerMinute: d.keyLimit, Concurrency: d.Concurrency})
	now := policy.CurrentOf(d.res.Second, d.res.Minute, d.res.Key, d.keyLimit > 0, max(d.Concurrency-d.InFlight, 0))
	h["X-Ratelimit-Limit"] = d.st.headerValue(strs.Decimal(d.Limit))
	h["X-Ratelimit-Remaining"] = d.st.headerValue(now.Decimal(d.Remaining))
	h["X-Ratelimit-Reset"] = d.st.headerValue(d.l.reset.Text(d.Reset))
	h["X-Ratelimit-Concurrency-Limit"] = d.st.headerValue(strs.Concurrency)
	h["X-Ratelimit-Concurrency-Remaining"] = d.st.headerValue(now.InFlight)
	h["Ratelimit-Policy"] = d.st.headerValue(strs.Policy)
	h["Ratelimit"] = d.st.headerValue(now.Field)
}

// refusal is the 429 of a refused decision.
func (d *RateDecision) refusal() *Error {
	return rateLimited(d.Scope, d.Limit, d.Reset, d.RetryAfter)
}

// WriteError writes an error of Check with l's ErrorWriter.
func (l *RateLimiter) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	l.errors.WriteError(w, r, err)
}

// Middleware runs Check: it sets the rate-limit headers, then calls next
// and gives the in-flight slot back when next returns (or panics), or
// writes the error (429, 500, 503).
func (l *RateLimiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var d RateDecision
		err := l.check(r, &d)
		d.WriteHeaders(w.Header())
		if err != nil {
			l.errors.WriteError(w, r, err)
			return
		}
		defer d.Done()
		next.ServeHTTP(w, r)
	})
}

// logFailOpen logs a store failure at most once a second, so that an
// outage under load does not flood the log.
func (l *RateLimiter) logFailOpen(r *http.Request, k *KeyRecord, cause error) {
	now, last := time.Now().UnixNano(), l.lastLog.Load()
	if now-last < int64(time.Second) || !l.lastLog.CompareAndSwap(last, now) {
		return
	}
	id, _ := incomingRequestID(r)
	l.logger.LogAttrs(r.Context(), slog.LevelWarn, "keyward: rate limiter store failed; request served without a limit (fail open)",
		slog.String("requestId", id), slog.String("org", k.Org.ID), slog.Any("error", cause))
}

// processLimits are the default store: one per process.
var processLimits rate.Memory

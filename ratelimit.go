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

	"github.com/keyward/keyward/internal/clock"
	"github.com/keyward/keyward/internal/window"
	"github.com/ulule/limiter/v3"
)

// rateWindow is the length of a rate-limit window: plans are priced in
// requests per minute.
const rateWindow = time.Minute

// RateLimitConfig configures RateLimitByOrg. Every zero value means the
// default said beside it.
type RateLimitConfig struct {
	// Store keeps the counters: one per organization (and one per key that
	// has its own limit) per window, under keys "org:ID:WINDOW" and
	// "key:ID:WINDOW" (the store adds its own prefix). Nil: in-process
	// counters, one set shared by every RateLimiter on the system clock, so
	// an organization's limit holds across routes. Use ulule's Redis store
	// (package redislimit) when several instances share the limit; any
	// other limiter.Store works too.
	Store limiter.Store
	// FailClosed answers 503 when the Store fails. Zero (false): fail
	// open — the request is served without rate-limit headers and the
	// failure is logged (at most once a second).
	FailClosed bool
	// Errors writes every failure. Nil: the defaults of ErrorWriter.
	Errors *ErrorWriter
	// Logger receives store failures in fail-open mode. Nil:
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock that places a request in its window. Nil: the
	// system clock, read through a shared clock that advances every 10 ms.
	// Without a Store, a limiter with a clock of its own keeps its counters.
	Now func() time.Time
}

// RateLimiter limits each organization, across all of its keys, to its
// requests per minute (Organization.Limits), and each key with a limit of
// its own to that: RateLimitByOrg. Windows are fixed and aligned to the
// minute (UTC), so every instance sharing a store agrees on them, and a
// counter that lost its expiry in the store stops mattering when its window
// ends. Its Middleware is the net/http handler; adapters for other routers
// call Check, RateDecision.WriteHeaders and WriteError. It is safe for
// concurrent use.
type RateLimiter struct {
	store      limiter.Store    // nil: counters
	counters   *window.Counters // nil: processCounters
	failClosed bool
	errors     *ErrorWriter
	logger     *slog.Logger
	now        func() time.Time // nil: clock.Process
	lastLog    atomic.Int64     // Unix nanoseconds of the last fail-open log record
}

// RateLimitByOrg returns the RateLimiter cfg describes.
func RateLimitByOrg(cfg RateLimitConfig) (*RateLimiter, error) {
	l := &RateLimiter{store: cfg.Store, failClosed: cfg.FailClosed, errors: cfg.Errors, logger: cfg.Logger, now: cfg.Now}
	l.logger = cmp.Or(l.logger, slog.Default())
	if l.now != nil {
		l.counters = new(window.Counters)
	}
	return l, nil
}

// RateDecision is the outcome of RateLimiter.Allow for one request.
type RateDecision struct {
	// Allowed is false when the organization (or the key) is over its
	// limit in this window.
	Allowed bool
	// Limit, Remaining and Reset describe the binding counter: the one
	// with the fewest requests left.
	Limit     int64
	Remaining int64
	Reset     time.Time
	// RetryAfter is the time until the window ends.
	RetryAfter time.Duration

	counted  [2]counted // the counters of this request: [:n]
	n        int
	binding  int           // the index in counted of the binding counter
	resetStr string        // Reset in Unix seconds
	st       *requestState // where header values are kept, if any
}

// counted is one counter's part in a decision.
type counted struct {
	name      string // "org" or "key"
	limit     int64
	remaining int64
	strs      *window.Strings
}

// Allow counts one request of k's organization (and of k, if it has its
// own limit) in the window of now, and says whether it may go on. The
// error is an *Error: 500 when the organization has no rate, or the
// store's failure as a 503 (Check serves the request anyway in fail-open
// mode).
func (l *RateLimiter) Allow(ctx context.Context, k *KeyRecord, now time.Time) (RateDecision, error) {
	if k == nil {
		return RateDecision{}, misconfigured("RateLimiter.Allow was given no key")
	}
	limits, err := limitsOf(k)
	if err != nil {
		return RateDecision{}, err
	}
	orgRate := limits.RequestsPerMinute
	win := now.Unix() / int64(rateWindow/time.Second)
	reset := time.Unix((win+1)*int64(rateWindow/time.Second), 0)
	d := RateDecision{Allowed: true, Reset: reset, RetryAfter: reset.Sub(now)}
	if k.RatePerMinute > 0 {
		c, err := l.count(ctx, &d, "key", k.ID, k.RatePerMinute, win)
		if err != nil {
			return RateDecision{}, err
		}
		if c.remaining < 0 {
			// The key is over its own limit: the organization's budget is
			// not touched.
			d.Allowed, d.Limit, d.Remaining = false, c.limit, 0
			return d, nil
		}
	}
	budget, _ := k.budget() // a test key counts apart from live ones
	c, err := l.count(ctx, &d, "org", budget, orgRate, win)
	if err != nil {
		return RateDecision{}, err
	}
	d.Allowed, d.Limit, d.Remaining = c.remaining >= 0, c.limit, max(c.remaining, 0)
	if d.n == 2 {
		key := d.counted[0]
		d.counted[0], d.counted[1] = c, key // the headers list the organization first
		if key.remaining < d.Remaining {
			d.Limit, d.Remaining, d.binding = key.limit, key.remaining, 1
		}
	}
	return d, nil
}

// count adds one request to the counter of (scope, id, window), adds its
// part to d and returns it; remaining < 0 means over the limit.
func (l *RateLimiter) count(ctx context.Context, d *RateDecision, scope, id string, limit, win int64) (counted, error) {
	c := counted{name: scope, limit: limit}
	if l.store == nil {
		mc := cmp.Or(l.counters, &processCounters).Get(window.Key{Scope: scope, ID: id, Window: win}, rateWindow)
		c.remaining = limit - mc.N.Add(1)
		c.strs = mc.StringsFor(scope, limit, rateWindow)
		d.resetStr = mc.Reset
	} else {
		res, err := l.store.Get(ctx, scope+":"+id+":"+strconv.FormatInt(win, 10),
			limiter.Rate{Period: rateWindow, Limit: limit})
		if err != nil {
			return counted{}, ServiceUnavailable("rate limiter", err)
		}
		c.remaining = res.Remaining
		if res.Reached {
			c.remaining = -1
		}
		c.strs = window.NewStrings(scope, limit, rateWindow)
		d.resetStr = strconv.FormatInt(d.Reset.Unix(), 10)
	}
	d.counted[d.n] = c
	d.n++
	return c, nil
}

// Check decides one request: Allow for the key in r's context at the
// limiter's clock, with the rule for a failing store. It writes nothing
// (it logs a fail-open store failure, at most once a second). Set the
// decision's headers (WriteHeaders; none when the store failed open), then
// serve on a nil error or write the error: 429 over the limit, 500 without
// RequireAPIKey in front or for an organization without limits, 503 when
// the store failed and FailClosed is set.
func (l *RateLimiter) Check(r *http.Request) (RateDecision, error) {
	st, k, err := callerOf(r.Context(), "RateLimitByOrg")
	if err != nil {
		return RateDecision{}, err
	}
	now := clock.Process.Now // the system clock, read every 10 ms (a zero RateLimiter too)
	if l.now != nil {
		now = l.now
	}
	d, err := l.Allow(r.Context(), k, now())
	d.st = st
	if err != nil {
		var e *Error
		if !l.failClosed && errors.As(err, &e) && e.Code == CodeServiceUnavailable {
			l.logFailOpen(r, k, e.Cause)
			return RateDecision{Allowed: true}, nil
		}
		return RateDecision{}, err
	}
	if !d.Allowed {
		return d, rateLimited(d.Limit, d.Remaining, d.Reset, d.RetryAfter)
	}
	return d, nil
}

// WriteHeaders sets (never adds) the rate-limit headers of d on h:
// X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset (Unix
// seconds) for the binding counter, and the IETF draft fields
// RateLimit-Policy and RateLimit for every counter, as Allow counted them.
// A decision without counters sets nothing.
func (d *RateDecision) WriteHeaders(h http.Header) {
	if d.n == 0 {
		return
	}
	t := max(int64((d.RetryAfter+time.Second-1)/time.Second), 0)
	// Every number that changes per request is in the RateLimit field;
	// X-RateLimit-Remaining is a piece of it, so that the whole set costs
	// one string.
	var buf [96]byte
	b := buf[:0]
	var from, to int
	for i, c := range d.counted[:d.n] {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(append(append(b, '"'), c.name...), `";r=`...)
		n := len(b)
		if b = strconv.AppendInt(b, max(c.remaining, 0), 10); i == d.binding {
			from, to = n, len(b)
		}
		b = strconv.AppendInt(append(b, ";t="...), t, 10)
	}
	policy := d.counted[0].strs.Policy
	if d.n == 2 {
		policy += ", " + d.counted[1].strs.Policy
	}
	rateLimit := string(b)
	remaining, limit := rateLimit[from:to], d.counted[d.binding].strs.LimitS
	h["X-Ratelimit-Limit"] = d.st.headerValue(limit)
	h["X-Ratelimit-Remaining"] = d.st.headerValue(remaining)
	h["X-Ratelimit-Reset"] = d.st.headerValue(d.resetStr)
	h["Ratelimit-Policy"] = d.st.headerValue(policy)
	h["Ratelimit"] = d.st.headerValue(rateLimit)
}

// WriteError writes an error of Check with l's ErrorWriter.
func (l *RateLimiter) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	l.errors.WriteError(w, r, err)
}

// Middleware runs Check: it sets the rate-limit headers, then calls next
// or writes the error (429, 500, 503).
func (l *RateLimiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, err := l.Check(r)
		d.WriteHeaders(w.Header())
		if err != nil {
			l.errors.WriteError(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// logFailOpen logs a store failure at most once a second, so that an
// outage under load does not flood the log.
func (l *RateLimiter) logFailOpen(r *http.Request, k *KeyRecord, cause error) {
	now := time.Now().UnixNano()
	last := l.lastLog.Load()
	if now-last < int64(time.Second) || !l.lastLog.CompareAndSwap(last, now) {
		return
	}
	l.logger.LogAttrs(r.Context(), slog.LevelWarn, "keyward: rate limiter store failed; request served without a limit (fail open)",
		slog.String("org", k.Org.ID), slog.Any("error", cause))
}

// processCounters are the default store: one set per process.
var processCounters window.Counters

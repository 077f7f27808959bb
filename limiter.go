package keyward

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/keyward/keyward/internal/clock"
	"github.com/ulule/limiter/v3"
)

// RateWindow is the length of a rate-limit window: plans are priced in
// requests per minute.
const RateWindow = time.Minute

// DefaultRateLimitPrefix prefixes every counter key that keyward writes to
// a limiter store.
const DefaultRateLimitPrefix = "keyward"

// RateLimitConfig configures RateLimitByOrg. Every zero value means the
// default said beside it; every other problem is an error from
// NewRateLimiter.
type RateLimitConfig struct {
	// Store keeps the counters: one per organization (and one per key that
	// has its own limit) per window. Nil: keyward's in-process counters,
	// which are right for one process: each is found once per window and
	// then counted with one atomic add. Use ulule's Redis store (see
	// package redislimit) when several instances share the limit; any
	// other limiter.Store (ulule's memory store among them) works too.
	Store limiter.Store
	// Plans gives each plan's requests per minute; an organization's
	// RatePerMinute overrides its plan's. Nil: DefaultPlans().
	Plans map[string]Plan
	// FailClosed answers 503 when the limiter store fails. Zero (false):
	// fail open — the request is served without rate-limit headers and the
	// failure is logged (at most once a second).
	FailClosed bool
	// Errors writes every failure. Nil: the defaults of ErrorWriter.
	Errors *ErrorWriter
	// Logger receives store failures in fail-open mode. Nil:
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock that places a request in its window. Nil: the
	// system clock, read through a shared clock that advances every 10 ms
	// (one atomic load a request instead of a system clock read).
	Now func() time.Time
}

// RateLimiter decides whether an organization may make one more request in
// the current window. Windows are fixed and aligned to the minute (UTC), so
// every instance sharing a store agrees on them and a counter that lost its
// expiry in the store stops mattering when its window ends (ulule issue
// #233 cannot block an organization for longer than a minute).
//
// It is what RateLimitByOrg runs, exported so that adapters for other
// routers share the decision. It is safe for concurrent use.
type RateLimiter struct {
	store      limiter.Store
	mem        *memCounters // the default store
	plans      map[string]Plan
	failClosed bool
	errors     *ErrorWriter
	logger     *slog.Logger
	now        func() time.Time

	lastLog     atomic.Int64 // Unix nanoseconds of the last fail-open log record
	noPrincipal *Error
}

// NewRateLimiter checks cfg and returns the RateLimiter it describes, or
// every problem in cfg joined into one error.
func NewRateLimiter(cfg RateLimitConfig) (*RateLimiter, error) {
	plans := cfg.Plans
	if plans == nil {
		plans = DefaultPlans()
	}
	var errs []error
	for name, p := range plans {
		if p.RequestsPerMinute < 0 {
			errs = append(errs, &ConfigError{Field: "RateLimitConfig.Plans[" + strconv.Quote(name) + "]", Problem: "has a negative rate"})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	l := &RateLimiter{
		store:       cfg.Store,
		plans:       make(map[string]Plan, len(plans)),
		failClosed:  cfg.FailClosed,
		errors:      cfg.Errors,
		logger:      cfg.Logger,
		now:         cfg.Now,
		noPrincipal: Misconfigured("RateLimitByOrg needs RequireAPIKey in front of it"),
	}
	for k, v := range plans {
		l.plans[k] = v
	}
	if l.store == nil {
		l.mem = &memCounters{}
	}
	if l.logger == nil {
		l.logger = slog.Default()
	}
	if l.now == nil {
		l.now = clock.Process.Now
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

	state                      *limitState
	buf                        *rateHeaderBuf // from the request state, if any
	keyBinding                 bool
	orgRemaining, keyRemaining int64 // -1: not counted in this request
}

// limitState is what one Principal needs from one RateLimiter in one
// window: the counter keys and the header values that do not change within
// the window. It is built once per window and shared, so that the hot path
// builds no strings for them.
type limitState struct {
	owner    *RateLimiter
	window   int64
	org, key rateSpec
	policy   string // RateLimit-Policy

	resetUnix int64  // the window's end, Unix seconds
	resetStr  string // the same, formatted
}

type rateSpec struct {
	counter  string      // counter key in the store; "" for none
	mem      *memCounter // the counter itself, with the default store
	rate     limiter.Rate
	limitStr string
}

// principalLimits hangs off a Principal: the last limitState built for it.
type principalLimits struct {
	state atomic.Pointer[limitState]
}

func (l *RateLimiter) stateFor(p *Principal, window int64) (*limitState, error) {
	if p.limits != nil {
		if st := p.limits.state.Load(); st != nil && st.owner == l && st.window == window {
			return st, nil
		}
	}
	orgRate := p.Key.Org.RatePerMinute
	if orgRate <= 0 {
		orgRate = l.plans[p.Key.Org.Plan].RequestsPerMinute
	}
	if orgRate <= 0 {
		return nil, Misconfigured("organization " + strconv.Quote(p.OrgID) + " has no request rate: plan " +
			strconv.Quote(p.Key.Org.Plan) + " is not in the plan table and no RatePerMinute is set")
	}
	w := strconv.FormatInt(window, 10)
	st := &limitState{owner: l, window: window}
	st.resetUnix = (window + 1) * int64(RateWindow/time.Second)
	st.resetStr = strconv.FormatInt(st.resetUnix, 10)
	st.org = rateSpec{
		counter:  "org:" + p.OrgID + ":" + w,
		rate:     limiter.Rate{Period: RateWindow, Limit: orgRate},
		limitStr: strconv.FormatInt(orgRate, 10),
	}
	secs := strconv.FormatInt(int64(RateWindow/time.Second), 10)
	st.policy = `"org";q=` + st.org.limitStr + ";w=" + secs
	if kr := p.Key.RatePerMinute; kr > 0 {
		st.key = rateSpec{
			counter:  "key:" + p.KeyID + ":" + w,
			rate:     limiter.Rate{Period: RateWindow, Limit: kr},
			limitStr: strconv.FormatInt(kr, 10),
		}
		st.policy += `, "key";q=` + st.key.limitStr + ";w=" + secs
	}
	if l.mem != nil {
		st.org.mem = l.mem.get(st.org.counter, window)
		if st.key.counter != "" {
			st.key.mem = l.mem.get(st.key.counter, window)
		}
	}
	if p.limits != nil {
		p.limits.state.Store(st)
	}
	return st, nil
}

// Allow counts one request of p's organization (and of p's key, if it has
// its own limit) in the window of now, and says whether it may go on. The
// error is an *Error: 500 when p's organization has no rate, or the store's
// failure wrapped as a 503 (RateLimitByOrg serves the request anyway in
// fail-open mode).
func (l *RateLimiter) Allow(ctx context.Context, p *Principal, now time.Time) (RateDecision, error) {
	window := now.Unix() / int64(RateWindow/time.Second)
	st, err := l.stateFor(p, window)
	if err != nil {
		return RateDecision{}, err
	}
	d := RateDecision{Allowed: true, Reset: time.Unix(st.resetUnix, 0),
		RetryAfter: time.Duration(st.resetUnix*int64(time.Second) - now.UnixNano()),
		state:      st, orgRemaining: -1, keyRemaining: -1}
	if st.key.counter != "" {
		remaining, reached, err := l.count(ctx, &st.key)
		if err != nil {
			return RateDecision{}, err
		}
		d.keyRemaining = remaining
		if reached {
			// The key is over its own limit: the organization's budget is
			// not touched.
			d.Allowed, d.Limit, d.Remaining, d.keyBinding = false, st.key.rate.Limit, 0, true
			return d, nil
		}
	}
	remaining, reached, err := l.count(ctx, &st.org)
	if err != nil {
		return RateDecision{}, err
	}
	d.orgRemaining = remaining
	d.Allowed, d.Limit, d.Remaining = !reached, st.org.rate.Limit, remaining
	if d.keyRemaining >= 0 && d.keyRemaining < d.Remaining {
		d.Limit, d.Remaining, d.keyBinding = st.key.rate.Limit, d.keyRemaining, true
	}
	return d, nil
}

// count adds one request to a counter and returns what is left of its
// limit and whether it is exceeded.
func (l *RateLimiter) count(ctx context.Context, spec *rateSpec) (remaining int64, reached bool, err error) {
	if spec.mem == nil {
		c, err := l.store.Get(ctx, spec.counter, spec.rate)
		if err != nil {
			return 0, false, ServiceUnavailable("rate limiter", err)
		}
		return c.Remaining, c.Reached, nil
	}
	n := spec.mem.n.Add(1)
	if n > spec.rate.Limit {
		return 0, true, nil
	}
	return spec.rate.Limit - n, false, nil
}

// memCounters are the default store's counters: one per counter key (which
// names its window), found once per window by each Principal's limitState
// and then counted with an atomic add: no clock read, lock or map lookup
// per request. Counters of windows that ended are swept when a later
// window is first seen. The sweep goes by the system clock as well as by
// the windows asked for: a request stamped far ahead (an injected clock, a
// wall clock stepped forward, Allow called with any time) never removes the
// counters of the window the system clock is in, or of the one before, so
// an organization's count is never split.
type memCounters struct {
	m     sync.Map     // counter key → *memCounter
	swept atomic.Int64 // the last window a sweep was started for
}

type memCounter struct {
	window int64
	n      atomic.Int64
}

// get returns the counter of key, which belongs to window, creating it if
// needed.
func (m *memCounters) get(key string, window int64) *memCounter {
	if c, ok := m.m.Load(key); ok {
		return c.(*memCounter)
	}
	c, loaded := m.m.LoadOrStore(key, &memCounter{window: window})
	if !loaded {
		// Once per counter and window, not per request: the clock read is
		// affordable here.
		w := min(window, time.Now().Unix()/int64(RateWindow/time.Second))
		if last := m.swept.Load(); w > last && m.swept.CompareAndSwap(last, w) && last != 0 {
			// Keep the previous window: a request whose clock read came
			// just before the boundary may still count in it.
			go m.sweep(w - 1)
		}
	}
	return c.(*memCounter)
}

// sweep forgets the counters of windows before keep.
func (m *memCounters) sweep(keep int64) {
	m.m.Range(func(k, v any) bool {
		if v.(*memCounter).window < keep {
			m.m.Delete(k)
		}
		return true
	})
}

// Canonical header names, written straight into the header map.
const (
	hdrLimit     = "X-Ratelimit-Limit"
	hdrRemaining = "X-Ratelimit-Remaining"
	hdrReset     = "X-Ratelimit-Reset"
	hdrPolicy    = "Ratelimit-Policy"
	hdrRateLimit = "Ratelimit"
)

// WriteHeaders sets (never adds) the rate-limit headers of d on h:
// X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset (Unix
// seconds) for the binding counter, and the IETF draft fields
// RateLimit-Policy and RateLimit for every counter. It makes two
// allocations whatever the number of headers, none for a decision of
// Check on a request from RequireAPIKey (AttachPrincipal): the values are
// then built in the request's state.
func (d *RateDecision) WriteHeaders(h http.Header) {
	st := d.state
	if st == nil {
		return
	}
	buf := d.buf
	if buf == nil || !buf.used.CompareAndSwap(false, true) {
		buf = new(rateHeaderBuf)
	}
	t := int64((d.RetryAfter + time.Second - 1) / time.Second)
	if t < 0 {
		t = 0
	}
	// The RateLimit field is built in one buffer and made one string; the
	// binding counter's remaining count is sliced out of it. The buffer is
	// written once, here, before the string is made of it; if the values
	// outgrow it, append moves them to new memory.
	b := buf.b[:0]
	var r0, r1 int // the binding counter's remaining count in b
	if d.orgRemaining >= 0 {
		b = append(b, `"org";r=`...)
		n := len(b)
		b = strconv.AppendInt(b, d.orgRemaining, 10)
		if !d.keyBinding && d.orgRemaining == d.Remaining {
			r0, r1 = n, len(b)
		}
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, t, 10)
	}
	if d.keyRemaining >= 0 {
		if d.orgRemaining >= 0 {
			b = append(b, ", "...)
		}
		b = append(b, `"key";r=`...)
		n := len(b)
		b = strconv.AppendInt(b, d.keyRemaining, 10)
		if d.keyBinding && d.keyRemaining == d.Remaining {
			r0, r1 = n, len(b)
		}
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, t, 10)
	}
	rateLimit := len(b)
	if r1 == 0 {
		// Not one of the counters (a decision made by hand).
		r0 = len(b)
		b = strconv.AppendInt(b, d.Remaining, 10)
		r1 = len(b)
	}
	s := unsafe.String(unsafe.SliceData(b), len(b))
	reset := st.resetStr
	if d.Reset.Unix() != st.resetUnix {
		reset = strconv.FormatInt(d.Reset.Unix(), 10)
	}
	vals := buf.vals[:]
	vals[0] = st.org.limitStr
	if d.keyBinding {
		vals[0] = st.key.limitStr
	}
	vals[1], vals[2], vals[3], vals[4] = s[r0:r1], reset, st.policy, s[:rateLimit]
	h[hdrLimit] = vals[0:1:1]
	h[hdrRemaining] = vals[1:2:2]
	h[hdrReset] = vals[2:3:3]
	h[hdrPolicy] = vals[3:4:4]
	h[hdrRateLimit] = vals[4:5:5]
}

// rateHeaderBuf holds the values of one response's rate-limit headers. The
// first WriteHeaders to set used writes it, once: the strings made of it
// are never changed.
type rateHeaderBuf struct {
	used atomic.Bool
	b    [48]byte
	vals [5]string
}

// Err returns the 429 for a refused decision, nil for an allowed one.
func (d *RateDecision) Err() *Error {
	if d.Allowed {
		return nil
	}
	return RateLimited(d.Limit, d.Remaining, d.Reset, d.RetryAfter)
}

// Check decides one request: it runs Allow for the Principal in r's
// context at the limiter's clock, and applies the rule for a failing
// store. It writes nothing (it logs a fail-open store failure, at most once
// a second). The answer is one of:
//   - an allowed decision and nil: set its headers (WriteHeaders) and serve;
//   - a refused decision and its 429 (d.Err()): set its headers, write the
//     error;
//   - an allowed decision without counters and nil: the store failed and
//     the limiter fails open: serve without rate-limit headers (its
//     WriteHeaders sets none);
//   - a zero decision and an *Error: 500 without a Principal (RequireAPIKey
//     not in front) or for an organization without a rate, 503 when the
//     store failed and FailClosed is set: write the error.
//
// It is what RateLimitByOrg runs, exported so that adapters for other
// routers share the decision; WriteError writes its errors.
func (l *RateLimiter) Check(r *http.Request) (RateDecision, error) {
	p, ok := FromContext(r.Context())
	if !ok {
		return RateDecision{}, l.noPrincipal
	}
	d, err := l.Allow(r.Context(), p, l.now())
	d.buf = stateOf(r.Context()).rateHeaders()
	if err != nil {
		var e *Error
		if !l.failClosed && errors.As(err, &e) && e.Code == CodeServiceUnavailable {
			l.logFailOpen(r, p, e.Cause)
			return RateDecision{Allowed: true}, nil
		}
		return RateDecision{}, err
	}
	if !d.Allowed {
		return d, d.Err()
	}
	return d, nil
}

// WriteError writes err (an error of Check) with the limiter's
// ErrorWriter.
func (l *RateLimiter) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	l.errors.WriteError(w, r, err)
}

// Middleware runs Check for the request's Principal: it sets the
// rate-limit headers, then calls next or answers 429. Without a Principal
// it answers 500. When the store fails it serves the request without
// headers (fail open, logged) or answers 503 (FailClosed).
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
func (l *RateLimiter) logFailOpen(r *http.Request, p *Principal, cause error) {
	now := time.Now().UnixNano()
	last := l.lastLog.Load()
	if now-last < int64(time.Second) || !l.lastLog.CompareAndSwap(last, now) {
		return
	}
	l.logger.LogAttrs(r.Context(), slog.LevelWarn, "keyward: rate limiter store failed; request served without a limit (fail open)",
		slog.String("org", p.OrgID),
		slog.Any("error", cause),
	)
}

// RateLimitByOrg returns the middleware that limits each organization, across
// all of its keys, to its plan's requests per minute (and each key with a
// limit of its own to that). It is NewRateLimiter(cfg).Middleware.
func RateLimitByOrg(cfg RateLimitConfig) (Middleware, error) {
	l, err := NewRateLimiter(cfg)
	if err != nil {
		return nil, err
	}
	return l.Middleware, nil
}

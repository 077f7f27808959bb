// Package rate keeps the rate-limit state of keyward's RateLimitByOrg:
// for each organization a per-second token bucket, a per-minute quota over
// any 60 seconds, and a cap on its requests in flight, decided together
// for one request by a Store. Memory is the default Store, for one
// process; package redislimit has one for several instances, and Ulule
// plugs any github.com/ulule/limiter/v3 store in for the per-minute quota.
//
// The per-second bucket is GCRA, the token bucket's exact equivalent: it
// refills at PerSecond requests a second and holds Burst of them (its
// capacity: that many may start at the same instant). The per-minute quota counts requests in one-second buckets and
// refuses a request when the last 60 of them hold PerMinute; so no 60
// seconds, aligned or not, serve more than PerMinute plus what the
// per-second bucket lets through in under a second (its burst, plus
// PerSecond−1). On Triqai's plans PerMinute is 60 × PerSecond and the
// bucket alone holds any 60 seconds to PerMinute plus its burst.
package rate

import (
	"context"
	"errors"
	"time"
)

// Scope names one of the limits: the value of X-RateLimit-Scope and of
// details.scope in a 429.
type Scope string

// The limits, in the order a Store checks them: a request is refused by
// the first it would break, and then counts against none.
const (
	// PerSecond is the organization's token bucket ("rps", as Triqai).
	PerSecond Scope = "rps"
	// PerMinute is the organization's quota of any 60 seconds.
	PerMinute Scope = "rpm"
	// KeyPerMinute is a key's own, stricter per-minute quota.
	KeyPerMinute Scope = "key"
	// InFlight is the organization's cap on requests running at once
	// ("concurrency", as Triqai).
	InFlight Scope = "concurrency"
)

// Request is one request's claim on its organization's limits. Every limit
// must be > 0 but KeyPerMinute (0: the key has no limit of its own) and
// Burst (0: PerSecond).
type Request struct {
	// Org is the account the limits count in: the organization's id (its
	// test keys count apart, under another id).
	Org string
	// Key is the key's id: KeyPerMinute counts per key.
	Key string
	// PerSecond, PerMinute and Concurrency are the organization's limits;
	// KeyPerMinute the key's.
	PerSecond, PerMinute, Concurrency, KeyPerMinute int64
	// Burst is the per-second bucket's capacity: how many requests may
	// start at the same instant, the bucket being full. Zero: PerSecond
	// (one second of the rate); Capacity says which.
	Burst int64
	// Now is the time of the request. Stores with a clock of their own
	// (Redis's) ignore it.
	Now time.Time
}

// MaxPerMinute bounds every limit of a Request: PerMinute, KeyPerMinute,
// Burst and Concurrency at most MaxPerMinute, PerSecond at most MaxPerMinute/60
// (keyward.MaxRatePerMinute is this bound). One billion a minute is over
// 16 million requests a second; the bound keeps the RateLimit-Policy quota
// within a structured-field integer (15 digits), every rate exact in JSON
// (below 2^53), and every computation of the limits clear of overflow.
const MaxPerMinute = 1_000_000_000

// ErrBadRequest is what a Store answers a Request whose limits are out of
// range: PerSecond, PerMinute or Concurrency ≤ 0, KeyPerMinute or Burst
// < 0, or any above MaxPerMinute (PerSecond above MaxPerMinute/60).
var ErrBadRequest = errors.New("keyward: rate: a request's limits must be positive (KeyPerMinute: 0 for none; Burst: 0 for PerSecond) and at most rate.MaxPerMinute a minute")

// Check returns ErrBadRequest unless r's limits are in range.
func (r Request) Check() error {
	if r.PerSecond <= 0 || r.PerMinute <= 0 || r.Concurrency <= 0 || r.KeyPerMinute < 0 || r.Burst < 0 ||
		r.PerSecond > MaxPerMinute/60 || r.PerMinute > MaxPerMinute || r.Concurrency > MaxPerMinute ||
		r.KeyPerMinute > MaxPerMinute || r.Burst > MaxPerMinute {
		return ErrBadRequest
	}
	return nil
}

// Limit is r's limit named by scope (PerSecond's for any other).
func (r Request) Limit(scope Scope) int64 {
	switch scope {
	case PerMinute:
		return r.PerMinute
	case KeyPerMinute:
		return r.KeyPerMinute
	case InFlight:
		return r.Concurrency
	}
	return r.PerSecond
}

// Headline is what X-RateLimit-Limit, -Remaining and -Reset say of res,
// r's decision: the per-second bucket's rate, remaining requests and time
// until full when allowed; when refused, the limit that refused, 0, and
// the wait until it admits the request (res.Wait), so that a client
// trusting Remaining waits rather than sends.
func (r Request) Headline(res Result) (limit, remaining int64, reset time.Duration) {
	if res.Refused != "" {
		return r.Limit(res.Refused), 0, res.Wait
	}
	return r.PerSecond, res.Second.Remaining, res.Second.Reset
}

// Capacity is the per-second bucket's capacity: Burst, or PerSecond when
// Burst is zero.
func (r Request) Capacity() int64 {
	if r.Burst > 0 {
		return r.Burst
	}
	return r.PerSecond
}

// Window is the state of a rate after a request.
type Window struct {
	// Remaining is how many more requests the limit would let through now.
	Remaining int64
	// Reset is how long until the limit is whole again: the bucket full,
	// or every request counted in the quota out of it.
	Reset time.Duration
}

// Result is a Store's decision for one Request.
type Result struct {
	// Refused is the limit that refused the request; "" when allowed.
	Refused Scope
	// Wait is, when refused, how long until the same request would pass
	// the limit that refused it.
	Wait time.Duration
	// Second, Minute and Key are the per-second bucket, the organization's
	// quota and the key's quota (zero without a KeyPerMinute).
	Second, Minute, Key Window
	// InFlight is how many of the organization's requests run now, this
	// one included when allowed.
	InFlight int64
	// Slot is the in-flight slot an allowed request holds, to give back
	// with Store.Release when it ends; 0 when refused.
	Slot uint64
}

// Store decides requests against every limit of their organization. Take
// counts an allowed request in each limit and takes an in-flight slot for
// it; a refused request counts in none. Release gives a slot of org back;
// a slot it does not hold (given back already, or expired) is ignored.
// Implementations are safe for concurrent use; Take's error is the
// store's failure, which the rate limiter answers as configured (fail open
// or closed).
type Store interface {
	Take(ctx context.Context, req Request) (Result, error)
	Release(org string, slot uint64)
}

// Package redislimit keeps keyward's rate-limit counters in Redis, so that
// every instance of an API shares each organization's limit. It is ulule's
// Redis store (github.com/ulule/limiter/v3/drivers/store/redis, on go-redis
// v9) under keyward's key prefix; give the result to
// keyward.RateLimitConfig.Store.
//
// keyward counts in fixed windows aligned to the minute and puts the window
// in the counter key, so a counter that lost its expiry in Redis (ulule
// issue #233, which otherwise blocks a key for good) stops counting when its
// window ends.
//
// A request's rate-limit check makes one counter call, two when its key has
// a limit of its own. Each call is given Options.Timeout; past it the call
// fails and the request is served unlimited, or refused with a 503, as
// keyward.RateLimitConfig.FailClosed says. The deadline reaches the network
// only on a client that lets it (redis.Options.ContextTimeoutEnabled): make
// the client from ClientOptions, and a frozen or unreachable Redis costs a
// request at most Options.Timeout per call. A client of go-redis's defaults
// waits up to 3 s for each answer and tries four times.
package redislimit

import (
	"context"
	"errors"
	"time"

	"github.com/keyward/keyward"
	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"
	redisstore "github.com/ulule/limiter/v3/drivers/store/redis"
)

// DefaultPrefix prefixes every counter key when Options.Prefix is empty.
const DefaultPrefix = "keyward"

// DefaultTimeout is the Timeout of zero Options and of ClientOptions with
// a zero timeout: a counter call on a healthy network takes well under a
// millisecond, and a quarter of a second is what a frozen Redis may add
// to a request before it is served without a limit.
const DefaultTimeout = 250 * time.Millisecond

// Options configure New.
type Options struct {
	// Prefix prefixes every counter key. Zero: DefaultPrefix.
	// Give each API (or each test) sharing one Redis its own.
	Prefix string
	// Timeout bounds each counter call, and New's own checks (see the
	// package documentation for what it takes of the client). Zero:
	// DefaultTimeout.
	Timeout time.Duration
}

// ClientOptions parses a Redis URL (redis://… or rediss://…, as
// redis.ParseURL) into client options with every wait bounded by timeout
// (zero: DefaultTimeout): dialing, reading, writing and waiting for a
// pooled connection, each at most timeout, and the caller's context
// deadline obeyed on the network (ContextTimeoutEnabled). A failed command
// is not retried: a retry would spend the same request's time budget on a
// server that just failed, and the check fails open (or closed) anyway.
func ClientOptions(url string, timeout time.Duration) (*redis.Options, error) {
	if timeout < 0 {
		return nil, &keyward.ConfigError{Field: "redislimit timeout", Problem: "is negative"}
	}
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = timeout, timeout, timeout, timeout
	opts.ContextTimeoutEnabled = true
	opts.MaxRetries = -1
	return opts, nil
}

// New returns a limiter store on client. It loads ulule's Lua scripts, so
// Redis must answer now (within opts.Timeout); later outages are answered
// per request as keyward.RateLimitConfig.FailClosed says.
func New(ctx context.Context, client redis.UniversalClient, opts Options) (limiter.Store, error) {
	if c, ok := client.(*redis.Client); client == nil || ok && c == nil {
		return nil, &keyward.ConfigError{Field: "redislimit client", Problem: "is nil"}
	}
	if opts.Timeout < 0 {
		return nil, &keyward.ConfigError{Field: "redislimit.Options.Timeout", Problem: "is negative"}
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	pingCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := client.Ping(pingCtx).Err(); err != nil {
		return nil, errors.Join(errors.New("keyward: redislimit: Redis does not answer"), err)
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	s, err := redisstore.NewStoreWithOptions(client, limiter.StoreOptions{Prefix: prefix})
	if err != nil {
		return nil, err
	}
	return bounded{s, timeout}, nil
}

// bounded gives each call of a store a deadline.
type bounded struct {
	store   limiter.Store
	timeout time.Duration
}

// Get implements limiter.Store.
func (b bounded) Get(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	return b.store.Get(ctx, key, rate)
}

// Peek implements limiter.Store.
func (b bounded) Peek(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	return b.store.Peek(ctx, key, rate)
}

// Reset implements limiter.Store.
func (b bounded) Reset(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	return b.store.Reset(ctx, key, rate)
}

// Increment implements limiter.Store.
func (b bounded) Increment(ctx context.Context, key string, count int64, rate limiter.Rate) (limiter.Context, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	return b.store.Increment(ctx, key, count, rate)
}

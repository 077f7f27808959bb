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
package redislimit

import (
	"context"
	"errors"

	"github.com/keyward/keyward"
	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"
	redisstore "github.com/ulule/limiter/v3/drivers/store/redis"
)

// DefaultPrefix prefixes every counter key when Options.Prefix is empty.
const DefaultPrefix = "keyward"

// Options configure New.
type Options struct {
	// Prefix prefixes every counter key. Zero: DefaultPrefix.
	// Give each API (or each test) sharing one Redis its own.
	Prefix string
}

// New returns a limiter store on client. It loads ulule's Lua scripts, so
// Redis must answer now; later outages are answered per request as
// keyward.RateLimitConfig.FailClosed says.
func New(ctx context.Context, client redis.UniversalClient, opts Options) (limiter.Store, error) {
	if client == nil {
		return nil, &keyward.ConfigError{Field: "redislimit client", Problem: "is nil"}
	}
	if err := client.Ping(ctx).Err(); err != nil {
		return nil, errors.Join(errors.New("keyward: redislimit: Redis does not answer"), err)
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return redisstore.NewStoreWithOptions(client, limiter.StoreOptions{Prefix: prefix})
}

package redislimit_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/redislimit"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFrozenRedisCostsAtMostTimeout: with a client from ClientOptions and
// the default timeouts, Redis frozen (a partition: connections stay open,
// nothing comes back) or gone (connections refused) costs each request at
// most the timeout, then it is served unlimited or refused with a 503.
// Concurrent requests are bounded alike, whether they wait for an answer,
// a connection from the pool or a new one.
//
// Not parallel with the package's other tests: it measures time, and
// their bursts of hundreds of requests would be in it.
func TestFrozenRedisCostsAtMostTimeout(t *testing.T) {
	const timeout = redislimit.DefaultTimeout
	base := redisOptions(t)
	for _, failClosed := range []bool{false, true} {
		t.Run(fmt.Sprintf("failClosed=%v", failClosed), func(t *testing.T) {
			t.Parallel()
			keys, _, k := newOrgAndKey(t, manage.OrgSpec{RatePerSecond: 1000, RatePerMinute: 1000, Concurrency: 100})
			proxy := testenv.NewProxy(t, base.Addr)
			opts, err := redislimit.ClientOptions(fmt.Sprintf("redis://%s/%d", proxy.Addr(), base.DB), 0)
			require.NoError(t, err)
			opts.PoolSize = 4 // fewer connections than concurrent requests
			client := newClient(t, opts)
			in := newInstance(t, keys, client, testPrefix(t, base), setup{failClosed: failClosed})
			// Counting first: a new connection on a loaded machine may take
			// longer than the call's timeout.
			require.Eventually(t, func() bool { return in.call(k.Key).Header().Get("X-RateLimit-Limit") != "" },
				5*time.Second, 20*time.Millisecond)

			want := http.StatusOK
			if failClosed {
				want = http.StatusServiceUnavailable
			}
			// calls makes 8 × 3 concurrent calls and returns the slowest
			// and the median.
			calls := func(what string) (slowest, median time.Duration) {
				var mu sync.Mutex
				var took []time.Duration
				var wg sync.WaitGroup
				for range 8 {
					wg.Go(func() {
						for range 3 {
							began := time.Now()
							w := in.call(k.Key)
							d := time.Since(began)
							assert.Equal(t, want, w.Code, what)
							assert.Empty(t, w.Header().Get("X-RateLimit-Limit"), what)
							mu.Lock()
							took = append(took, d)
							mu.Unlock()
						}
					})
				}
				wg.Wait()
				slices.Sort(took)
				slowest, median = took[len(took)-1], took[len(took)/2]
				t.Logf("Redis %s: slowest request %v, median %v", what, slowest.Round(time.Millisecond), median.Round(time.Millisecond))
				return slowest, median
			}
			proxy.BlackHole()
			slowest, _ := calls("frozen")
			assert.Less(t, slowest, timeout+150*time.Millisecond)
			proxy.Restore()
			require.Eventually(t, func() bool {
				return in.call(k.Key).Header().Get("X-RateLimit-Limit") != ""
			}, 5*time.Second, 20*time.Millisecond, "counts again once the network heals")
			proxy.Cut()
			// Refused connections: no call waits longer either. (go-redis
			// retries a failed dial 100 ms apart, within the deadline.)
			slowest, _ = calls("gone")
			assert.Less(t, slowest, timeout+150*time.Millisecond)
		})
	}
}

func TestClientOptions(t *testing.T) {
	opts, err := redislimit.ClientOptions("redis://127.0.0.1:6379/3", 0)
	require.NoError(t, err)
	assert.Equal(t, 3, opts.DB)
	for _, d := range []time.Duration{opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout} {
		assert.Equal(t, redislimit.DefaultTimeout, d)
	}
	assert.True(t, opts.ContextTimeoutEnabled)
	assert.Equal(t, -1, opts.MaxRetries)
	_, err = redislimit.ClientOptions("redis://127.0.0.1:6379/0", -time.Second)
	assert.Error(t, err)
	_, err = redislimit.ClientOptions("http://nope", time.Second)
	assert.Error(t, err)
	_, err = redislimit.New(context.Background(), redis.NewClient(opts), redislimit.Options{Timeout: -time.Second})
	assert.ErrorContains(t, err, "Timeout is negative")
}

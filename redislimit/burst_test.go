package redislimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/ids"
	"github.com/keyward/keyward/rate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBurstAsMemory: the bucket holds Request.Burst on Redis as in
// rate.Memory, apart from its rate: a burst of 3 at 1 a second serves 3 at
// once, refuses the 4th until one token is back (a second), and is full
// again 3 seconds on; a zero Burst is one second of the rate.
func TestBurstAsMemory(t *testing.T) {
	t.Parallel()
	for name, s := range redisAndMemory(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range []struct{ burst, capacity int64 }{{3, 3}, {0, 1}} {
				req := rate.Request{Org: "org_" + ids.New(""), Key: "key_a", PerSecond: 1, Burst: tc.burst, PerMinute: 100,
					Concurrency: 100, Now: time.Now()}
				for i := range tc.capacity {
					res, err := s.Take(context.Background(), req)
					require.NoError(t, err)
					require.Equal(t, rate.Scope(""), res.Refused, "burst %d: request %d", tc.burst, i)
					assert.Equal(t, tc.capacity-1-i, res.Second.Remaining)
					assert.InDelta(t, float64(time.Duration(i+1)*time.Second), float64(res.Second.Reset), float64(100*time.Millisecond))
				}
				res, err := s.Take(context.Background(), req)
				require.NoError(t, err)
				assert.Equal(t, rate.PerSecond, res.Refused, "burst %d: one more at once", tc.burst)
				assert.InDelta(t, float64(time.Second), float64(res.Wait), float64(100*time.Millisecond), "a token a second")
				assert.Equal(t, int64(0), res.Second.Remaining)
			}
		})
	}
}

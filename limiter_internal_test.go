package keyward

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The split the sweep must not cause, end to end: two keys of one
// organization share its limit even when another organization's request
// carries a time an hour ahead.
func TestRateLimitNotSplitByAFarFutureRequest(t *testing.T) {
	t.Parallel()
	l, err := RateLimitByOrg(RateLimitConfig{})
	require.NoError(t, err)
	// The in-process counters are the process's: ids of this run only.
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	org := Organization{ID: "org_a_" + run, Plan: "p", Limits: Limits{RequestsPerMinute: 5}}
	k1 := &KeyRecord{ID: "key_1_" + run, Org: org}
	k2 := &KeyRecord{ID: "key_2_" + run, Org: org}
	other := &KeyRecord{ID: "key_3_" + run, Org: Organization{ID: "org_b_" + run, Plan: "p", Limits: Limits{RequestsPerMinute: 5}}}
	ctx := context.Background()
	now := time.Now()
	for range 5 {
		d, err := l.Allow(ctx, k1, now)
		require.NoError(t, err)
		require.True(t, d.Allowed)
	}
	_, err = l.Allow(ctx, other, now.Add(time.Hour))
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond) // room for a sweep to run
	d, err := l.Allow(ctx, k2, now)
	require.NoError(t, err)
	assert.False(t, d.Allowed, "the sixth request of the organization in one minute")
}

package keyward

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/window"

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

// A limiter with a clock of its own (a test's stopped clock, an hour or a
// year behind) counts apart from the process's counters: the system clock
// sweeps those of windows it has left, which would forget this limiter's
// counts in the middle of its window.
func TestRateLimitWithItsOwnClockIsNotSweptBySystemTime(t *testing.T) {
	t.Parallel()
	stopped := time.Date(2020, 1, 2, 3, 4, 30, 0, time.UTC)
	l, err := RateLimitByOrg(RateLimitConfig{Now: func() time.Time { return stopped }})
	require.NoError(t, err)
	live, err := RateLimitByOrg(RateLimitConfig{})
	require.NoError(t, err)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	k := &KeyRecord{ID: "key_s_" + run, Org: Organization{ID: "org_s_" + run, Plan: "p", Limits: Limits{RequestsPerMinute: 2}}}
	other := &KeyRecord{ID: "key_t_" + run, Org: Organization{ID: "org_t_" + run, Plan: "p", Limits: Limits{RequestsPerMinute: 2}}}
	ctx := context.Background()
	for range 2 {
		d, err := l.Allow(ctx, k, stopped)
		require.NoError(t, err)
		require.True(t, d.Allowed)
	}
	_, held := processCounters.Held(window.Key{Scope: "org", ID: k.Org.ID, Window: stopped.Unix() / 60})
	assert.False(t, held, "the stopped clock's counter is the limiter's own")
	_, err = live.Allow(ctx, other, time.Now()) // may start a sweep of old windows
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond) // room for a sweep to run
	d, err := l.Allow(ctx, k, stopped)
	require.NoError(t, err)
	assert.False(t, d.Allowed, "the third request of the organization in its one stopped minute")
}

package keyward

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func countCounters(m *memCounters) (n int) {
	m.m.Range(func(any, any) bool { n++; return true })
	return n
}

// The default store forgets the counters of ended windows, keeping the one
// just before the current window for requests whose clock read came just
// before the boundary.
func TestMemCountersForgetEndedWindows(t *testing.T) {
	var m memCounters
	for i := range 1000 {
		m.get("org:"+strconv.Itoa(i)+":100", 100).n.Add(1)
	}
	m.get("org:0:101", 101)
	require.Eventually(t, func() bool { return countCounters(&m) == 1001 }, time.Second, time.Millisecond,
		"window 100 is kept while 101 is current")
	m.get("org:0:102", 102)
	require.Eventually(t, func() bool { return countCounters(&m) == 2 }, 5*time.Second, time.Millisecond,
		"window 100 is forgotten once 102 is current")
	_, ok := m.m.Load("org:0:101")
	assert.True(t, ok, "the previous window's counter is kept")
}

// Every principal of an organization that asks for the counter of a
// window gets the same one, whatever the interleaving: no count is lost.
func TestMemCountersShareOneCounterPerKey(t *testing.T) {
	var m memCounters
	const workers, each = 32, 500
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				m.get("org:o:7", 7).n.Add(1)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(workers*each), m.get("org:o:7", 7).n.Load())
}

// A counter asked for far ahead of the system clock (an injected or
// stepped clock) does not sweep the counters of the current window: the
// organization's count is never split.
func TestMemCountersSweepFollowsTheSystemClock(t *testing.T) {
	var m memCounters
	now := time.Now().Unix() / int64(RateWindow/time.Second)
	m.get("org:warmup:"+strconv.FormatInt(now-5, 10), now-5) // a first window, so later ones may sweep
	c := m.get("org:a:"+strconv.FormatInt(now, 10), now)
	c.n.Add(5)
	m.get("org:b:"+strconv.FormatInt(now+60, 10), now+60)
	require.Eventually(t, func() bool {
		_, ok := m.m.Load("org:warmup:" + strconv.FormatInt(now-5, 10))
		return !ok
	}, 5*time.Second, time.Millisecond, "the sweep ran (and removed an ended window)")
	time.Sleep(50 * time.Millisecond) // room for a second sweep, if one were started
	got, ok := m.m.Load("org:a:" + strconv.FormatInt(now, 10))
	require.True(t, ok, "the current window's counter survives a request stamped an hour ahead")
	assert.Same(t, c, got)
	assert.Equal(t, int64(5), got.(*memCounter).n.Load())
}

// The split the sweep must not cause, end to end: two keys of one
// organization share its limit even when another organization's request
// carries a time an hour ahead.
func TestRateLimitNotSplitByAFarFutureRequest(t *testing.T) {
	l, err := NewRateLimiter(RateLimitConfig{Plans: map[string]Plan{"p": {Name: "p", RequestsPerMinute: 5}}})
	require.NoError(t, err)
	org := Organization{ID: "org_a", Plan: "p"}
	k1 := newPrincipal(&KeyRecord{ID: "key_1", Org: org})
	k2 := newPrincipal(&KeyRecord{ID: "key_2", Org: org})
	other := newPrincipal(&KeyRecord{ID: "key_3", Org: Organization{ID: "org_b", Plan: "p"}})
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

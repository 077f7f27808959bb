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

// countCounters returns how many counters m holds.
func countCounters(m *memCounters) (n int) {
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// held returns m's counter of k without creating it.
func held(m *memCounters, k counterKey) (*memCounter, bool) {
	sh := m.shard(k.id)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	c, ok := sh.m[k]
	return c, ok
}

// The default store forgets the counters of ended windows, keeping the one
// just before the current window for requests whose clock read came just
// before the boundary.
func TestMemCountersForgetEndedWindows(t *testing.T) {
	t.Parallel()
	var m memCounters
	for i := range 1000 {
		m.get(counterKey{"org", strconv.Itoa(i), 100}, 100).n.Add(1)
	}
	m.get(counterKey{"org", "0", 101}, 101)
	time.Sleep(20 * time.Millisecond) // room for a sweep, if one were started
	require.Equal(t, 1001, countCounters(&m), "window 100 is kept while 101 is current")
	m.get(counterKey{"org", "0", 102}, 102)
	require.Eventually(t, func() bool { return countCounters(&m) == 2 }, 5*time.Second, time.Millisecond,
		"window 100 is forgotten once 102 is current")
	_, ok := held(&m, counterKey{"org", "0", 101})
	assert.True(t, ok, "the previous window's counter is kept")
	_, ok = held(&m, counterKey{"org", "0", 102})
	assert.True(t, ok, "the current window's counter is kept")
}

// Every key of an organization that asks for the counter of a window gets
// the same one, whatever the interleaving: no count is lost.
func TestMemCountersShareOneCounterPerKey(t *testing.T) {
	t.Parallel()
	var m memCounters
	const workers, each = 32, 500
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				m.get(counterKey{"org", "o", 7}, 7).n.Add(1)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(workers*each), m.get(counterKey{"org", "o", 7}, 7).n.Load())
	assert.Equal(t, 1, countCounters(&m))
}

// Scopes, ids and windows are kept apart: the counter of a key never
// counts its organization's requests, nor those of an id that merely
// looks alike.
func TestMemCountersKeepKeysApart(t *testing.T) {
	t.Parallel()
	var m memCounters
	keys := []counterKey{{"org", "a", 5}, {"key", "a", 5}, {"org", "a:5", 5}, {"org", "a", 6}, {"org", "", 5}}
	for i, k := range keys {
		m.get(k, k.window).n.Add(int64(i + 1))
	}
	for i, k := range keys {
		assert.Equal(t, int64(i+1), m.get(k, k.window).n.Load(), "%+v", k)
	}
	c := m.get(counterKey{"org", "a", 5}, 5)
	assert.Equal(t, strconv.FormatInt(6*60, 10), c.resetStr, "the window's end, in Unix seconds")
}

// A counter asked for far ahead of the system clock (an injected or
// stepped clock) does not sweep the counters of the current window: the
// organization's count is never split.
func TestMemCountersSweepFollowsTheSystemClock(t *testing.T) {
	t.Parallel()
	var m memCounters
	now := time.Now().Unix() / int64(rateWindow/time.Second)
	warmup := counterKey{"org", "warmup", now - 5}
	m.get(warmup, now-5) // a first window, so later ones may sweep
	cur := counterKey{"org", "a", now}
	c := m.get(cur, now)
	c.n.Add(5)
	m.get(counterKey{"org", "b", now + 60}, now+60)
	require.Eventually(t, func() bool {
		_, ok := held(&m, warmup)
		return !ok
	}, 5*time.Second, time.Millisecond, "the sweep ran (and removed an ended window)")
	time.Sleep(50 * time.Millisecond) // room for a second sweep, if one were started
	got, ok := held(&m, cur)
	require.True(t, ok, "the current window's counter survives a request stamped an hour ahead")
	assert.Same(t, c, got)
	assert.Equal(t, int64(5), got.n.Load())
}

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

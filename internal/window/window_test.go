package window_test

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/window"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func key(scope, id string, w int64) window.Key { return window.Key{Scope: scope, ID: id, Window: w} }

// The default store forgets the counters of ended windows, keeping the one
// just before the current window for requests whose clock read came just
// before the boundary.
func TestCountersForgetEndedWindows(t *testing.T) {
	t.Parallel()
	var m window.Counters
	for i := range 1000 {
		m.Get(key("org", strconv.Itoa(i), 100), time.Minute).N.Add(1)
	}
	m.Get(key("org", "0", 101), time.Minute)
	time.Sleep(20 * time.Millisecond) // room for a sweep, if one were started
	require.Equal(t, 1001, m.Len(), "window 100 is kept while 101 is current")
	m.Get(key("org", "0", 102), time.Minute)
	require.Eventually(t, func() bool { return m.Len() == 2 }, 5*time.Second, time.Millisecond,
		"window 100 is forgotten once 102 is current")
	_, ok := m.Held(key("org", "0", 101))
	assert.True(t, ok, "the previous window's counter is kept")
	_, ok = m.Held(key("org", "0", 102))
	assert.True(t, ok, "the current window's counter is kept")
}

// Every key of an organization that asks for the counter of a window gets
// the same one, whatever the interleaving: no count is lost.
func TestCountersShareOneCounterPerKey(t *testing.T) {
	t.Parallel()
	var m window.Counters
	const workers, each = 32, 500
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				m.Get(key("org", "o", 7), time.Minute).N.Add(1)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(workers*each), m.Get(key("org", "o", 7), time.Minute).N.Load())
	assert.Equal(t, 1, m.Len())
}

// Scopes, ids and windows are kept apart: the counter of a key never
// counts its organization's requests, nor those of an id that merely
// looks alike.
func TestCountersKeepKeysApart(t *testing.T) {
	t.Parallel()
	var m window.Counters
	keys := []window.Key{key("org", "a", 5), key("key", "a", 5), key("org", "a:5", 5), key("org", "a", 6), key("org", "", 5)}
	for i, k := range keys {
		m.Get(k, time.Minute).N.Add(int64(i + 1))
	}
	for i, k := range keys {
		assert.Equal(t, int64(i+1), m.Get(k, time.Minute).N.Load(), "%+v", k)
	}
	c := m.Get(key("org", "a", 5), time.Minute)
	assert.Equal(t, strconv.FormatInt(6*60, 10), c.Reset, "the window's end, in Unix seconds")
}

// A counter asked for far ahead of the system clock (an injected or
// stepped clock) does not sweep the counters of the current window: the
// organization's count is never split.
func TestCountersSweepFollowsTheSystemClock(t *testing.T) {
	t.Parallel()
	var m window.Counters
	now := time.Now().Unix() / 60
	warmup := key("org", "warmup", now-5)
	m.Get(warmup, time.Minute) // a first window, so later ones may sweep
	cur := key("org", "a", now)
	c := m.Get(cur, time.Minute)
	c.N.Add(5)
	m.Get(key("org", "b", now+60), time.Minute)
	require.Eventually(t, func() bool {
		_, ok := m.Held(warmup)
		return !ok
	}, 5*time.Second, time.Millisecond, "the sweep ran (and removed an ended window)")
	time.Sleep(50 * time.Millisecond) // room for a second sweep, if one were started
	got, ok := m.Held(cur)
	require.True(t, ok, "the current window's counter survives a request stamped an hour ahead")
	assert.Same(t, c, got)
	assert.Equal(t, int64(5), got.N.Load())
}

// A counter's header values are formatted once for its limit, and again
// when the limit changes (a plan upgrade within the window).
func TestStringsFor(t *testing.T) {
	var m window.Counters
	c := m.Get(key("org", "s", 9), time.Minute)
	a := c.StringsFor("org", 60, time.Minute)
	assert.Equal(t, `"org";q=60;w=60`, a.Policy)
	assert.Equal(t, "60", a.LimitS)
	assert.Same(t, a, c.StringsFor("org", 60, time.Minute))
	b := c.StringsFor("org", 600, time.Minute)
	assert.Equal(t, `"org";q=600;w=60`, b.Policy)
}

// Package window keeps in-process request counters per fixed time window:
// one per (scope, id, window), found with a read lock on one of 64 shards
// and counted with an atomic add. Counters of windows that ended are swept,
// a shard at a time, when a later window is first seen. keyward's rate
// limiter counts each organization's requests in them by default.
package window

import (
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Key names a counter.
type Key struct {
	Scope, ID string
	Window    int64 // the window's number: Unix time / its length
}

// Counter counts the requests of one Key.
type Counter struct {
	// N is the count.
	N atomic.Int64
	// Reset is the window's end in Unix seconds, formatted once.
	Reset  string
	strs   atomic.Pointer[Strings]
	window int64
}

// Counters are the counters of one process. The zero value is ready to use
// and safe for concurrent use.
//
// The sweep goes by the system clock as well as by the windows asked for:
// a counter asked for far ahead (an injected clock, a wall clock stepped
// forward) never removes the counters of the window the system clock is
// in, or of the one before, so a count is never split.
type Counters struct {
	shards [64]shard
	swept  atomic.Int64 // the last window a sweep was started for
}

type shard struct {
	mu sync.RWMutex
	m  map[Key]*Counter
}

var seed = maphash.MakeSeed()

func (m *Counters) shard(id string) *shard {
	return &m.shards[maphash.String(seed, id)%uint64(len(m.shards))]
}

// Get returns the counter of k, whose windows last length, creating it if
// needed.
func (m *Counters) Get(k Key, length time.Duration) *Counter {
	sh := m.shard(k.ID)
	sh.mu.RLock()
	c := sh.m[k]
	sh.mu.RUnlock()
	if c != nil {
		return c
	}
	secs := int64(length / time.Second)
	sh.mu.Lock()
	if c = sh.m[k]; c == nil {
		if sh.m == nil {
			sh.m = make(map[Key]*Counter)
		}
		c = &Counter{window: k.Window, Reset: strconv.FormatInt((k.Window+1)*secs, 10)}
		sh.m[k] = c
	}
	sh.mu.Unlock()
	// Once per counter and window, not per request: the clock read is
	// affordable here. Keep the previous window: a request whose clock read
	// came just before the boundary may still count in it.
	w := min(k.Window, time.Now().Unix()/secs)
	if last := m.swept.Load(); w > last && m.swept.CompareAndSwap(last, w) && last != 0 {
		go m.sweep(w - 1)
	}
	return c
}

// Held returns the counter of k if there is one, without creating it.
func (m *Counters) Held(k Key) (*Counter, bool) {
	sh := m.shard(k.ID)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	c, ok := sh.m[k]
	return c, ok
}

// Len returns how many counters m holds.
func (m *Counters) Len() (n int) {
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// sweep forgets the counters of windows before keep. Each shard's map is
// made anew with the counters kept: a Go map never gives back the room of
// deleted entries, and a minute of many organizations would otherwise stay
// allocated for good.
func (m *Counters) sweep(keep int64) {
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		kept := make(map[Key]*Counter)
		for k, c := range sh.m {
			if c.window >= keep {
				kept[k] = c
			}
		}
		sh.m = kept
		sh.mu.Unlock()
	}
}

// Strings are a counter's rate-limit header values that change only with
// its limit: the limit in decimal and its RateLimit-Policy item.
type Strings struct {
	Limit  int64
	LimitS string
	Policy string
}

// NewStrings formats the header values of a counter of scope ("org",
// "key") at limit requests per window of length.
func NewStrings(scope string, limit int64, length time.Duration) *Strings {
	l := strconv.FormatInt(limit, 10)
	return &Strings{Limit: limit, LimitS: l,
		Policy: `"` + scope + `";q=` + l + ";w=" + strconv.FormatInt(int64(length/time.Second), 10)}
}

// StringsFor returns c's header values at limit, formatted once while the
// limit stays the same (every request of the window shares them).
func (c *Counter) StringsFor(scope string, limit int64, length time.Duration) *Strings {
	if s := c.strs.Load(); s != nil && s.Limit == limit {
		return s
	}
	s := NewStrings(scope, limit, length)
	c.strs.Store(s)
	return s
}

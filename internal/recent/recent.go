// Package recent remembers which ids were seen within a window of time, in
// a bounded set: keyward's Authenticator remembers so the keys its store
// found, so that a valid key is looked up even while its client is over
// its failed-auth budget.
package recent

import (
	"sync"
	"time"
)

// shards spreads the set's lock: a set is written once per id and TTL of
// the cache in front of the store, and read by every throttled request.
const shards = 16

// Set is a set of ids, each with when it was last seen: at most Max of
// them, each answered for Window after it was seen. A full set first drops
// the ids older than Window (at most once a minute in each shard), then,
// if still full, any one id. The zero value holds nothing and keeps
// nothing; make one with New. A nil *Set knows nothing. It is safe for
// concurrent use.
type Set struct {
	window   int64 // ns
	perShard int
	shards   [shards]shard
}

type shard struct {
	mu    sync.Mutex
	seen  map[uint64]int64 // id -> when last seen, Unix ns
	swept int64
}

// New returns a set of at most max ids (at least one per shard), each
// answered for window after it was last seen.
func New(window time.Duration, max int) *Set {
	return &Set{window: int64(window), perShard: (max + shards - 1) / shards}
}

func (s *Set) shard(id uint64) *shard { return &s.shards[id%shards] }

// Has reports whether id was seen within the window before now.
func (s *Set) Has(id uint64, now time.Time) bool {
	if s == nil {
		return false
	}
	sh := s.shard(id)
	sh.mu.Lock()
	at, ok := sh.seen[id]
	sh.mu.Unlock()
	return ok && now.UnixNano()-at <= s.window
}

// Add notes that id was seen at now.
func (s *Set) Add(id uint64, now time.Time) {
	if s == nil || s.perShard == 0 {
		return
	}
	ns := now.UnixNano()
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.seen == nil {
		sh.seen = make(map[uint64]int64)
	}
	if _, ok := sh.seen[id]; !ok && len(sh.seen) >= s.perShard {
		if ns-sh.swept > int64(time.Minute) {
			sh.swept = ns
			for old, at := range sh.seen {
				if ns-at > s.window {
					delete(sh.seen, old)
				}
			}
		}
		for old := range sh.seen { // still full: any one goes
			if len(sh.seen) < s.perShard {
				break
			}
			delete(sh.seen, old)
		}
	}
	sh.seen[id] = ns
}

// Forget drops id.
func (s *Set) Forget(id uint64) {
	if s == nil {
		return
	}
	sh := s.shard(id)
	sh.mu.Lock()
	delete(sh.seen, id)
	sh.mu.Unlock()
}

// Len returns how many ids the set holds, old ones included.
func (s *Set) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.seen)
		sh.mu.Unlock()
	}
	return n
}

// Package recent remembers which ids were seen within a window of time, in
// a bounded set: keyward's Cache remembers so the keys its store found,
// so that a valid key is looked up even while its client is over its
// failed-auth budget.
package recent

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// shards spreads the set's lock: a set is written once per id and TTL of
// the cache in front of the store, and read by every throttled request.
const shards = 16

// Set is a set of ids, each with when it was last seen: at most Max of
// them, each answered for Window after it was seen. A full set makes room
// by dropping the ids it would miss least: those older than Window and
// those demoted (Demote) first, then the ones seen longest ago, an eighth
// of a shard at a time. The zero value holds nothing and keeps nothing;
// make one with New. A nil *Set knows nothing. It is safe for concurrent
// use.
type Set struct {
	window   int64 // ns
	perShard int
	shards   [shards]shard

	list   Lister      // nil: nothing to read
	filled atomic.Bool // list has answered
	mu     sync.Mutex  // held while list runs
	retry  time.Time   // list is not asked again before
}

// Lister returns the ids seen at or after since, each with when it was
// last seen, at most max of them, the most recent first.
type Lister func(ctx context.Context, since time.Time, max int) (map[uint64]time.Time, error)

// The first time Known is asked about an id the set does not hold, the
// set is filled from its Lister, which has FillTimeout; after a failure it
// is asked again at most once every FillRetry.
const FillTimeout, FillRetry = 5 * time.Second, time.Minute

type shard struct {
	mu   sync.Mutex
	seen map[uint64]entry
}

type entry struct {
	at      int64 // when last seen, Unix ns
	demoted bool  // dropped first when room is needed
}

// New returns a set of at most max ids (at least one per shard), each
// answered for window after it was last seen, filled, when first needed,
// from list (nil: nothing to read; only Add fills it).
func New(window time.Duration, max int, list Lister) *Set {
	s := &Set{window: int64(window), perShard: (max + shards - 1) / shards, list: list}
	s.filled.Store(list == nil)
	return s
}

// Known is Has, but first, if the set does not hold id and has not been
// filled from its Lister, fills it (requests meanwhile wait for it, at most
// FillTimeout: the first that needs it runs it).
func (s *Set) Known(ctx context.Context, id uint64, now time.Time) bool {
	if s == nil || s.Has(id, now) {
		return s != nil
	}
	if s.filled.Load() {
		return false
	}
	s.fill(ctx, now)
	return s.Has(id, now)
}

func (s *Set) fill(ctx context.Context, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.filled.Load() || now.Before(s.retry) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), FillTimeout)
	defer cancel()
	seen, err := s.list(ctx, now.Add(-time.Duration(s.window)), s.perShard*shards)
	if err != nil {
		s.retry = now.Add(FillRetry)
		return
	}
	for id, at := range seen {
		s.Add(id, at)
	}
	s.filled.Store(true)
}

func (s *Set) shard(id uint64) *shard { return &s.shards[id%shards] }

// Has reports whether id was seen within the window before now.
func (s *Set) Has(id uint64, now time.Time) bool {
	if s == nil {
		return false
	}
	sh := s.shard(id)
	sh.mu.Lock()
	e, ok := sh.seen[id]
	sh.mu.Unlock()
	return ok && now.UnixNano()-e.at <= s.window
}

// Add notes that id was seen at t (an earlier t than the one known
// changes nothing but undoes Demote).
func (s *Set) Add(id uint64, t time.Time) {
	if s == nil || s.perShard == 0 {
		return
	}
	ns := t.UnixNano()
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.seen == nil {
		sh.seen = make(map[uint64]entry)
	}
	e, ok := sh.seen[id]
	if !ok && len(sh.seen) >= s.perShard {
		sh.makeRoom(ns, s.window, max(s.perShard/8, 1))
	}
	sh.seen[id] = entry{at: max(e.at, ns)}
}

// makeRoom drops from a full shard the ids older than window before now
// and the demoted ones and, if that leaves fewer than n gone, the ones
// seen longest ago until n are. sh.mu is held.
func (sh *shard) makeRoom(now, window int64, n int) {
	rank := func(e entry) int64 {
		if e.demoted || now-e.at > window {
			return -1
		}
		return e.at
	}
	ranks := make([]int64, 0, len(sh.seen))
	for _, e := range sh.seen {
		ranks = append(ranks, rank(e))
	}
	slices.Sort(ranks)
	cut := ranks[min(n, len(ranks))-1] // the n-th lowest rank
	for id, e := range sh.seen {       // everything below it, then ties up to n
		if r := rank(e); r < cut || r == -1 {
			delete(sh.seen, id)
		}
	}
	for id, e := range sh.seen {
		if len(sh.seen) <= len(ranks)-n {
			break
		}
		if rank(e) == cut {
			delete(sh.seen, id)
		}
	}
}

// Demote marks id, if the set holds it, as the first to go when room is
// needed (its owner changed, and may be gone: a revoked key). It is still
// answered for until then or until seen again (Add).
func (s *Set) Demote(id uint64) {
	if s == nil {
		return
	}
	sh := s.shard(id)
	sh.mu.Lock()
	if e, ok := sh.seen[id]; ok {
		e.demoted = true
		sh.seen[id] = e
	}
	sh.mu.Unlock()
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

package memstore

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/keyward/keyward"
)

var _ keyward.RecentKeyLister = (*Store)(nil)

// foundKeys is when LookupKey last found each key. The zero value is
// ready; it is safe for concurrent use.
type foundKeys struct {
	mu sync.Mutex
	at map[keyward.KeyHash]time.Time
}

func (f *foundKeys) note(h keyward.KeyHash, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.at == nil {
		f.at = make(map[keyward.KeyHash]time.Time)
	}
	if now.After(f.at[h]) {
		f.at[h] = now
	}
}

// RecentKeys implements keyward.RecentKeyLister: the keys that work now
// and that LookupKey found at or after since, each with when it last did,
// at most limit of them, the most recent first.
func (s *Store) RecentKeys(ctx context.Context, since time.Time, limit int) (map[keyward.KeyHash]time.Time, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := s.now()
	s.found.mu.Lock()
	found := maps.Clone(s.found.at)
	s.found.mu.Unlock()
	s.mu.RLock()
	maps.DeleteFunc(found, func(h keyward.KeyHash, at time.Time) bool {
		k, ok := s.byHash[h]
		return !ok || at.Before(since) || k.Revoked(now) || k.Expired(now)
	})
	s.mu.RUnlock()
	if len(found) > limit {
		byTime := slices.SortedFunc(maps.Keys(found), func(a, b keyward.KeyHash) int { return found[b].Compare(found[a]) })
		for _, h := range byTime[max(limit, 0):] {
			delete(found, h)
		}
	}
	return found, nil
}

package keyward

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/keyward/keyward/internal/recent"
)

// RecentKeyLister is what a KeyStore may also implement so that a process
// knows, from its first request on, which keys are in use: with a
// FailedAuth throttle, RequireAPIKey looks those up even while their
// client is over budget (AuthConfig.FailedAuth). memstore.Store and
// sqlstore.Store implement it; with a store that does not, a process knows
// only the keys it found itself since it started.
type RecentKeyLister interface {
	// RecentKeys returns the hashes of at most max keys that work now
	// (neither revoked nor expired) and were last used at or after since,
	// the most recently used first, each with when it was last used.
	RecentKeys(ctx context.Context, since time.Time, max int) (map[KeyHash]time.Time, error)
}

// With a FailedAuth, a key the store found within knownKeysFor is looked
// up even while its client is over budget: a valid key is not held up by
// the failures of others at its address (behind a proxy that is not
// trusted, every client's). Up to maxKnownKeys are kept (≈ 4 MB).
const knownKeysFor, maxKnownKeys = 7 * 24 * time.Hour, 1 << 17

// knownKeys returns the set of keys store found recently, by knownID: a
// Cache keeps one for every Authenticator in front of it. Those the store
// lists as used, if it is a RecentKeyLister, are read into it when first
// needed (recent.Set.Known).
func knownKeys(store KeyStore) *recent.Set {
	lister, ok := store.(RecentKeyLister)
	if !ok {
		return recent.New(knownKeysFor, maxKnownKeys, nil)
	}
	return recent.New(knownKeysFor, maxKnownKeys, func(ctx context.Context, since time.Time, max int) (map[uint64]time.Time, error) {
		used, err := lister.RecentKeys(ctx, since, max)
		ids := make(map[uint64]time.Time, len(used))
		for h, at := range used {
			ids[knownID(h)] = at
		}
		return ids, err
	})
}

// knownID is what the set of keys found recently keeps of a key: its
// hash's first 8 bytes (a key colliding with a known one gets a store
// lookup, nothing more).
func knownID(h KeyHash) uint64 { return binary.LittleEndian.Uint64(h[:8]) }

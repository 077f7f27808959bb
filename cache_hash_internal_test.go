package keyward

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mapStore is the smallest KeyStore: a fixed map, counting its lookups.
type mapStore struct {
	m     map[KeyHash]*KeyRecord
	calls atomic.Int64
}

func (s *mapStore) LookupKey(_ context.Context, h KeyHash) (*KeyRecord, error) {
	s.calls.Add(1)
	if r, ok := s.m[h]; ok {
		return r, nil
	}
	return nil, ErrKeyNotFound
}

// The cache is keyed by the first 8 bytes of the hash but answers only for
// the whole hash: hashes that share those bytes are never answered for
// each other, found or not found, in any order and concurrently.
func TestCacheComparesTheWholeHash(t *testing.T) {
	t.Parallel()
	var a, b, unknown KeyHash
	for i := range a {
		a[i] = byte(i)
	}
	b, unknown = a, a
	b[31] ^= 0xff       // same first 8 bytes, another key
	unknown[20] ^= 0xff // same first 8 bytes, no key
	store := &mapStore{m: map[KeyHash]*KeyRecord{
		a: {ID: "key_a", Hash: a, Org: Organization{ID: "org"}},
		b: {ID: "key_b", Hash: b, Org: Organization{ID: "org"}},
	}}
	c, err := NewCache(store, CacheConfig{})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				switch h := [3]KeyHash{a, b, unknown}[(i+w)%3]; h {
				case unknown:
					if rec, err := c.LookupKey(ctx, h); err != ErrKeyNotFound {
						t.Errorf("unknown hash: %v, %v", rec, err)
						return
					}
				default:
					rec, err := c.LookupKey(ctx, h)
					if err != nil || rec.Hash != h {
						t.Errorf("hash %x: %+v, %v", h[28:], rec, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	// Each hash was looked up in the store at least once: none was
	// answered from another's entry.
	assert.GreaterOrEqual(t, store.calls.Load(), int64(3))
	// A hit compares the whole hash: once a's entry holds the shared slot
	// (ristretto may drop a Set: look up until it is admitted), b and the
	// unknown hash still miss.
	require.Eventually(t, func() bool {
		_, _ = c.LookupKey(ctx, a)
		_, hit := c.cached(context.Background(), a)
		return hit
	}, 5*time.Second, time.Millisecond)
	e, _ := c.cached(context.Background(), a)
	rec, err := e.answer()
	require.NoError(t, err)
	assert.Equal(t, "key_a", rec.ID)
	for _, h := range []KeyHash{b, unknown} {
		_, hit := c.cached(context.Background(), h)
		assert.False(t, hit, "a's entry answered for %x", h[28:])
	}
}

package keyward

import (
	"context"
	"hash/maphash"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mapStore is the smallest KeyStore: a fixed map.
type mapStore map[KeyHash]*KeyRecord

func (m mapStore) LookupKey(_ context.Context, h KeyHash) (*KeyRecord, error) {
	if r, ok := m[h]; ok {
		return r, nil
	}
	return nil, ErrKeyNotFound
}

func TestFrontSize(t *testing.T) {
	for maxKeys, want := range map[int64]int{1: 1, 2: 2, 10: 16, 4096: 4096, 100_000: 4096} {
		assert.Equal(t, want, frontSize(maxKeys), "frontSize(%d)", maxKeys)
	}
}

// Keys that share the front's one slot (MaxKeys 1) are each answered with
// their own Principal, whatever the order and concurrency: the front only
// saves work, it never answers for another key.
func TestCacheFrontSharedSlot(t *testing.T) {
	store := mapStore{}
	var keys []string
	for i := range 8 {
		k := "triq_" + strconv.Itoa(i)
		h := Hash(k)
		store[h] = &KeyRecord{ID: "key_" + strconv.Itoa(i), Hash: h, Org: Organization{ID: "org"}}
		keys = append(keys, k)
	}
	c, err := NewCache(store, CacheConfig{MaxKeys: 1})
	require.NoError(t, err)
	defer c.Close()
	require.Len(t, c.front, 1)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				n := (i + w) % len(keys)
				tag := c.tag(keys[n])
				p := c.frontPrincipal(tag)
				if p == nil {
					e, err := c.lookup(context.Background(), Hash(keys[n]))
					if err != nil {
						t.Errorf("lookup %d: %v", n, err)
						return
					}
					c.remember(tag, e)
					p = e.principal
				}
				if p.KeyID != "key_"+strconv.Itoa(n) {
					t.Errorf("key %d answered as %s", n, p.KeyID)
					return
				}
			}
		})
	}
	wg.Wait()
	assert.Nil(t, c.frontPrincipal(c.tag("triq_unknown")))
}

// A key in the front is refused as soon as Invalidate or InvalidateAll
// returns, once it expires, and once the cache is closed.
func TestCacheFrontFollowsTheEntry(t *testing.T) {
	const key = "triq_front"
	h := Hash(key)
	store := mapStore{h: &KeyRecord{ID: "key_1", Hash: h, Org: Organization{ID: "org"}}}
	c, err := NewCache(store, CacheConfig{})
	require.NoError(t, err)
	tag := c.tag(key)
	assert.NotEqual(t, tag, c.tag("triq_frond"), "tags differ")
	assert.NotEqual(t, tag, (&Cache{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}}).tag(key),
		"another cache has other seeds")
	remember := func() {
		e, err := c.lookup(context.Background(), h)
		require.NoError(t, err)
		c.remember(tag, e)
		require.NotNil(t, c.frontPrincipal(tag))
	}
	remember()
	c.Invalidate(h)
	assert.Nil(t, c.frontPrincipal(tag), "after Invalidate")
	remember()
	c.InvalidateAll()
	assert.Nil(t, c.frontPrincipal(tag), "after InvalidateAll")
	remember()
	c.frontSlot(tag).Load().e.expires = c.clock.Load()
	assert.Nil(t, c.frontPrincipal(tag), "once expired")
	remember()
	c.Close()
	assert.Nil(t, c.frontPrincipal(tag), "after Close")
}

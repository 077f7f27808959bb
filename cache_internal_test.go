package keyward

import (
	"context"
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
// their own record, whatever the order and concurrency: the front only
// saves a lookup, it never answers for another hash.
func TestCacheFrontSharedSlot(t *testing.T) {
	store := mapStore{}
	var hashes []KeyHash
	for i := range 8 {
		h := Hash("triq_" + strconv.Itoa(i))
		store[h] = &KeyRecord{ID: "key_" + strconv.Itoa(i), Hash: h, Org: Organization{ID: "org"}}
		hashes = append(hashes, h)
	}
	c, err := NewCache(store, CacheConfig{MaxKeys: 1})
	require.NoError(t, err)
	defer c.Close()
	require.Len(t, c.front, 1)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				n := (i + w) % len(hashes)
				rec, err := c.LookupKey(context.Background(), hashes[n])
				if err != nil || rec.ID != "key_"+strconv.Itoa(n) {
					t.Errorf("lookup %d: got %v, %v", n, rec, err)
					return
				}
			}
		})
	}
	wg.Wait()
	_, err = c.LookupKey(context.Background(), Hash("triq_unknown"))
	assert.ErrorIs(t, err, ErrKeyNotFound)
}

// A key served from the front is refused as soon as Invalidate returns,
// like one served from ristretto.
func TestCacheFrontInvalidate(t *testing.T) {
	h := Hash("triq_front")
	rec := &KeyRecord{ID: "key_1", Hash: h, Org: Organization{ID: "org"}}
	store := mapStore{h: rec}
	c, err := NewCache(store, CacheConfig{})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.LookupKey(context.Background(), h)
	require.NoError(t, err)
	require.Same(t, rec, c.frontSlot(&h).Load().rec, "a found key is in front")
	delete(store, h)
	c.Invalidate(h)
	assert.Nil(t, c.frontSlot(&h).Load(), "Invalidate drops the front entry")
	_, err = c.LookupKey(context.Background(), h)
	assert.ErrorIs(t, err, ErrKeyNotFound)
	// InvalidateAll: a fresh entry in front is refused too.
	store[h] = rec
	c.Invalidate(h)
	_, err = c.LookupKey(context.Background(), h)
	require.NoError(t, err)
	delete(store, h)
	c.InvalidateAll()
	_, err = c.LookupKey(context.Background(), h)
	assert.ErrorIs(t, err, ErrKeyNotFound)
}

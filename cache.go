package keyward

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/keyward/keyward/internal/clock"
	"github.com/keyward/keyward/internal/front"
	"github.com/keyward/keyward/internal/hooks"
	"github.com/keyward/keyward/internal/recent"
	"golang.org/x/sync/singleflight"
)

// CacheConfig configures a Cache. Every zero value means the default said
// beside it.
type CacheConfig struct {
	// MaxKeys bounds the number of cached answers (found and not found).
	// Zero: 100,000.
	MaxKeys int64
	// TTL bounds how long a found key is served from the cache, and so how
	// stale a revocation or plan change can be on an instance whose change
	// feed is lost (give or take the shared clock's 10 ms). Zero: 30s.
	TTL time.Duration
	// NegativeTTL bounds how long "no such key" is cached. Zero: 5s.
	NegativeTTL time.Duration
	// LookupTimeout bounds one store lookup, which may be shared by many
	// requests. Zero: 5s.
	LookupTimeout time.Duration
	// FrontSlots is how many keys RequireAPIKey recently found the cache
	// keeps by the key itself (SECURITY.md: their plaintext is then in the
	// process's memory), so that a key seen again is compared whole instead
	// of hashed. Zero: 4096; negative: none.
	FrontSlots int
}

// Cache is a KeyStore in front of another KeyStore: found keys for TTL,
// unknown hashes for NegativeTTL, one store call for concurrent misses of
// one hash. It answers only for the exact key that was stored: by its
// SHA-256, the whole hash compared, or in its front (recently found keys)
// by the whole key, compared in constant time. It is safe for concurrent
// use.
//
// Revocation is exact on this instance: once Invalidate(h) or
// InvalidateAll returns, no lookup answers from what was known before,
// including a store lookup that began before the call and ends after it.
// Every cached answer carries the invalidation generation in force when its
// store lookup began, and is served only while that generation is current.
type Cache struct {
	store KeyStore
	c     *ristretto.Cache[uint64, *cacheEntry]
	sf    singleflight.Group

	ttl, negTTL, lookupTimeout time.Duration

	global  atomic.Uint64
	stripes [genStripes]atomic.Uint64

	// front: entries of c by key (nil when FrontSlots < 0), served under
	// the same checks; a hit costs no SHA-256 and no ristretto lookup.
	front *front.Front[*cacheEntry]

	// keys: the keys the store found recently (knownKeys), for every
	// Authenticator with a FailedAuth in front of this cache.
	keys *recent.Set

	closeOnce sync.Once
	closeMu   sync.RWMutex // held by fills while they write to c.c
	closed    bool

	storeCalls atomic.Int64
}

const genStripes = 4096

type cacheEntry struct {
	hash      KeyHash
	global    uint64
	stripe    uint64 // the generation of stripes[stripeIdx]
	stripeIdx uint16
	expires   int64      // Unix nanoseconds
	rec       *KeyRecord // nil: no such key
}

var _ KeyStore = (*Cache)(nil)
var _ Invalidator = (*Cache)(nil)

// NewCache returns a Cache in front of store. Close it once no request can
// reach it any more.
func NewCache(store KeyStore, cfg CacheConfig) (*Cache, error) {
	var errs []error
	if store == nil {
		errs = append(errs, &ConfigError{Field: "store", Problem: "is nil"})
	}
	day := int64(24 * time.Hour) // beyond these, a typo; and a time past 2262 has no UnixNano
	sizes := map[string][2]int64{"MaxKeys": {cfg.MaxKeys, 1 << 26}, "TTL": {int64(cfg.TTL), day},
		"NegativeTTL": {int64(cfg.NegativeTTL), day}, "LookupTimeout": {int64(cfg.LookupTimeout), day}}
	for _, name := range slices.Sorted(maps.Keys(sizes)) {
		if v := sizes[name]; v[0] < 0 || v[0] > v[1] {
			errs = append(errs, &ConfigError{Field: "CacheConfig." + name, Problem: "is negative or too large (MaxKeys ≤ 2^26, durations ≤ 24h)"})
		}
	}
	if cfg.FrontSlots > 1<<20 {
		errs = append(errs, &ConfigError{Field: "CacheConfig.FrontSlots", Problem: "is above 1048576"})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	maxKeys := cmp.Or(cfg.MaxKeys, 100_000)
	rc, err := ristretto.NewCache(&ristretto.Config[uint64, *cacheEntry]{
		NumCounters: maxKeys * 10,
		MaxCost:     maxKeys,
		// Every Get records the access in a per-P buffer of BufferItems
		// keys; a full buffer wakes the admission policy's goroutine. A
		// larger buffer wakes it less often (BENCHMARKS.md).
		BufferItems:        1024,
		IgnoreInternalCost: true,
		// The key already is the first 8 bytes of a SHA-256; the entry
		// holds the whole hash, compared on every hit.
		KeyToHash: func(k uint64) (uint64, uint64) { return k, 0 },
	})
	if err != nil {
		return nil, err
	}
	c := &Cache{
		store:         store,
		c:             rc,
		ttl:           cmp.Or(cfg.TTL, 30*time.Second),
		negTTL:        cmp.Or(cfg.NegativeTTL, 5*time.Second),
		lookupTimeout: cmp.Or(cfg.LookupTimeout, 5*time.Second),
		keys:          knownKeys(store),
	}
	if cfg.FrontSlots >= 0 {
		c.front = front.New[*cacheEntry](cmp.Or(cfg.FrontSlots, 4096))
	}
	return c, nil
}

func stripeOf(h *KeyHash) int { return int(binary.LittleEndian.Uint16(h[8:]) % genStripes) }

// LookupKey implements KeyStore.
func (c *Cache) LookupKey(ctx context.Context, hash KeyHash) (*KeyRecord, error) {
	return c.find(ctx, "", hash)
}

// find returns the record of exactly key, whose SHA-256 is hash, and
// keeps a key found in the front (key "": the hash alone is known).
func (c *Cache) find(ctx context.Context, key string, hash KeyHash) (*KeyRecord, error) {
	e, ok := c.cached(ctx, hash)
	if !ok {
		var err error
		if e, err = c.miss(ctx, hash); err != nil {
			return nil, err
		}
	}
	c.remember(key, e)
	return e.answer()
}

// cached returns the current entry of hash, if the cache holds one.
func (c *Cache) cached(ctx context.Context, hash KeyHash) (*cacheEntry, bool) {
	if c == nil {
		return nil, false
	}
	if e, ok := c.c.Get(binary.LittleEndian.Uint64(hash[:8])); ok && e.hash == hash && c.current(e) {
		hooks.LookedCached(ctx, e.rec == nil)
		return e, true
	}
	return nil, false
}

// byKey returns the record of key if the front holds a current entry for
// exactly that key (compared whole, in constant time).
func (c *Cache) byKey(key string) (*KeyRecord, bool) {
	if c == nil || c.front == nil {
		return nil, false
	}
	e, ok := c.front.Get(key)
	if !ok || !c.current(e) {
		return nil, false
	}
	return e.rec, true
}

// known returns the keys c's store found recently.
func (c *Cache) known() *recent.Set {
	if c == nil {
		return nil
	}
	return c.keys
}

// remember puts e, the entry of a key found, in the front under key.
func (c *Cache) remember(key string, e *cacheEntry) {
	if c == nil || c.front == nil || e.rec == nil || key == "" {
		return
	}
	c.closeMu.RLock() // Close clears the front: nothing goes in after it
	if !c.closed {
		c.front.Put(key, e)
	}
	c.closeMu.RUnlock()
}

func (e *cacheEntry) answer() (*KeyRecord, error) {
	if e.rec == nil {
		return nil, ErrKeyNotFound
	}
	return e.rec, nil
}

// lookupStore asks store for hash, holding it to its contract: an error,
// or the record of exactly that hash.
func lookupStore(ctx context.Context, store KeyStore, hash KeyHash) (*KeyRecord, error) {
	ctx, call := hooks.StartLookup(ctx)
	rec, err := store.LookupKey(ctx, hash)
	if rec != nil {
		call.Key(rec.ID, rec.Org.ID)
	}
	call.EndLookup(ctx, errors.Is(err, ErrKeyNotFound), err)
	switch {
	case err != nil:
		return nil, err
	case rec == nil:
		return nil, errors.New("keyward: key store returned neither a record nor an error")
	case rec.Hash != hash:
		return nil, errors.New("keyward: key store returned the record of another key")
	}
	return rec, nil
}

// current says whether e may answer now: no invalidation since its lookup
// began, not expired.
func (c *Cache) current(e *cacheEntry) bool {
	return e.stripe == c.stripes[e.stripeIdx].Load() && e.global == c.global.Load() &&
		e.expires > clock.Process.UnixNano()
}

// maxStaleRetries bounds how often one request looks up again because an
// invalidation raced its lookup.
const maxStaleRetries = 3

var errInvalidationStorm = errors.New("keyward: key invalidated during every lookup attempt")

func (c *Cache) miss(ctx context.Context, hash KeyHash) (*cacheEntry, error) {
	if c == nil || c.store == nil { // not a panic in the flight's goroutine, which no one could recover
		return nil, misconfigured("a Cache must be made by NewCache")
	}
	stripe := &c.stripes[stripeOf(&hash)]
	for range maxStaleRetries {
		g, s := c.global.Load(), stripe.Load()
		// One flight per hash and generation: a request that arrives after
		// an invalidation never joins a lookup that began before it.
		var key [len(hash) + 16]byte
		copy(key[:], hash[:])
		binary.LittleEndian.PutUint64(key[32:], g)
		binary.LittleEndian.PutUint64(key[40:], s)
		ch := c.sf.DoChan(string(key[:]), func() (any, error) { return c.fill(ctx, hash, g, s) })
		var res singleflight.Result
		select {
		case res = <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if c.global.Load() != g || stripe.Load() != s {
			continue // invalidated while we looked: the answer may be stale
		}
		if res.Err != nil {
			hooks.Looked(ctx, hooks.StoreError)
			return nil, res.Err
		}
		hooks.Looked(ctx, hooks.Miss)
		return res.Val.(*cacheEntry), nil
	}
	return nil, errInvalidationStorm
}

// fill runs one store lookup, detached from any one request's cancellation
// (it serves all the requests waiting on it) but bounded by LookupTimeout.
func (c *Cache) fill(ctx context.Context, hash KeyHash, g, s uint64) (*cacheEntry, error) {
	// A request that missed the cache just before another flight for the
	// same hash filled it and left the group starts a flight of its own:
	// look once more before going to the store.
	if e, ok := c.c.Get(binary.LittleEndian.Uint64(hash[:8])); ok && e.hash == hash && e.stripe == s && e.global == g &&
		e.expires > clock.Process.UnixNano() {
		return e, nil
	}
	ctx, cancel := context.WithTimeout(hooks.Detach(ctx), c.lookupTimeout) // the request's span, nothing else
	defer cancel()
	c.storeCalls.Add(1)
	rec, err := lookupStore(ctx, c.store, hash)
	e := &cacheEntry{hash: hash, global: g, stripe: s, stripeIdx: uint16(stripeOf(&hash))}
	ttl := c.negTTL
	switch {
	case errors.Is(err, ErrKeyNotFound):
	case err != nil:
		return nil, err
	default:
		e.rec, ttl = rec, c.ttl
	}
	// The entry expires by the shared clock, checked on every hit. A Set
	// may be dropped by ristretto's admission policy: then the next request
	// simply looks up again. An entry set here after an invalidation is
	// harmless: its generation is already stale.
	e.expires = time.Now().Add(ttl).UnixNano()
	c.closeMu.RLock()
	if !c.closed && c.c.Set(binary.LittleEndian.Uint64(hash[:8]), e, 1) {
		// Make the entry visible before the waiters go: requests right
		// after this one hit the cache instead of starting a new flight.
		c.c.Wait()
	}
	c.closeMu.RUnlock()
	return e, nil
}

// Invalidate implements Invalidator: after it returns, no lookup on this
// cache answers from anything known about hash before the call. A key
// known to be in use (see RecentKeyLister) stays so, but is the first to
// be forgotten when room is needed: it may have been revoked.
func (c *Cache) Invalidate(hash KeyHash) {
	c.stripes[stripeOf(&hash)].Add(1)
	c.keys.Demote(knownID(hash))
	c.closeMu.RLock()
	defer c.closeMu.RUnlock()
	if !c.closed {
		c.c.Del(binary.LittleEndian.Uint64(hash[:8]))
	}
}

// InvalidateAll implements Invalidator: after it returns, every lookup goes
// to the store again. Old entries are left for the cache to evict; the
// front, which holds keys themselves, is emptied.
func (c *Cache) InvalidateAll() {
	c.global.Add(1)
	if c.front != nil {
		c.front.Clear()
	}
}

// StoreCalls returns how many lookups reached the store behind the cache.
func (c *Cache) StoreCalls() int64 { return c.storeCalls.Load() }

// Close releases the cache's goroutines; call it once no request can reach
// the cache any more (after the server has shut down). Store lookups still
// running in the background finish safely, and lookups after Close go to
// the store every time. Close is idempotent.
func (c *Cache) Close() {
	c.closeOnce.Do(func() {
		c.closeMu.Lock()
		defer c.closeMu.Unlock()
		c.closed = true
		c.c.Close()
		if c.front != nil {
			c.front.Clear()
		}
	})
}

package keyward

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"golang.org/x/sync/singleflight"
)

// ErrKeyNotFound is what a KeyStore returns for a hash it does not know.
var ErrKeyNotFound = errors.New("keyward: key not found")

// Environment tells live keys from test keys.
type Environment string

// The two environments a key can belong to.
const (
	EnvLive Environment = "live"
	EnvTest Environment = "test"
)

// Valid reports whether e is EnvLive or EnvTest.
func (e Environment) Valid() bool { return e == EnvLive || e == EnvTest }

// Organization owns keys, a rate limit and credits.
type Organization struct {
	// ID identifies the organization; it is the rate-limit and credit
	// account.
	ID string
	// Name is for people.
	Name string
	// Plan names the organization's plan ("free", "starter", …).
	Plan string
	// RatePerMinute overrides the plan's request rate when > 0 (custom
	// enterprise limits).
	RatePerMinute int64
	// MonthlyCredits overrides the plan's credit allocation when > 0.
	MonthlyCredits int64
	// AllowOverage lets calls go on when credits run out.
	AllowOverage bool
}

// KeyRecord is a stored key, joined with its organization. Only the key's
// hash is stored; the plaintext is not recoverable.
type KeyRecord struct {
	// ID identifies the key; it is not secret.
	ID string
	// Hash is the SHA-256 of the key.
	Hash KeyHash
	// Hint is a display form such as "triq_AbCd…wXyZ".
	Hint string
	// Name labels the key (production, development, ci, partner…).
	Name string
	// Environment is live or test.
	Environment Environment
	// Permissions the key holds, in resource:action form; "resource:*"
	// and "*" are wildcards.
	Permissions []string
	// CreatedAt is when the key was made.
	CreatedAt time.Time
	// ExpiresAt is when the key stops working; zero for never.
	ExpiresAt time.Time
	// RevokedAt is when the key was or will be revoked; zero for never. A
	// rotated key has RevokedAt at the end of its grace period.
	RevokedAt time.Time
	// LastUsedAt is the last time the key was seen, as recorded; zero
	// when unknown.
	LastUsedAt time.Time
	// RatePerMinute is a per-key request limit, applied on top of the
	// organization's when > 0.
	RatePerMinute int64
	// Org is the organization the key belongs to.
	Org Organization
}

// Revoked reports whether the key is revoked at now.
func (k *KeyRecord) Revoked(now time.Time) bool {
	return !k.RevokedAt.IsZero() && !now.Before(k.RevokedAt)
}

// Expired reports whether the key has expired at now.
func (k *KeyRecord) Expired(now time.Time) bool {
	return !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt)
}

// KeyStore finds keys by hash. It is the only thing RequireAPIKey needs
// from storage.
//
// The contract:
//   - LookupKey returns the record for hash, joined with its organization,
//     whether or not the key is revoked or expired (the caller decides).
//   - For a hash it does not know it returns (nil, ErrKeyNotFound), and only
//     then: callers cache that answer.
//   - Any other error means the store failed; callers must not read it as
//     "no such key" (keyward answers 503, never 401).
//   - It honours ctx's cancellation and deadline.
//   - The record returned is the caller's: the store must not modify it
//     afterwards, and callers must not modify it either (the cache shares it).
//   - It is safe for concurrent use.
type KeyStore interface {
	LookupKey(ctx context.Context, hash KeyHash) (*KeyRecord, error)
}

// Invalidator is told of key changes so that cached copies are dropped.
// *Cache implements it; stores with a change feed call it.
type Invalidator interface {
	// Invalidate drops what is cached for one key hash.
	Invalidate(hash KeyHash)
	// InvalidateAll drops everything cached.
	InvalidateAll()
}

// UsageRecorder is told of every request RequireAPIKey lets through.
// RecordUse runs on the hot path: it must not block or do I/O;
// implementations count in memory and write in batches (sqlstore does).
type UsageRecorder interface {
	RecordUse(p *Principal)
}

// Plan is a row of the plan table.
type Plan struct {
	// Name is the plan's name, as in Organization.Plan.
	Name string
	// RequestsPerMinute is the organization-wide request rate; 0 for
	// custom (the organization's RatePerMinute must then be set).
	RequestsPerMinute int64
	// MonthlyCredits is the credit allocation per billing period; 0 for
	// custom.
	MonthlyCredits int64
}

// DefaultPlans returns the plan table of DESIGN.md (Triqai's published
// plans), a fresh map the caller may change.
func DefaultPlans() map[string]Plan {
	return map[string]Plan{
		"free":       {Name: "free", RequestsPerMinute: 60, MonthlyCredits: 100},
		"starter":    {Name: "starter", RequestsPerMinute: 300, MonthlyCredits: 4_000},
		"growth":     {Name: "growth", RequestsPerMinute: 600, MonthlyCredits: 25_000},
		"business":   {Name: "business", RequestsPerMinute: 1_200, MonthlyCredits: 100_000},
		"enterprise": {Name: "enterprise"},
	}
}

// CacheConfig configures a Cache. Every zero value means the default said
// beside it.
type CacheConfig struct {
	// MaxKeys bounds the number of cached answers (found and not found).
	// Besides them, a front of at most min(MaxKeys rounded up to a power
	// of two, 4096) slots keeps keys RequireAPIKey recently found.
	// Zero: 100,000.
	MaxKeys int64
	// TTL bounds how long a found key is served from the cache, and so how
	// stale a revocation or plan change can be on an instance whose change
	// feed is lost (give or take the cache clock's 100 ms). Zero: 30s.
	TTL time.Duration
	// NegativeTTL bounds how long "no such key" is cached. Zero: 5s.
	NegativeTTL time.Duration
	// LookupTimeout bounds one store lookup, which may be shared by many
	// requests. Zero: 5s.
	LookupTimeout time.Duration
}

// Cache is a KeyStore in front of another KeyStore: found keys for TTL,
// unknown hashes for NegativeTTL, one store call for concurrent misses of
// one hash. It is safe for concurrent use.
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

	// front holds keys RequireAPIKey recently found, one per slot, by a
	// 128-bit tag of the presented key (two maphash values under seeds
	// made for this cache): a hit costs the tag (≈20 ns) and one atomic
	// load instead of a SHA-256 (≈170 ns here), a ristretto Get and the
	// checksum check. The front entry points to the cache entry, which is
	// served under exactly the checks of any other hit (invalidation
	// generations, expiry), so revocation is unchanged. Forging a hit means
	// finding a string whose tag equals that of a key one does not know: a
	// 128-bit guess. It keeps at most len(front) entries alive beyond
	// ristretto's bound; unknown keys never go in front.
	front    []atomic.Pointer[frontEntry]
	seeds    [2]maphash.Seed
	isClosed atomic.Bool

	// clock is a coarse wall clock in Unix nanoseconds, advanced every
	// clockTick by a goroutine: reading it costs an atomic load where
	// time.Now costs tens of nanoseconds on every hit.
	clock atomic.Int64
	stop  chan struct{}
	done  chan struct{}

	closeOnce sync.Once
	closeMu   sync.RWMutex // held by fills while they write to c.c
	closed    bool

	storeCalls atomic.Int64
}

const genStripes = 4096

// maxFront is the most slots the cache's front has.
const maxFront = 4096

// frontSize is the power of two ≥ maxKeys, at most maxFront.
func frontSize(maxKeys int64) int {
	n := 1
	for n < maxFront && int64(n) < maxKeys {
		n <<= 1
	}
	return n
}

// keyTag identifies a presented key in the cache's front.
type keyTag [2]uint64

type frontEntry struct {
	tag keyTag
	e   *cacheEntry
}

// tag returns key's tag in this cache's front.
func (c *Cache) tag(key string) keyTag {
	return keyTag{maphash.String(c.seeds[0], key), maphash.String(c.seeds[1], key)}
}

func (c *Cache) frontSlot(t keyTag) *atomic.Pointer[frontEntry] {
	return &c.front[t[0]&uint64(len(c.front)-1)]
}

// frontPrincipal returns the Principal of the key tagged t if the front
// holds a current entry for it, else nil. It never reaches ristretto or
// the store.
func (c *Cache) frontPrincipal(t keyTag) *Principal {
	if fe := c.frontSlot(t).Load(); fe != nil && fe.tag == t && c.current(fe.e) && !c.isClosed.Load() {
		return fe.e.principal
	}
	return nil
}

// remember puts e, found for the key tagged t, in the front.
func (c *Cache) remember(t keyTag, e *cacheEntry) {
	if e.rec != nil && !c.isClosed.Load() {
		c.frontSlot(t).Store(&frontEntry{tag: t, e: e})
	}
}

// clockTick is the resolution of the cache's clock: entries live for their
// TTL plus at most this.
const clockTick = 100 * time.Millisecond

type cacheEntry struct {
	hash      KeyHash
	global    uint64
	stripe    uint64 // the generation of stripes[stripeIdx]
	stripeIdx uint16
	expires   int64 // Unix nanoseconds
	rec       *KeyRecord
	principal *Principal
}

var _ KeyStore = (*Cache)(nil)
var _ Invalidator = (*Cache)(nil)

// NewCache returns a Cache in front of store.
func NewCache(store KeyStore, cfg CacheConfig) (*Cache, error) {
	var errs []error
	if store == nil {
		errs = append(errs, &ConfigError{Field: "store", Problem: "is nil"})
	}
	if cfg.MaxKeys < 0 {
		errs = append(errs, &ConfigError{Field: "CacheConfig.MaxKeys", Problem: "is negative"})
	}
	if cfg.TTL < 0 {
		errs = append(errs, &ConfigError{Field: "CacheConfig.TTL", Problem: "is negative"})
	}
	if cfg.NegativeTTL < 0 {
		errs = append(errs, &ConfigError{Field: "CacheConfig.NegativeTTL", Problem: "is negative"})
	}
	if cfg.LookupTimeout < 0 {
		errs = append(errs, &ConfigError{Field: "CacheConfig.LookupTimeout", Problem: "is negative"})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	maxKeys := orDefault(cfg.MaxKeys, 100_000)
	rc, err := ristretto.NewCache(&ristretto.Config[uint64, *cacheEntry]{
		NumCounters: maxKeys * 10,
		MaxCost:     maxKeys,
		// Every Get records the access in a per-P buffer of BufferItems
		// keys; a full buffer is handed to the admission policy's
		// goroutine, which wakes it up. At ristretto's usual 64 that wake-up
		// was ≈5% of an authenticated request on two cores; at 1024 it is
		// sixteen times rarer, and the frequency sketch still sees every
		// access that is not dropped.
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
		front:         make([]atomic.Pointer[frontEntry], frontSize(maxKeys)),
		seeds:         [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		ttl:           orDefault(cfg.TTL, 30*time.Second),
		negTTL:        orDefault(cfg.NegativeTTL, 5*time.Second),
		lookupTimeout: orDefault(cfg.LookupTimeout, 5*time.Second),
		stop:          make(chan struct{}),
		done:          make(chan struct{}),
	}
	c.clock.Store(time.Now().UnixNano())
	go c.tick()
	return c, nil
}

func (c *Cache) tick() {
	defer close(c.done)
	t := time.NewTicker(clockTick)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			c.clock.Store(now.UnixNano())
		case <-c.stop:
			return
		}
	}
}

func orDefault[T int64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// LookupKey implements KeyStore.
func (c *Cache) LookupKey(ctx context.Context, hash KeyHash) (*KeyRecord, error) {
	e, err := c.lookup(ctx, hash)
	if err != nil {
		return nil, err
	}
	return e.rec, nil
}

func stripeOf(h *KeyHash) int { return int(binary.LittleEndian.Uint16(h[8:]) % genStripes) }

func (c *Cache) lookup(ctx context.Context, hash KeyHash) (*cacheEntry, error) {
	stripe := &c.stripes[stripeOf(&hash)]
	if e, ok := c.c.Get(binary.LittleEndian.Uint64(hash[:8])); ok && e.hash == hash && c.current(e) {
		if e.rec == nil {
			return nil, ErrKeyNotFound
		}
		return e, nil
	}
	return c.miss(ctx, hash, stripe)
}

// current says whether e may answer now: no invalidation since its lookup
// began, not expired.
func (c *Cache) current(e *cacheEntry) bool {
	return e.stripe == c.stripes[e.stripeIdx].Load() && e.global == c.global.Load() &&
		e.expires > c.clock.Load()
}

// maxStaleRetries bounds how often one request looks up again because an
// invalidation raced its lookup.
const maxStaleRetries = 3

func (c *Cache) miss(ctx context.Context, hash KeyHash, stripe *atomic.Uint64) (*cacheEntry, error) {
	for range maxStaleRetries {
		g, s := c.global.Load(), stripe.Load()
		// One flight per hash and generation: a request that arrives after
		// an invalidation never joins a lookup that began before it.
		var key [len(hash) + 16]byte
		copy(key[:], hash[:])
		binary.LittleEndian.PutUint64(key[32:], g)
		binary.LittleEndian.PutUint64(key[40:], s)
		ch := c.sf.DoChan(string(key[:]), func() (any, error) {
			return c.fill(hash, g, s)
		})
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
			return nil, res.Err
		}
		e := res.Val.(*cacheEntry)
		if e.rec == nil {
			return nil, ErrKeyNotFound
		}
		return e, nil
	}
	return nil, errInvalidationStorm
}

var errInvalidationStorm = errors.New("keyward: key invalidated during every lookup attempt")

// fill runs one store lookup, detached from any one request's cancellation
// (it serves all the requests waiting on it) but bounded by LookupTimeout.
func (c *Cache) fill(hash KeyHash, g, s uint64) (*cacheEntry, error) {
	// A request that missed the cache just before another flight for the
	// same hash filled it and left the group starts a flight of its own:
	// look once more before going to the store.
	if e, ok := c.c.Get(binary.LittleEndian.Uint64(hash[:8])); ok &&
		e.hash == hash && e.stripe == s && e.global == g && e.expires > c.clock.Load() {
		return e, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.lookupTimeout)
	defer cancel()
	c.storeCalls.Add(1)
	rec, err := c.store.LookupKey(ctx, hash)
	e := &cacheEntry{hash: hash, global: g, stripe: s, stripeIdx: uint16(stripeOf(&hash))}
	ttl := c.negTTL
	switch {
	case errors.Is(err, ErrKeyNotFound):
	case err != nil:
		return nil, err
	case rec == nil:
		return nil, errors.New("keyward: key store returned neither a record nor an error")
	default:
		e.rec = rec
		e.principal = newPrincipal(rec)
		ttl = c.ttl
	}
	// The entry expires by its own clock, checked on every hit (ristretto's
	// TTL would read time.Now on every Get). A Set may be dropped by
	// ristretto's admission policy: then the next request simply looks up
	// again. An entry set here after an invalidation is harmless: its
	// generation is already stale.
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
// cache answers from anything known about hash before the call.
func (c *Cache) Invalidate(hash KeyHash) {
	c.stripes[stripeOf(&hash)].Add(1)
	c.closeMu.RLock()
	defer c.closeMu.RUnlock()
	if !c.closed {
		c.c.Del(binary.LittleEndian.Uint64(hash[:8]))
	}
}

// InvalidateAll implements Invalidator: after it returns, every lookup goes
// to the store again. Old entries are left for the cache to evict.
func (c *Cache) InvalidateAll() { c.global.Add(1) }

// StoreCalls returns how many lookups reached the store behind the cache.
func (c *Cache) StoreCalls() int64 { return c.storeCalls.Load() }

// Close releases the cache's goroutines; call it once no request can reach
// the cache any more (after the server has shut down). Store lookups still
// running in the background finish safely, and lookups after Close go to
// the store every time. Close is idempotent.
func (c *Cache) Close() {
	c.closeOnce.Do(func() {
		close(c.stop)
		<-c.done
		c.closeMu.Lock()
		defer c.closeMu.Unlock()
		c.closed = true
		c.isClosed.Store(true)
		c.c.Close()
		for i := range c.front {
			c.front[i].Store(nil)
		}
	})
}

// ErrOrgNotFound is what a KeyManager returns for an organization id it
// does not know.
var ErrOrgNotFound = errors.New("keyward: organization not found")

// ErrKeyRevoked is what a KeyManager returns when asked to rotate a key
// that is already revoked.
var ErrKeyRevoked = errors.New("keyward: key is revoked")

// NewOrg describes an organization to create.
type NewOrg struct {
	// Name is for people. Required.
	Name string
	// Plan names a plan of the plan table. Zero: "free".
	Plan string
	// RatePerMinute overrides the plan's request rate when > 0. At most
	// MaxRatePerMinute.
	RatePerMinute int64
	// MonthlyCredits overrides the plan's credit allocation when > 0.
	MonthlyCredits int64
	// AllowOverage lets calls go on when credits run out.
	AllowOverage bool
}

// CheckOrganization returns every problem of o against the plan table,
// joined: an empty name, a plan not in plans, a negative rate or credit
// allocation, a rate above MaxRatePerMinute, or a custom-rate plan without
// RatePerMinute. KeyManager implementations call it before storing an
// organization.
func CheckOrganization(o Organization, plans map[string]Plan) error {
	var errs []error
	if o.Name == "" {
		errs = append(errs, errors.New("keyward: organization name is empty"))
	}
	p, ok := plans[o.Plan]
	if !ok {
		errs = append(errs, errors.New("keyward: unknown plan "+o.Plan))
	}
	if o.RatePerMinute < 0 || o.MonthlyCredits < 0 {
		errs = append(errs, errors.New("keyward: rate and credits must not be negative"))
	}
	if err := CheckRatePerMinute(o.RatePerMinute); err != nil {
		errs = append(errs, err)
	}
	if ok && p.RequestsPerMinute == 0 && o.RatePerMinute == 0 {
		errs = append(errs, errors.New("keyward: plan "+o.Plan+" has a custom rate; set RatePerMinute"))
	}
	return errors.Join(errs...)
}

// NewOrganization returns the organization n describes, with id and the
// default plan ("free") filled in, or every problem of it (see
// CheckOrganization).
func NewOrganization(id string, n NewOrg, plans map[string]Plan) (Organization, error) {
	if n.Plan == "" {
		n.Plan = "free"
	}
	o := Organization{ID: id, Name: n.Name, Plan: n.Plan, RatePerMinute: n.RatePerMinute,
		MonthlyCredits: n.MonthlyCredits, AllowOverage: n.AllowOverage}
	if err := CheckOrganization(o, plans); err != nil {
		return Organization{}, err
	}
	return o, nil
}

// Bounds of the durations and rates a KeyManager accepts. Beyond them a
// value is a typo or an attack, and some would wrap around: a time past
// the year 2262 has no int64 nanosecond count, so a store keeping one
// would write a date in the past.
const (
	// MaxKeyLifetime is the longest NewKey.ExpiresIn: 100 years, longer
	// than any credential should live, and far from the year 2262.
	MaxKeyLifetime = 100 * 365 * 24 * time.Hour
	// MaxRotationGrace is the longest grace RotateKey gives the old key:
	// one year. Grace is the time clients need to switch to the new key
	// (a release cycle, an annual on-premises upgrade); an old key that
	// keeps working longer is a second key in all but name.
	MaxRotationGrace = 365 * 24 * time.Hour
	// MaxRatePerMinute is the largest organization or key RatePerMinute:
	// one billion, over 16 million requests a second. It keeps the
	// RateLimit-Policy quota within a structured-field integer (15
	// digits) and every rate exact in JSON (below 2^53).
	MaxRatePerMinute = 1_000_000_000
)

// CheckKeyLifetime returns an error unless d, a key's lifetime
// (NewKey.ExpiresIn; zero for none), is between 0 and MaxKeyLifetime.
func CheckKeyLifetime(d time.Duration) error {
	if d < 0 || d > MaxKeyLifetime {
		return fmt.Errorf("keyward: key lifetime %v is out of range: 0 (none) to %v (keyward.MaxKeyLifetime)", d, MaxKeyLifetime)
	}
	return nil
}

// CheckRotationGrace returns an error if grace, how long RotateKey lets
// the old key work, is above MaxRotationGrace. A grace ≤ 0 (revoke at
// once) is accepted. Both KeyManager implementations call it before
// rotating.
func CheckRotationGrace(grace time.Duration) error {
	if grace > MaxRotationGrace {
		return fmt.Errorf("keyward: rotation grace %v is above the maximum, %v (keyward.MaxRotationGrace)", grace, MaxRotationGrace)
	}
	return nil
}

// CheckRatePerMinute returns an error unless rate, an organization's or a
// key's RatePerMinute (zero: the plan's, or none), is between 0 and
// MaxRatePerMinute.
func CheckRatePerMinute(rate int64) error {
	if rate < 0 || rate > MaxRatePerMinute {
		return fmt.Errorf("keyward: rate %d/min is out of range: 0 to %d/min (keyward.MaxRatePerMinute)", rate, MaxRatePerMinute)
	}
	return nil
}

// Check fills n's defaults (environment live) and returns every problem
// of it, joined: an empty name, an unknown environment, an expiry or rate
// out of range (CheckKeyLifetime, CheckRatePerMinute), malformed
// permissions. KeyManager implementations call it before making a key.
func (n *NewKey) Check() error {
	var errs []error
	if n.Name == "" {
		errs = append(errs, errors.New("keyward: key name is empty"))
	}
	if n.Environment == "" {
		n.Environment = EnvLive
	}
	if !n.Environment.Valid() {
		errs = append(errs, errors.New("keyward: environment must be live or test"))
	}
	if err := CheckKeyLifetime(n.ExpiresIn); err != nil {
		errs = append(errs, err)
	}
	if err := CheckRatePerMinute(n.RatePerMinute); err != nil {
		errs = append(errs, err)
	}
	if err := ValidatePermissions(n.Permissions); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// NewKey describes a key to create.
type NewKey struct {
	// OrgID is the owning organization. Required.
	OrgID string
	// Name labels the key. Required.
	Name string
	// Environment is live or test. Zero: live.
	Environment Environment
	// Permissions the key holds (resource:action, resource:*, *).
	Permissions []string
	// ExpiresIn is the key's lifetime; zero for none. At most
	// MaxKeyLifetime.
	ExpiresIn time.Duration
	// RatePerMinute is a per-key request limit when > 0. At most
	// MaxRatePerMinute.
	RatePerMinute int64
}

// CreatedKey is a key just made: the record, and the plaintext key, which
// is shown this once and kept nowhere.
type CreatedKey struct {
	// Key is the plaintext key.
	Key string
	// Record is the stored record.
	Record KeyRecord
}

// KeyManager creates and changes organizations and keys. memstore and
// sqlstore implement it with one contract:
//   - CreateKey and RotateKey return the plaintext once; only its hash and
//     hint are stored.
//   - RevokeKey takes effect at once and is idempotent; revoking an unknown
//     id is ErrKeyNotFound.
//   - RotateKey makes a new key with the old one's organization, name,
//     environment, permissions, rate and lifetime, and revokes the old key
//     at now+grace (at once for grace ≤ 0). Rotating a revoked key is
//     ErrKeyRevoked; a grace above MaxRotationGrace is refused
//     (CheckRotationGrace) and changes nothing.
//   - Unknown organization ids are ErrOrgNotFound.
//   - Every change to a key or an organization is told to the watching
//     Invalidators before the call returns (for the instance that made it).
type KeyManager interface {
	CreateOrg(ctx context.Context, org NewOrg) (Organization, error)
	Org(ctx context.Context, id string) (Organization, error)
	ListOrgs(ctx context.Context) ([]Organization, error)
	UpdateOrg(ctx context.Context, org Organization) error
	CreateKey(ctx context.Context, key NewKey) (CreatedKey, error)
	ListKeys(ctx context.Context, orgID string) ([]KeyRecord, error)
	RevokeKey(ctx context.Context, keyID string) error
	RotateKey(ctx context.Context, keyID string, grace time.Duration) (CreatedKey, error)
}

// Package keywardtest holds the public contract suites: key backends
// (TestKeyBackend), credit ledgers (TestCreditLedger) and routers
// (RunConformance). memstore, sqlstore on SQLite and sqlstore on
// PostgreSQL all run them, so that they keep exactly one contract; call
// them from your own backend's or adapter's tests to prove it keeps it too.
// Clock is the one settable clock of keyward's tests.
package keywardtest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// KeyBackend is what the key suite needs from a store.
type KeyBackend interface {
	keyward.KeyStore
	manage.KeyManager
	// Watch makes the store tell inv of every change it makes.
	Watch(inv keyward.Invalidator)
}

// Clock is a settable clock for the suites. Its zero value is not usable;
// use NewClock.
type Clock struct{ t atomic.Pointer[time.Time] }

// NewClock returns a clock set to t.
func NewClock(t time.Time) *Clock {
	c := &Clock{}
	c.Set(t)
	return c
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { return *c.t.Load() }

// Set sets the clock.
func (c *Clock) Set(t time.Time) { c.t.Store(&t) }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// NewKeyBackend makes a fresh, empty store for one test, whose clock is
// now, whose key prefix is "triq_" and whose cap on each organization's
// working keys is its default, manage.DefaultMaxKeys. It registers its own cleanup.
type NewKeyBackend func(t *testing.T, now func() time.Time) KeyBackend

type recorder struct {
	mu     sync.Mutex
	hashes []keyward.KeyHash
}

func (r *recorder) Invalidate(h keyward.KeyHash) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hashes = append(r.hashes, h)
}
func (r *recorder) InvalidateAll() {}
func (r *recorder) has(h keyward.KeyHash) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.hashes {
		if x == h {
			return true
		}
	}
	return false
}
func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hashes = nil
}

// start is the suites' epoch. Stores may keep times at microsecond
// precision, so every time the suites set is whole.
var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// TestKeyBackend runs the KeyStore and KeyManager contract against
// stores made by newBackend.
func TestKeyBackend(t *testing.T, newBackend NewKeyBackend) {
	t.Run("Lifecycle", func(t *testing.T) { t.Parallel(); testLifecycle(t, newBackend) })
	t.Run("Errors", func(t *testing.T) { t.Parallel(); testErrors(t, newBackend) })
	t.Run("UpdateOrg", func(t *testing.T) { t.Parallel(); testUpdateOrg(t, newBackend) })
	t.Run("ThroughTheCache", func(t *testing.T) { t.Parallel(); testThroughTheCache(t, newBackend) })
	t.Run("Concurrent", func(t *testing.T) { t.Parallel(); testConcurrent(t, newBackend) })
	t.Run("Bounds", func(t *testing.T) { t.Parallel(); testBounds(t, newBackend) })
	t.Run("RotationChain", func(t *testing.T) { t.Parallel(); testRotationChain(t, newBackend) })
	t.Run("UpdateKey", func(t *testing.T) { t.Parallel(); testUpdateKey(t, newBackend) })
	t.Run("KeySearch", func(t *testing.T) { t.Parallel(); testKeySearch(t, newBackend) })
	t.Run("DeleteOrg", func(t *testing.T) { t.Parallel(); testDeleteOrg(t, newBackend) })
	t.Run("KeyCap", func(t *testing.T) { t.Parallel(); testKeyCap(t, newBackend) })
	t.Run("KeyCapRacing", func(t *testing.T) { t.Parallel(); testKeyCapRacing(t, newBackend) })
	t.Run("KeyPages", func(t *testing.T) { t.Parallel(); testKeyPages(t, newBackend) })
	t.Run("KeyOfOrg", func(t *testing.T) { t.Parallel(); testKeyOfOrg(t, newBackend) })
}

// testBounds: lifetimes, rotation graces and rates are accepted up to
// their bounds, kept exactly, and refused beyond them with nothing
// changed; the values of the overflow report (a lifetime that wrapped
// into the year 1734, a grace that revoked at once) among them.
func testBounds(t *testing.T, newBackend NewKeyBackend) {
	ctx := context.Background()
	clock := NewClock(start)
	s := newBackend(t, clock.Now)
	org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "acme"})
	require.NoError(t, err)

	longest, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "longest",
		ExpiresIn: manage.MaxKeyLifetime, RatePerMinute: keyward.MaxRatePerMinute})
	require.NoError(t, err)
	got, err := s.LookupKey(ctx, longest.Record.Hash)
	require.NoError(t, err)
	assert.True(t, start.Add(manage.MaxKeyLifetime).Equal(got.ExpiresAt), "expires %v", got.ExpiresAt)
	assert.False(t, got.Expired(start))
	assert.Equal(t, int64(keyward.MaxRatePerMinute), got.RatePerMinute)

	for _, d := range []time.Duration{manage.MaxKeyLifetime + time.Second, 2562047 * time.Hour, -time.Second} {
		_, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "x", ExpiresIn: d})
		assert.ErrorContains(t, err, "key lifetime", "ExpiresIn %v", d)
	}
	for _, r := range []int64{keyward.MaxRatePerMinute + 1, math.MaxInt64} {
		_, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "x", RatePerMinute: r})
		assert.ErrorContains(t, err, "MaxRatePerMinute", "key RatePerMinute %d", r)
		_, err = s.CreateOrg(ctx, manage.OrgSpec{Name: "x", RatePerMinute: r})
		assert.ErrorContains(t, err, "MaxRatePerMinute", "organization RatePerMinute %d", r)
		o := org
		o.RatePerMinute = r
		assert.ErrorContains(t, s.UpdateOrg(ctx, o), "MaxRatePerMinute", "UpdateOrg RatePerMinute %d", r)
	}
	fast, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "fast", RatePerMinute: keyward.MaxRatePerMinute})
	require.NoError(t, err)
	assert.Equal(t, int64(keyward.MaxRatePerMinute), fast.RatePerMinute)
	got2, err := s.Org(ctx, org.ID)
	require.NoError(t, err)
	assert.Equal(t, org, got2, "a refused update changes nothing")

	k, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "k"})
	require.NoError(t, err)
	for _, grace := range []time.Duration{manage.MaxRotationGrace + time.Second, 2100000 * time.Hour} {
		_, err := s.RotateKey(ctx, k.Record.ID, grace)
		assert.ErrorContains(t, err, "MaxRotationGrace", "grace %v", grace)
	}
	old, err := s.LookupKey(ctx, k.Record.Hash)
	require.NoError(t, err)
	assert.True(t, old.RevokedAt.IsZero(), "a refused rotation leaves the old key alone")
	keys, err := s.ListKeys(ctx, org.ID, manage.KeyQuery{})
	require.NoError(t, err)
	assert.Len(t, keys, 2, "a refused rotation makes no key")

	_, err = s.RotateKey(ctx, k.Record.ID, manage.MaxRotationGrace)
	require.NoError(t, err)
	old, err = s.LookupKey(ctx, k.Record.Hash)
	require.NoError(t, err)
	assert.True(t, start.Add(manage.MaxRotationGrace).Equal(old.RevokedAt), "revoked at %v", old.RevokedAt)
	assert.False(t, old.Revoked(start.Add(manage.MaxRotationGrace-time.Second)))
}

func testLifecycle(t *testing.T, newBackend NewKeyBackend) {
	ctx := context.Background()
	clock := NewClock(start)
	s := newBackend(t, clock.Now)
	rec := &recorder{}
	s.Watch(rec)
	format, err := keyward.NewKeyFormat("triq_")
	require.NoError(t, err)

	org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "acme"})
	require.NoError(t, err)
	assert.Equal(t, "free", org.Plan)
	assert.NotEmpty(t, org.ID)
	got, err := s.Org(ctx, org.ID)
	require.NoError(t, err)
	assert.Equal(t, org, got)

	k, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "production",
		Permissions: []string{"transactions:*", "categories:read"}, ExpiresIn: 48 * time.Hour, RatePerMinute: 7})
	require.NoError(t, err)
	assert.True(t, format.Valid(k.Key))
	assert.Equal(t, keyward.Hash(k.Key), k.Record.Hash)
	assert.Equal(t, format.Hint(k.Key), k.Record.Hint)
	assert.Equal(t, keyward.EnvLive, k.Record.Environment)
	assert.True(t, start.Equal(k.Record.CreatedAt))
	assert.True(t, start.Add(48*time.Hour).Equal(k.Record.ExpiresAt))
	assert.Equal(t, org, k.Record.Org)

	rec1, err := s.LookupKey(ctx, keyward.Hash(k.Key))
	require.NoError(t, err)
	assert.Equal(t, k.Record.ID, rec1.ID)
	assert.Equal(t, org, rec1.Org)
	assert.Equal(t, []string{"transactions:*", "categories:read"}, rec1.Permissions)
	assert.Equal(t, int64(7), rec1.RatePerMinute)
	assert.Equal(t, "production", rec1.Name)
	assert.False(t, rec1.Revoked(clock.Now()))
	assert.False(t, rec1.Expired(clock.Now()))
	assert.True(t, rec1.Expired(start.Add(48*time.Hour)))

	list, err := s.ListKeys(ctx, org.ID, manage.KeyQuery{})
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.NotContains(t, fmt.Sprintf("%+v", list), k.Key[5:], "the plaintext is kept nowhere")

	// Rotation: a new key now, the old one until the grace ends.
	clock.Advance(time.Hour)
	r, err := s.RotateKey(ctx, k.Record.ID, 24*time.Hour)
	require.NoError(t, err)
	assert.NotEqual(t, k.Key, r.Key)
	assert.NotEqual(t, k.Record.ID, r.Record.ID)
	assert.Equal(t, []string{"transactions:*", "categories:read"}, r.Record.Permissions)
	assert.Equal(t, int64(7), r.Record.RatePerMinute)
	assert.True(t, clock.Now().Add(48*time.Hour).Equal(r.Record.ExpiresAt), "the new key gets the old one's lifetime")
	old, err := s.LookupKey(ctx, keyward.Hash(k.Key))
	require.NoError(t, err)
	assert.False(t, old.Revoked(clock.Now()))
	assert.True(t, old.Revoked(clock.Now().Add(24*time.Hour)))
	assert.True(t, rec.has(k.Record.Hash), "rotation invalidates the old key")
	_, err = s.LookupKey(ctx, keyward.Hash(r.Key))
	require.NoError(t, err)

	// Revocation ends the grace at once and is idempotent.
	rec.reset()
	require.NoError(t, s.RevokeKey(ctx, k.Record.ID))
	assert.True(t, rec.has(k.Record.Hash), "revocation invalidates before it returns")
	old, err = s.LookupKey(ctx, keyward.Hash(k.Key))
	require.NoError(t, err)
	assert.True(t, old.Revoked(clock.Now()))
	revokedAt := old.RevokedAt
	clock.Advance(time.Minute)
	require.NoError(t, s.RevokeKey(ctx, k.Record.ID))
	old, err = s.LookupKey(ctx, keyward.Hash(k.Key))
	require.NoError(t, err)
	assert.True(t, revokedAt.Equal(old.RevokedAt), "a second revocation changes nothing")
	_, err = s.RotateKey(ctx, k.Record.ID, 0)
	assert.ErrorIs(t, err, manage.ErrKeyRevoked)

	// Rotation without grace revokes at once.
	r2, err := s.RotateKey(ctx, r.Record.ID, 0)
	require.NoError(t, err)
	gone, err := s.LookupKey(ctx, keyward.Hash(r.Key))
	require.NoError(t, err)
	assert.True(t, gone.Revoked(clock.Now()))

	list, err = s.ListKeys(ctx, org.ID, manage.KeyQuery{})
	require.NoError(t, err)
	require.Len(t, list, 3)
	assert.Equal(t, r2.Record.ID, list[0].ID, "newest first")
	assert.Equal(t, k.Record.ID, list[2].ID)

	test, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "ci", Environment: keyward.EnvTest})
	require.NoError(t, err)
	assert.Equal(t, keyward.EnvTest, test.Record.Environment)
	assert.True(t, strings.HasPrefix(test.Key, format.TestPrefix()), "a test key looks like one: %s", format.Hint(test.Key))
	assert.True(t, format.Valid(test.Key))
	assert.True(t, test.Record.ExpiresAt.IsZero())
	got2, err := s.LookupKey(ctx, test.Record.Hash)
	require.NoError(t, err)
	assert.Empty(t, got2.Permissions)
	assert.True(t, got2.ExpiresAt.IsZero())
	assert.True(t, got2.RevokedAt.IsZero())
}

func testErrors(t *testing.T, newBackend NewKeyBackend) {
	ctx := context.Background()
	s := newBackend(t, NewClock(start).Now)
	_, err := s.LookupKey(ctx, keyward.Hash("triq_nothing"))
	assert.ErrorIs(t, err, keyward.ErrKeyNotFound)
	_, err = s.CreateKey(ctx, manage.KeySpec{OrgID: "org_nope", Name: "x"})
	assert.ErrorIs(t, err, manage.ErrOrgNotFound)
	assert.ErrorIs(t, s.RevokeKey(ctx, "key_nope"), keyward.ErrKeyNotFound)
	_, err = s.RotateKey(ctx, "key_nope", 0)
	assert.ErrorIs(t, err, keyward.ErrKeyNotFound)
	_, err = s.Org(ctx, "org_nope")
	assert.ErrorIs(t, err, manage.ErrOrgNotFound)
	_, err = s.ListKeys(ctx, "org_nope", manage.KeyQuery{})
	assert.ErrorIs(t, err, manage.ErrOrgNotFound)
	assert.ErrorIs(t, s.UpdateOrg(ctx, keyward.Organization{ID: "org_nope", Name: "x", Plan: "free"}), manage.ErrOrgNotFound)

	_, err = s.CreateOrg(ctx, manage.OrgSpec{Name: "", Plan: "platinum"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "name is empty")
	assert.Contains(t, err.Error(), "unknown plan")
	_, err = s.CreateOrg(ctx, manage.OrgSpec{Name: "big", Plan: "enterprise"})
	assert.ErrorContains(t, err, "RatePerMinute")
	big, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "big", Plan: "enterprise", RatePerMinute: 10_000, MonthlyCredits: 1_000_000, AllowOverage: true})
	require.NoError(t, err)
	got, err := s.Org(ctx, big.ID)
	require.NoError(t, err)
	assert.Equal(t, big, got)
	assert.True(t, got.AllowOverage)

	org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "acme"})
	require.NoError(t, err)
	_, err = s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "x", Environment: "staging", Permissions: []string{"bad perm"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "environment")
	assert.Contains(t, err.Error(), "bad perm")
	_, err = s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: ""})
	assert.ErrorContains(t, err, "name")
	keys, err := s.ListKeys(ctx, org.ID, manage.KeyQuery{})
	require.NoError(t, err)
	assert.Empty(t, keys, "a refused key is not stored")
}

func testUpdateOrg(t *testing.T, newBackend NewKeyBackend) {
	ctx := context.Background()
	s := newBackend(t, NewClock(start).Now)
	rec := &recorder{}
	s.Watch(rec)
	a, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "a"})
	require.NoError(t, err)
	b, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "b"})
	require.NoError(t, err)
	ka, err := s.CreateKey(ctx, manage.KeySpec{OrgID: a.ID, Name: "x"})
	require.NoError(t, err)
	kb, err := s.CreateKey(ctx, manage.KeySpec{OrgID: b.ID, Name: "x"})
	require.NoError(t, err)
	rec.reset()

	a.Plan = "growth"
	a.AllowOverage = true
	require.NoError(t, s.UpdateOrg(ctx, a))
	assert.True(t, rec.has(ka.Record.Hash))
	got, err := s.LookupKey(ctx, ka.Record.Hash)
	require.NoError(t, err)
	assert.Equal(t, "growth", got.Org.Plan)
	assert.True(t, got.Org.AllowOverage)
	got, err = s.LookupKey(ctx, kb.Record.Hash)
	require.NoError(t, err)
	assert.Equal(t, "free", got.Org.Plan)

	a.Plan = "platinum"
	assert.Error(t, s.UpdateOrg(ctx, a), "an unknown plan is refused")

	orgs, err := s.ListOrgs(ctx)
	require.NoError(t, err)
	require.Len(t, orgs, 2)
	assert.Equal(t, "a", orgs[0].Name)
	assert.Equal(t, "growth", orgs[0].Plan)
}

func testThroughTheCache(t *testing.T, newBackend NewKeyBackend) {
	ctx := context.Background()
	s := newBackend(t, NewClock(start).Now)
	cache, err := keyward.NewCache(s, keyward.CacheConfig{TTL: time.Hour})
	require.NoError(t, err)
	defer cache.Close()
	s.Watch(cache)
	org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "a"})
	require.NoError(t, err)
	k, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "x"})
	require.NoError(t, err)
	got, err := cache.LookupKey(ctx, k.Record.Hash)
	require.NoError(t, err)
	assert.Equal(t, "free", got.Org.Plan)
	org.Plan = "business"
	require.NoError(t, s.UpdateOrg(ctx, org))
	got, err = cache.LookupKey(ctx, k.Record.Hash)
	require.NoError(t, err)
	assert.Equal(t, "business", got.Org.Plan, "a plan change reaches through the cache at once")
	require.NoError(t, s.RevokeKey(ctx, k.Record.ID))
	got, err = cache.LookupKey(ctx, k.Record.Hash)
	require.NoError(t, err)
	assert.True(t, got.Revoked(start), "a revocation reaches through the cache at once")
}

func testConcurrent(t *testing.T, newBackend NewKeyBackend) {
	ctx := context.Background()
	s := newBackend(t, time.Now)
	org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "a"})
	require.NoError(t, err)
	const workers, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				k, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "x"})
				if err != nil {
					errs <- err
					return
				}
				if _, err := s.LookupKey(ctx, k.Record.Hash); err != nil {
					errs <- err
				}
				next, err := s.RotateKey(ctx, k.Record.ID, time.Minute)
				if err != nil {
					errs <- err
				}
				for _, id := range []string{k.Record.ID, next.Record.ID} {
					if err := s.RevokeKey(ctx, id); err != nil {
						errs <- err
					}
				}
				if _, err := s.ListKeys(ctx, org.ID, manage.KeyQuery{}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	require.NoError(t, errors.Join(all...))
	keys, err := s.ListKeys(ctx, org.ID, manage.KeyQuery{})
	require.NoError(t, err)
	assert.Len(t, keys, 2*workers*each)
}

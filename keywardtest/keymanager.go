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

// working counts org's keys that work at now.
func working(t *testing.T, s KeyBackend, orgID string, now time.Time) int {
	t.Helper()
	keys, err := s.ListKeys(context.Background(), orgID, manage.KeyQuery{})
	require.NoError(t, err)
	n := 0
	for _, k := range keys {
		if !k.Revoked(now) && !k.Expired(now) {
			n++
		}
	}
	return n
}

// testKeyCap: an organization has at most manage.DefaultMaxKeys working
// keys; revoked and expired keys make room, a rotation with a grace needs
// room and one without does not, and another organization is not
// affected.
func testKeyCap(t *testing.T, newBackend NewKeyBackend) {
	ctx := context.Background()
	clock := NewClock(start)
	s := newBackend(t, clock.Now)
	org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "acme"})
	require.NoError(t, err)
	other, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "other"})
	require.NoError(t, err)
	_, err = s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "short", ExpiresIn: time.Hour})
	require.NoError(t, err)
	var last manage.CreatedKey
	for range manage.DefaultMaxKeys - 1 {
		last, err = s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "k"})
		require.NoError(t, err)
	}
	_, err = s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "one too many"})
	require.ErrorIs(t, err, manage.ErrTooManyKeys)
	_, err = s.RotateKey(ctx, last.Record.ID, time.Hour)
	require.ErrorIs(t, err, manage.ErrTooManyKeys, "the old key would work beside the new one")
	info, err := s.Key(ctx, "", last.Record.ID)
	require.NoError(t, err)
	assert.Empty(t, info.Successor, "the refused rotation changed nothing")
	assert.True(t, info.Record.RevokedAt.IsZero(), "the refused rotation changed nothing")
	_, err = s.CreateKey(ctx, manage.KeySpec{OrgID: other.ID, Name: "k"})
	require.NoError(t, err, "the cap is each organization's")

	next, err := s.RotateKey(ctx, last.Record.ID, 0)
	require.NoError(t, err, "a rotation without grace replaces a key")
	clock.Advance(time.Hour) // short expires
	k, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "in the expired key's place"})
	require.NoError(t, err)
	_, err = s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "one too many"})
	require.ErrorIs(t, err, manage.ErrTooManyKeys)
	require.NoError(t, s.RevokeKey(ctx, k.Record.ID))
	_, err = s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "in the revoked key's place"})
	require.NoError(t, err)
	assert.Equal(t, manage.DefaultMaxKeys, working(t, s, org.ID, clock.Now()))
	_, err = s.RotateKey(ctx, next.Record.ID, time.Hour)
	require.ErrorIs(t, err, manage.ErrTooManyKeys)
}

// testKeyCapRacing: creations and rotations with a grace racing for the
// last places of an organization take exactly those places.
func testKeyCapRacing(t *testing.T, newBackend NewKeyBackend) {
	ctx := context.Background()
	s := newBackend(t, time.Now)
	org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "acme"})
	require.NoError(t, err)
	const free, racers = 6, 12
	var keys []manage.CreatedKey
	for range manage.DefaultMaxKeys - free {
		k, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "k"})
		require.NoError(t, err)
		keys = append(keys, k)
	}
	var wg sync.WaitGroup
	var won, refused atomic.Int32
	errs := make(chan error, 2*racers)
	for i := range racers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "racer"})
			tally(err, &won, &refused, errs)
		}()
		go func() {
			defer wg.Done()
			_, err := s.RotateKey(ctx, keys[i].Record.ID, time.Hour)
			tally(err, &won, &refused, errs)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.EqualValues(t, free, won.Load(), "exactly the free places are taken")
	assert.EqualValues(t, 2*racers-free, refused.Load())
	assert.Equal(t, manage.DefaultMaxKeys, working(t, s, org.ID, time.Now()), "never more than the cap")
}

func tally(err error, won, refused *atomic.Int32, errs chan<- error) {
	switch {
	case err == nil:
		won.Add(1)
	case errors.Is(err, manage.ErrTooManyKeys):
		refused.Add(1)
	default:
		errs <- err
	}
}

// testKeyPages: ListKeys pages newest first, then by id, continuing after
// a key of the organization; another's key or an unknown one is
// ErrKeyNotFound.
func testKeyPages(t *testing.T, newBackend NewKeyBackend) {
	ctx := context.Background()
	clock := NewClock(start)
	s := newBackend(t, clock.Now)
	org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "acme"})
	require.NoError(t, err)
	other, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "other"})
	require.NoError(t, err)
	for i := range 8 {
		_, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: fmt.Sprint("k", i)})
		require.NoError(t, err)
		if i%3 == 0 { // some keys share a creation time: the id orders them
			clock.Advance(time.Second)
		}
	}
	theirs, err := s.CreateKey(ctx, manage.KeySpec{OrgID: other.ID, Name: "theirs"})
	require.NoError(t, err)
	all, err := s.ListKeys(ctx, org.ID, manage.KeyQuery{})
	require.NoError(t, err)
	require.Len(t, all, 8)
	var paged []string
	after := ""
	for range 10 {
		page, err := s.ListKeys(ctx, org.ID, manage.KeyQuery{Limit: 3, After: after})
		require.NoError(t, err)
		require.LessOrEqual(t, len(page), 3)
		for _, k := range page {
			paged = append(paged, k.ID)
		}
		if len(page) < 3 {
			break
		}
		after = page[len(page)-1].ID
	}
	var want []string
	for i, k := range all {
		want = append(want, k.ID)
		if i > 0 {
			prev := all[i-1]
			assert.True(t, prev.CreatedAt.After(k.CreatedAt) || (prev.CreatedAt.Equal(k.CreatedAt) && prev.ID < k.ID),
				"newest first, then by id")
		}
	}
	assert.Equal(t, want, paged, "the pages are the listing, each key once")
	_, err = s.ListKeys(ctx, org.ID, manage.KeyQuery{After: theirs.Record.ID})
	require.ErrorIs(t, err, keyward.ErrKeyNotFound, "another organization's key is no place to continue")
	_, err = s.ListKeys(ctx, org.ID, manage.KeyQuery{After: "key_nope"})
	require.ErrorIs(t, err, keyward.ErrKeyNotFound)
}

// testKeySearch: ListKeys selects by KeyQuery.Search and Statuses as
// KeyQuery.Selects says, every store alike: a name contains the search
// with ASCII letters folded (and no other), an id or a hint begins with
// it; a status is the key's at the store's now; pages of a search
// continue after their last key.
func testKeySearch(t *testing.T, newBackend NewKeyBackend) {
	ctx := context.Background()
	clock := NewClock(start)
	s := newBackend(t, clock.Now)
	org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "acme"})
	require.NoError(t, err)
	other, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "other"})
	require.NoError(t, err)
	mk := func(name string, expiresIn time.Duration) keyward.KeyRecord {
		t.Helper()
		ck, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: name, ExpiresIn: expiresIn})
		require.NoError(t, err)
		clock.Advance(time.Second)
		return ck.Record
	}
	prod := mk("Production EU", 0)
	staging := mk("staging", 0)
	ecole := mk("École 100%_x", 0)
	expiring := mk("expiring PRODUCTION", time.Hour)
	revoked := mk("old production", 0)
	rotated := mk("rotated", 0)
	_, err = s.CreateKey(ctx, manage.KeySpec{OrgID: other.ID, Name: "production"})
	require.NoError(t, err)
	require.NoError(t, s.RevokeKey(ctx, revoked.ID))
	succ, err := s.RotateKey(ctx, rotated.ID, 24*time.Hour)
	require.NoError(t, err)
	clock.Advance(2 * time.Hour) // expiring has expired; rotated is in its grace

	list := func(q manage.KeyQuery) []string {
		t.Helper()
		got, err := s.ListKeys(ctx, org.ID, q)
		require.NoError(t, err)
		ids := []string{}
		for _, k := range got {
			assert.True(t, q.Selects(&k, clock.Now()), "a listed key is one KeyQuery.Selects selects")
			ids = append(ids, k.ID)
		}
		return ids
	}
	ids := func(ks ...keyward.KeyRecord) []string {
		out := []string{}
		for _, k := range ks {
			out = append(out, k.ID)
		}
		return out
	}
	for _, c := range []struct {
		q    manage.KeyQuery
		want []string
	}{
		{manage.KeyQuery{Search: "production"}, ids(revoked, expiring, prod)},
		{manage.KeyQuery{Search: "PRODUCTION eu"}, ids(prod)},
		{manage.KeyQuery{Search: "école"}, ids()}, // É is not ASCII: not folded
		{manage.KeyQuery{Search: "Éc"}, ids(ecole)},
		{manage.KeyQuery{Search: "100%_"}, ids(ecole)}, // no LIKE wildcards
		{manage.KeyQuery{Search: "%"}, ids(ecole)},
		{manage.KeyQuery{Search: staging.ID}, ids(staging)},
		{manage.KeyQuery{Search: staging.ID[:len(staging.ID)-1] + "~"}, ids()},
		{manage.KeyQuery{Search: staging.Hint}, ids(staging)},
		{manage.KeyQuery{Search: staging.Hint[:len(staging.Hint)-2]}, ids(staging)},
		{manage.KeyQuery{Statuses: []string{manage.StatusRevoked}}, ids(revoked)},
		{manage.KeyQuery{Statuses: []string{manage.StatusExpired}}, ids(expiring)},
		{manage.KeyQuery{Statuses: []string{manage.StatusRotating}}, ids(rotated)},
		{manage.KeyQuery{Statuses: []string{manage.StatusActive}}, ids(succ.Record, ecole, staging, prod)},
		{manage.KeyQuery{Statuses: []string{manage.StatusActive, manage.StatusRotating, manage.StatusExpired}, Search: "product"},
			ids(expiring, prod)},
		{manage.KeyQuery{Statuses: []string{"lost"}}, ids()},
	} {
		assert.Equal(t, c.want, list(c.q), "%+v", c.q)
	}
	// A hint's prefix in another case is not a hint's prefix, but it may
	// still be in a name.
	hintCase := manage.KeyQuery{Search: strings.ToUpper(staging.Hint[:8])}
	assert.NotContains(t, list(hintCase), staging.ID)

	// Pages of a search: each key once, in order.
	q := manage.KeyQuery{Search: "o", Limit: 2}
	all := list(manage.KeyQuery{Search: "o"})
	var paged []string
	for range 10 {
		page := list(q)
		paged = append(paged, page...)
		if len(page) < q.Limit {
			break
		}
		q.After = page[len(page)-1]
	}
	assert.Equal(t, all, paged)
}

// testKeyOfOrg: Key given an organization finds only its keys.
func testKeyOfOrg(t *testing.T, newBackend NewKeyBackend) {
	ctx := context.Background()
	s := newBackend(t, time.Now)
	org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "acme"})
	require.NoError(t, err)
	other, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "other"})
	require.NoError(t, err)
	k, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "k"})
	require.NoError(t, err)
	got, err := s.Key(ctx, org.ID, k.Record.ID)
	require.NoError(t, err)
	assert.Equal(t, k.Record.ID, got.Record.ID)
	got, err = s.Key(ctx, "", k.Record.ID)
	require.NoError(t, err, "no organization: any")
	assert.Equal(t, k.Record.ID, got.Record.ID)
	_, err = s.Key(ctx, other.ID, k.Record.ID)
	require.ErrorIs(t, err, keyward.ErrKeyNotFound, "another organization's key is not found")
}

// testRotationChain: a key has at most one successor, even when
// rotations race; the two keys name each other; Key and KeysByHint find
// keys by id and by hint.
func testRotationChain(t *testing.T, newBackend NewKeyBackend) {
	ctx := context.Background()
	clock := NewClock(start)
	s := newBackend(t, clock.Now)
	org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "acme"})
	require.NoError(t, err)
	k, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "production"})
	require.NoError(t, err)
	info, err := s.Key(ctx, "", k.Record.ID)
	require.NoError(t, err)
	assert.Equal(t, k.Record.ID, info.Record.ID)
	assert.Equal(t, k.Record.Hint, info.Record.Hint)
	assert.Equal(t, org, info.Record.Org)
	assert.Empty(t, info.Predecessor, "a new key has no predecessor")
	assert.Empty(t, info.Successor, "and no successor")

	r, err := s.RotateKey(ctx, k.Record.ID, time.Hour)
	require.NoError(t, err)
	_, err = s.RotateKey(ctx, k.Record.ID, time.Hour)
	require.ErrorIs(t, err, manage.ErrKeyRotated, "a key in its grace period is not rotated again")
	assert.ErrorContains(t, err, r.Record.ID, "the error names the successor")
	old, err := s.Key(ctx, "", k.Record.ID)
	require.NoError(t, err)
	assert.Equal(t, r.Record.ID, old.Successor)
	assert.Empty(t, old.Predecessor)
	assert.True(t, start.Add(time.Hour).Equal(old.Record.RevokedAt), "the refused rotation left the grace alone")
	next, err := s.Key(ctx, "", r.Record.ID)
	require.NoError(t, err)
	assert.Equal(t, k.Record.ID, next.Predecessor)
	assert.Empty(t, next.Successor)
	keys, err := s.ListKeys(ctx, org.ID, manage.KeyQuery{})
	require.NoError(t, err)
	assert.Len(t, keys, 2, "the refused rotation made no key")

	// Racing rotations of one key: exactly one wins.
	k2, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "ci"})
	require.NoError(t, err)
	const racers = 6
	var wg sync.WaitGroup
	var won atomic.Int32
	errs := make(chan error, racers)
	for range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.RotateKey(ctx, k2.Record.ID, time.Hour)
			switch {
			case err == nil:
				won.Add(1)
			case !errors.Is(err, manage.ErrKeyRotated):
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("racing rotation: %v", err)
	}
	assert.Equal(t, int32(1), won.Load(), "one successor")
	keys, err = s.ListKeys(ctx, org.ID, manage.KeyQuery{})
	require.NoError(t, err)
	assert.Len(t, keys, 4)

	// Revoked beats rotated: the old key's grace is over.
	clock.Advance(2 * time.Hour)
	_, err = s.RotateKey(ctx, k.Record.ID, 0)
	assert.ErrorIs(t, err, manage.ErrKeyRevoked)
	// The successor rotates on.
	r2, err := s.RotateKey(ctx, r.Record.ID, 0)
	require.NoError(t, err)
	mid, err := s.Key(ctx, "", r.Record.ID)
	require.NoError(t, err)
	assert.Equal(t, k.Record.ID, mid.Predecessor)
	assert.Equal(t, r2.Record.ID, mid.Successor)

	found, err := s.KeysByHint(ctx, r2.Record.Hint)
	require.NoError(t, err)
	require.Len(t, found, 1)
	assert.Equal(t, r2.Record.ID, found[0].ID)
	assert.Equal(t, org.ID, found[0].Org.ID)
	found, err = s.KeysByHint(ctx, "triq_none…none")
	require.NoError(t, err)
	assert.Empty(t, found)
	_, err = s.Key(ctx, "", "key_nope")
	assert.ErrorIs(t, err, keyward.ErrKeyNotFound)
}

// testUpdateKey: a key's name, permissions and expiry change, the change
// is told to the watchers, a refused change changes nothing.
func testUpdateKey(t *testing.T, newBackend NewKeyBackend) {
	ctx := context.Background()
	clock := NewClock(start)
	s := newBackend(t, clock.Now)
	rec := &recorder{}
	s.Watch(rec)
	org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "acme"})
	require.NoError(t, err)
	k, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "production",
		Permissions: []string{"transactions:read"}, ExpiresIn: time.Hour, RatePerMinute: 9})
	require.NoError(t, err)
	rec.reset()
	clock.Advance(time.Minute)

	name, perms, week, never := "partner", []string{"transactions:*", "categories:read"}, 7*24*time.Hour, time.Duration(0)
	got, err := s.UpdateKey(ctx, k.Record.ID, manage.KeyChange{Name: &name, Permissions: &perms, ExpiresIn: &week})
	require.NoError(t, err)
	assert.True(t, rec.has(k.Record.Hash), "an update invalidates the key")
	assert.Equal(t, "partner", got.Name)
	assert.Equal(t, perms, got.Permissions)
	assert.True(t, clock.Now().Add(week).Equal(got.ExpiresAt), "expires %v", got.ExpiresAt)
	assert.Equal(t, int64(9), got.RatePerMinute)
	looked, err := s.LookupKey(ctx, k.Record.Hash)
	require.NoError(t, err)
	assert.Equal(t, got.Name, looked.Name)
	assert.Equal(t, perms, looked.Permissions)
	assert.True(t, got.ExpiresAt.Equal(looked.ExpiresAt))

	got, err = s.UpdateKey(ctx, k.Record.ID, manage.KeyChange{ExpiresIn: &never})
	require.NoError(t, err)
	assert.True(t, got.ExpiresAt.IsZero(), "zero: never expires")
	assert.Equal(t, "partner", got.Name, "nil fields are left alone")
	assert.Equal(t, perms, got.Permissions)

	empty, bad, tooLong := "", []string{"bad perm"}, manage.MaxKeyLifetime+time.Second
	_, err = s.UpdateKey(ctx, k.Record.ID, manage.KeyChange{Name: &empty, Permissions: &bad, ExpiresIn: &tooLong})
	require.Error(t, err)
	assert.ErrorContains(t, err, "name is empty")
	assert.ErrorContains(t, err, "bad perm")
	assert.ErrorContains(t, err, "key lifetime")
	looked, err = s.LookupKey(ctx, k.Record.Hash)
	require.NoError(t, err)
	assert.Equal(t, "partner", looked.Name, "a refused change changes nothing")

	_, err = s.UpdateKey(ctx, "key_nope", manage.KeyChange{Name: &name})
	assert.ErrorIs(t, err, keyward.ErrKeyNotFound)
	require.NoError(t, s.RevokeKey(ctx, k.Record.ID))
	_, err = s.UpdateKey(ctx, k.Record.ID, manage.KeyChange{Name: &name})
	assert.ErrorIs(t, err, manage.ErrKeyRevoked)

	// An expired key is not brought back; a rotation never outlives
	// MaxKeyLifetime, however far an update moved the expiry.
	short, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "short", ExpiresIn: time.Hour})
	require.NoError(t, err)
	long := manage.MaxKeyLifetime
	_, err = s.UpdateKey(ctx, short.Record.ID, manage.KeyChange{ExpiresIn: &long})
	require.NoError(t, err)
	clock.Advance(manage.MaxKeyLifetime / 2)
	r, err := s.RotateKey(ctx, short.Record.ID, 0)
	require.NoError(t, err)
	assert.False(t, r.Record.ExpiresAt.After(clock.Now().Add(manage.MaxKeyLifetime)), "expires %v", r.Record.ExpiresAt)
	clock.Advance(manage.MaxKeyLifetime)
	_, err = s.UpdateKey(ctx, r.Record.ID, manage.KeyChange{ExpiresIn: &long})
	assert.ErrorIs(t, err, manage.ErrKeyExpired)
	// Nor by a rotation, which changes nothing.
	_, err = s.RotateKey(ctx, r.Record.ID, 0)
	assert.ErrorIs(t, err, manage.ErrKeyExpired)
	info, err := s.Key(ctx, "", r.Record.ID)
	require.NoError(t, err)
	assert.Empty(t, info.Successor, "a refused rotation leaves no successor")
	assert.True(t, info.Record.RevokedAt.IsZero(), "nor revokes the key")
}

// testDeleteOrg: refused while a key works, unless forced; then the
// organization and its keys are gone and the watchers told.
func testDeleteOrg(t *testing.T, newBackend NewKeyBackend) {
	ctx := context.Background()
	clock := NewClock(start)
	s := newBackend(t, clock.Now)
	rec := &recorder{}
	s.Watch(rec)
	org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "acme"})
	require.NoError(t, err)
	other, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "other"})
	require.NoError(t, err)
	k, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "production"})
	require.NoError(t, err)
	rotating, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "ci"})
	require.NoError(t, err)
	successor, err := s.RotateKey(ctx, rotating.Record.ID, time.Hour)
	require.NoError(t, err)
	require.NoError(t, s.RevokeKey(ctx, successor.Record.ID))
	require.NoError(t, s.RevokeKey(ctx, k.Record.ID))
	ko, err := s.CreateKey(ctx, manage.KeySpec{OrgID: other.ID, Name: "x"})
	require.NoError(t, err)

	err = s.DeleteOrg(ctx, org.ID, false)
	require.ErrorIs(t, err, manage.ErrOrgHasLiveKeys, "a key in its grace period still works")
	_, err = s.Org(ctx, org.ID)
	require.NoError(t, err, "a refused delete changes nothing")
	_, err = s.LookupKey(ctx, rotating.Record.Hash)
	require.NoError(t, err)

	rec.reset()
	require.NoError(t, s.DeleteOrg(ctx, org.ID, true))
	_, err = s.Org(ctx, org.ID)
	assert.ErrorIs(t, err, manage.ErrOrgNotFound)
	for _, h := range []keyward.KeyHash{k.Record.Hash, rotating.Record.Hash, successor.Record.Hash} {
		_, err = s.LookupKey(ctx, h)
		assert.ErrorIs(t, err, keyward.ErrKeyNotFound)
		assert.True(t, rec.has(h), "deleting invalidates the organization's keys")
	}
	_, err = s.Key(ctx, "", k.Record.ID)
	assert.ErrorIs(t, err, keyward.ErrKeyNotFound)
	_, err = s.LookupKey(ctx, ko.Record.Hash)
	assert.NoError(t, err, "other organizations are left alone")
	assert.ErrorIs(t, s.DeleteOrg(ctx, org.ID, true), manage.ErrOrgNotFound)

	// Without live keys no force is needed: a revoked key, an expired one.
	quiet, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "quiet"})
	require.NoError(t, err)
	gone, err := s.CreateKey(ctx, manage.KeySpec{OrgID: quiet.ID, Name: "old"})
	require.NoError(t, err)
	require.NoError(t, s.RevokeKey(ctx, gone.Record.ID))
	_, err = s.CreateKey(ctx, manage.KeySpec{OrgID: quiet.ID, Name: "short", ExpiresIn: time.Minute})
	require.NoError(t, err)
	clock.Advance(time.Minute)
	require.NoError(t, s.DeleteOrg(ctx, quiet.ID, false))
	orgs, err := s.ListOrgs(ctx)
	require.NoError(t, err)
	require.Len(t, orgs, 1)
	assert.Equal(t, other.ID, orgs[0].ID)
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

// The key suite's changes to what exists: rotation chains, updates of a
// key, deletion of an organization.

package keywardtest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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

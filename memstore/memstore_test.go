package memstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/memstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type recorder struct {
	hashes []keyward.KeyHash
	all    int
}

func (r *recorder) Invalidate(h keyward.KeyHash) { r.hashes = append(r.hashes, h) }
func (r *recorder) InvalidateAll()               { r.all++ }

func newStore(t *testing.T, now *time.Time) *memstore.Store {
	t.Helper()
	s, err := memstore.New(memstore.Options{Prefix: "triq_", Now: func() time.Time { return *now }})
	require.NoError(t, err)
	return s
}

func TestKeyLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := newStore(t, &now)
	rec := &recorder{}
	s.Watch(rec)

	org, err := s.CreateOrg(ctx, keyward.NewOrg{Name: "acme"})
	require.NoError(t, err)
	assert.Equal(t, "free", org.Plan)

	k, err := s.CreateKey(ctx, keyward.NewKey{OrgID: org.ID, Name: "production", Permissions: []string{"transactions:*"}, ExpiresIn: 48 * time.Hour})
	require.NoError(t, err)
	assert.Equal(t, keyward.KeyOK, s.Format().Parse(k.Key))
	assert.Equal(t, keyward.Hash(k.Key), k.Record.Hash)
	assert.Equal(t, s.Format().Hint(k.Key), k.Record.Hint)
	assert.Equal(t, keyward.EnvLive, k.Record.Environment)
	assert.Equal(t, now.Add(48*time.Hour), k.Record.ExpiresAt)

	got, err := s.LookupKey(ctx, keyward.Hash(k.Key))
	require.NoError(t, err)
	assert.Equal(t, org, got.Org)
	assert.Equal(t, k.Record.ID, got.ID)

	list, err := s.ListKeys(ctx, org.ID)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.NotContains(t, fmt.Sprintf("%+v", list), k.Key[5:], "the plaintext is kept nowhere")

	// Rotation: a new key now, the old one until the grace ends.
	now = now.Add(time.Hour)
	r, err := s.RotateKey(ctx, k.Record.ID, 24*time.Hour)
	require.NoError(t, err)
	assert.NotEqual(t, k.Key, r.Key)
	assert.Equal(t, []string{"transactions:*"}, r.Record.Permissions)
	assert.Equal(t, now.Add(48*time.Hour), r.Record.ExpiresAt, "the new key gets the old one's lifetime")
	old, _ := s.LookupKey(ctx, keyward.Hash(k.Key))
	assert.False(t, old.Revoked(now))
	assert.True(t, old.Revoked(now.Add(24*time.Hour)))
	assert.Contains(t, rec.hashes, k.Record.Hash, "rotation invalidates the old key")

	// Revocation ends the grace at once and is idempotent.
	require.NoError(t, s.RevokeKey(ctx, k.Record.ID))
	old, _ = s.LookupKey(ctx, keyward.Hash(k.Key))
	assert.True(t, old.Revoked(now))
	revokedAt := old.RevokedAt
	now = now.Add(time.Minute)
	require.NoError(t, s.RevokeKey(ctx, k.Record.ID))
	old, _ = s.LookupKey(ctx, keyward.Hash(k.Key))
	assert.Equal(t, revokedAt, old.RevokedAt)
	_, err = s.RotateKey(ctx, k.Record.ID, 0)
	assert.ErrorIs(t, err, keyward.ErrKeyRevoked)

	list, err = s.ListKeys(ctx, org.ID)
	require.NoError(t, err)
	require.Len(t, list, 2)
	assert.Equal(t, r.Record.ID, list[0].ID, "newest first")
}

func TestErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now()
	s := newStore(t, &now)
	_, err := s.LookupKey(ctx, keyward.Hash("triq_nothing"))
	assert.ErrorIs(t, err, keyward.ErrKeyNotFound)
	_, err = s.CreateKey(ctx, keyward.NewKey{OrgID: "org_nope", Name: "x"})
	assert.ErrorIs(t, err, keyward.ErrOrgNotFound)
	assert.ErrorIs(t, s.RevokeKey(ctx, "key_nope"), keyward.ErrKeyNotFound)
	_, err = s.RotateKey(ctx, "key_nope", 0)
	assert.ErrorIs(t, err, keyward.ErrKeyNotFound)
	_, err = s.Org(ctx, "org_nope")
	assert.ErrorIs(t, err, keyward.ErrOrgNotFound)

	_, err = s.CreateOrg(ctx, keyward.NewOrg{Name: "", Plan: "platinum"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "name is empty")
	assert.Contains(t, err.Error(), "unknown plan")
	_, err = s.CreateOrg(ctx, keyward.NewOrg{Name: "big", Plan: "enterprise"})
	assert.ErrorContains(t, err, "RatePerMinute")
	_, err = s.CreateOrg(ctx, keyward.NewOrg{Name: "big", Plan: "enterprise", RatePerMinute: 10_000})
	assert.NoError(t, err)

	org, err := s.CreateOrg(ctx, keyward.NewOrg{Name: "acme"})
	require.NoError(t, err)
	_, err = s.CreateKey(ctx, keyward.NewKey{OrgID: org.ID, Name: "x", Environment: "staging", Permissions: []string{"bad perm"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "environment")
	assert.Contains(t, err.Error(), "bad perm")

	_, err = memstore.New(memstore.Options{})
	assert.Error(t, err)
}

func TestUpdateOrgInvalidatesItsKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now()
	s := newStore(t, &now)
	rec := &recorder{}
	s.Watch(rec)
	a, _ := s.CreateOrg(ctx, keyward.NewOrg{Name: "a"})
	b, _ := s.CreateOrg(ctx, keyward.NewOrg{Name: "b"})
	ka, _ := s.CreateKey(ctx, keyward.NewKey{OrgID: a.ID, Name: "x"})
	kb, _ := s.CreateKey(ctx, keyward.NewKey{OrgID: b.ID, Name: "x"})
	rec.hashes = nil

	a.Plan = "growth"
	require.NoError(t, s.UpdateOrg(ctx, a))
	assert.Equal(t, []keyward.KeyHash{ka.Record.Hash}, rec.hashes)
	got, _ := s.LookupKey(ctx, ka.Record.Hash)
	assert.Equal(t, "growth", got.Org.Plan)
	got, _ = s.LookupKey(ctx, kb.Record.Hash)
	assert.Equal(t, "free", got.Org.Plan)

	orgs, err := s.ListOrgs(ctx)
	require.NoError(t, err)
	require.Len(t, orgs, 2)
	assert.Equal(t, "a", orgs[0].Name)
}

func TestPlanChangeReachesThroughTheCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now()
	s := newStore(t, &now)
	cache, err := keyward.NewCache(s, keyward.CacheConfig{TTL: time.Hour})
	require.NoError(t, err)
	defer cache.Close()
	s.Watch(cache)
	org, _ := s.CreateOrg(ctx, keyward.NewOrg{Name: "a"})
	k, _ := s.CreateKey(ctx, keyward.NewKey{OrgID: org.ID, Name: "x"})
	got, err := cache.LookupKey(ctx, k.Record.Hash)
	require.NoError(t, err)
	assert.Equal(t, "free", got.Org.Plan)
	org.Plan = "business"
	require.NoError(t, s.UpdateOrg(ctx, org))
	got, err = cache.LookupKey(ctx, k.Record.Hash)
	require.NoError(t, err)
	assert.Equal(t, "business", got.Org.Plan)
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now()
	s := newStore(t, &now)
	org, _ := s.CreateOrg(ctx, keyward.NewOrg{Name: "a"})
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 200 {
				k, err := s.CreateKey(ctx, keyward.NewKey{OrgID: org.ID, Name: "x"})
				if !assert.NoError(t, err) {
					return
				}
				_, _ = s.LookupKey(ctx, k.Record.Hash)
				_, _ = s.RotateKey(ctx, k.Record.ID, time.Minute)
				_ = s.RevokeKey(ctx, k.Record.ID)
				_, _ = s.ListKeys(ctx, org.ID)
			}
		}()
	}
	for range 4 {
		<-done
	}
	keys, err := s.ListKeys(ctx, org.ID)
	require.NoError(t, err)
	assert.Len(t, keys, 1600)
}

package memstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/keywardtest"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
	"github.com/stretchr/testify/require"
)

func TestKeyBackend(t *testing.T) {
	keywardtest.TestKeyBackend(t, func(t *testing.T, now func() time.Time) keywardtest.KeyBackend {
		s, err := memstore.New(memstore.Options{Prefix: "triq_", Now: now})
		require.NoError(t, err)
		return s
	})
}

func TestNewNeedsAPrefix(t *testing.T) {
	_, err := memstore.New(memstore.Options{})
	require.Error(t, err)
}

// A nil Invalidator, typed or not (a *keyward.Cache whose NewCache failed),
// is ignored: changes go on, nothing panics.
func TestWatchIgnoresNil(t *testing.T) {
	ctx := context.Background()
	s, err := memstore.New(memstore.Options{Prefix: "triq_"})
	require.NoError(t, err)
	var cache *keyward.Cache
	s.Watch(nil)
	s.Watch(cache)
	org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "acme"})
	require.NoError(t, err)
	k, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "prod"})
	require.NoError(t, err)
	require.NoError(t, s.RevokeKey(ctx, k.Record.ID))
}

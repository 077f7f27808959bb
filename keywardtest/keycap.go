// The key suite's cap on working keys and its pages: how many keys an
// organization may hold at once, and how its keys are listed.

package keywardtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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

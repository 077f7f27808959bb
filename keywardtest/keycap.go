// The key suite's cap on working keys and its listings: how many keys an
// organization may hold at once, and how its keys are listed and searched.

package keywardtest

import (
	"context"
	"errors"
	"fmt"
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

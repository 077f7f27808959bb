package sqlstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/keyward/keyward/usage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Misuse of the exported API by a host: each is ignored or refused, and
// nothing panics or stops working.

// storeWithKey opens a store of engine with an organization and a key.
func storeWithKey(t *testing.T, engine string) (*sqlstore.Store, keyward.Organization, *keyward.KeyRecord) {
	t.Helper()
	ctx := context.Background()
	s := open(t, newDSN(t, engine), sqlstore.Options{})
	org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "acme"})
	require.NoError(t, err)
	k, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "prod"})
	require.NoError(t, err)
	return s, org, &k.Record
}

// A nil Invalidator, typed or not (a *keyward.Cache whose NewCache failed),
// is ignored: the change feed runs, tells the real watcher of another
// instance's change, and nothing panics on its goroutine (which would end
// the process) or in the changing call.
func TestWatchIgnoresNil(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			dsn := newDSN(t, engine)
			s := open(t, dsn, sqlstore.Options{})
			var cache *keyward.Cache
			s.Watch(nil)
			s.Watch(cache)
			watcher := &counter{}
			s.Watch(watcher)
			other := open(t, dsn, sqlstore.Options{})
			org, err := other.CreateOrg(context.Background(), manage.OrgSpec{Name: "acme"})
			require.NoError(t, err)
			k, err := other.CreateKey(context.Background(), manage.KeySpec{OrgID: org.ID, Name: "prod"})
			require.NoError(t, err)
			require.NoError(t, other.RevokeKey(context.Background(), k.Record.ID))
			require.Eventually(t, func() bool { return watcher.one.Load() > 0 }, 5*time.Second, 10*time.Millisecond,
				"the feed told the real watcher of the other instance's change")
			s2, _, k2 := storeWithKey(t, engine)
			s2.Watch(nil)
			require.NoError(t, s2.RevokeKey(context.Background(), k2.ID), "a change of its own tells no nil watcher")
		})
	}
}

// Usage recorded for ids no store made (a hand-made KeyRecord) that the
// database cannot hold is dropped at the flush; it never blocks the other
// counts, then or at any later flush. A nil record is ignored.
func TestUsageOfUnstorableIDsIsDropped(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			s, org, good := storeWithKey(t, engine)
			now := time.Now()
			for _, bad := range []*keyward.KeyRecord{
				{ID: "key_\x00", Org: keyward.Organization{ID: org.ID}},
				{ID: "key_\xff", Org: keyward.Organization{ID: org.ID}},
				{ID: "key_elsewhere", Org: keyward.Organization{ID: "org_\x00"}},
			} {
				s.RecordUse(bad)
				s.RecordOutcome(bad, usage.Served, 1, now)
			}
			s.RecordUse(nil)
			s.RecordOutcome(nil, usage.Served, 1, now)
			for range 3 {
				s.RecordUse(good)
				s.RecordOutcome(good, usage.Served, 2, now)
			}
			require.NoError(t, s.FlushUsage(ctx))
			n, err := s.Usage(ctx, org.ID, now)
			require.NoError(t, err)
			assert.Equal(t, int64(3), n)
			days, err := s.UsageByDay(ctx, org.ID, "", now, now)
			require.NoError(t, err)
			require.Len(t, days, 1)
			assert.Equal(t, int64(3), days[0].Requests[usage.Served])
			assert.Equal(t, int64(6), days[0].Credits)

			s.RecordUse(good)
			require.NoError(t, s.FlushUsage(ctx), "nothing was kept to fail again")
			n, err = s.Usage(ctx, org.ID, now)
			require.NoError(t, err)
			assert.Equal(t, int64(4), n)
		})
	}
}

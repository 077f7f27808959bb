package sqlstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/stretchr/testify/require"
)

// A nil Invalidator, typed or not (a *keyward.Cache whose NewCache failed),
// is ignored: the change feed starts and runs, changes go on, and nothing
// panics on the feed's goroutine (which would end the process).
func TestWatchIgnoresNil(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			s := open(t, newDSN(t, engine), sqlstore.Options{})
			var cache *keyward.Cache
			s.Watch(nil)
			s.Watch(cache)
			org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "acme"})
			require.NoError(t, err)
			k, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "prod"})
			require.NoError(t, err)
			require.NoError(t, s.RevokeKey(ctx, k.Record.ID))
			time.Sleep(200 * time.Millisecond) // a few polls (50 ms) of the feed
		})
	}
}

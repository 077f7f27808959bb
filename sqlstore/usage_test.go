package sqlstore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/keyward/keyward/usage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Outcomes are counted by key, day and outcome in memory, written in one
// batch per flush, and read back by day: for the organization and for one
// key, with the days without calls as zeros.
func TestOutcomesByKeyAndDay(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := newDSN(t, engine)
			s := open(t, dsn, sqlstore.Options{FlushInterval: time.Hour})
			org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "a"})
			require.NoError(t, err)
			k1, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "one"})
			require.NoError(t, err)
			k2, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "two"})
			require.NoError(t, err)
			day1 := time.Date(2026, 11, 27, 23, 59, 0, 0, time.UTC)
			day3 := day1.Add(48 * time.Hour)

			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for range 100 {
						s.RecordOutcome(&k1.Record, usage.Served, 2, day1)
						s.RecordOutcome(&k2.Record, usage.RateLimited, 0, day1)
						s.RecordOutcome(&k1.Record, usage.Served, 1, day3)
						s.RecordOutcome(&k2.Record, usage.Forbidden, 0, day3)
					}
				})
			}
			// A flush in the middle of the counting loses nothing.
			require.NoError(t, s.FlushUsage(ctx))
			wg.Wait()
			s.RecordOutcome(&k2.Record, usage.NoCredits, 0, day3)
			require.NoError(t, s.FlushUsage(ctx))
			require.NoError(t, s.FlushUsage(ctx), "a flush with nothing to write")

			days, err := s.UsageByDay(ctx, org.ID, "", day1, day3)
			require.NoError(t, err)
			require.Len(t, days, 3)
			assert.Equal(t, time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC), days[0].Day)
			assert.Equal(t, int64(800), days[0].Requests[usage.Served])
			assert.Equal(t, int64(800), days[0].Requests[usage.RateLimited])
			assert.Equal(t, int64(1600), days[0].Credits)
			assert.Equal(t, int64(0), days[1].Total(), "a day without calls")
			assert.Equal(t, int64(800), days[2].Requests[usage.Served])
			assert.Equal(t, int64(800), days[2].Requests[usage.Forbidden])
			assert.Equal(t, int64(1), days[2].Requests[usage.NoCredits])
			assert.Equal(t, int64(800), days[2].Credits)

			one, err := s.UsageByDay(ctx, org.ID, k2.Record.ID, day3, day3)
			require.NoError(t, err)
			require.Len(t, one, 1)
			assert.Equal(t, int64(0), one[0].Requests[usage.Served], "the other key's calls are not its")
			assert.Equal(t, int64(801), one[0].Total())

			// Another instance reads what this one wrote; deleting the
			// organization deletes its usage.
			other := open(t, dsn, sqlstore.Options{})
			again, err := other.UsageByDay(ctx, org.ID, "", day1, day3)
			require.NoError(t, err)
			assert.Equal(t, days, again)
			require.NoError(t, s.DeleteOrg(ctx, org.ID, true))
			gone, err := other.UsageByDay(ctx, org.ID, "", day1, day3)
			require.NoError(t, err)
			assert.Equal(t, int64(0), gone[0].Total()+gone[2].Total())
		})
	}
}

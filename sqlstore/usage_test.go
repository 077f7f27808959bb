package sqlstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/keywardtest"
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

// Calls are written by hour as well as by day, in the same flush: the
// last hours read back for the organization and for one key; an hour
// older than usage.KeepHours is counted in its day but not kept by hour,
// and the hours that age past it are deleted by a later flush.
func TestOutcomesByHour(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			now := time.Date(2026, 11, 28, 10, 30, 0, 0, time.UTC)
			clock := keywardtest.NewClock(now)
			s := open(t, newDSN(t, engine), sqlstore.Options{FlushInterval: time.Hour, Now: clock.Now})
			org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "a"})
			require.NoError(t, err)
			k1, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "one"})
			require.NoError(t, err)
			k2, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "two"})
			require.NoError(t, err)

			for range 3 {
				s.RecordOutcome(&k1.Record, usage.Served, 2, now)
			}
			s.RecordOutcome(&k2.Record, usage.RateLimited, 0, now)
			s.RecordOutcome(&k1.Record, usage.Forbidden, 0, now.Add(-time.Hour))
			s.RecordOutcome(&k2.Record, usage.Served, 5, now.Add(-47*time.Hour)) // kept, for now
			s.RecordOutcome(&k1.Record, usage.Served, 7, now.Add(-50*time.Hour)) // its day only
			require.NoError(t, s.FlushUsage(ctx))

			hours, err := s.UsageByHour(ctx, org.ID, "", now.Add(-23*time.Hour), now)
			require.NoError(t, err)
			require.Len(t, hours, 24)
			last, before := hours[23], hours[22]
			assert.Equal(t, time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC), last.Hour)
			assert.Equal(t, int64(3), last.Requests[usage.Served])
			assert.Equal(t, int64(1), last.Requests[usage.RateLimited])
			assert.Equal(t, int64(6), last.Credits)
			assert.Equal(t, int64(1), before.Requests[usage.Forbidden])
			assert.Equal(t, int64(0), hours[0].Total(), "an hour without calls")

			one, err := s.UsageByHour(ctx, org.ID, k2.Record.ID, now.Add(-23*time.Hour), now)
			require.NoError(t, err)
			assert.Equal(t, int64(1), one[23].Total(), "the other key's calls are not its")
			assert.Equal(t, int64(0), one[22].Total())

			two, err := s.UsageByHour(ctx, org.ID, "", now.Add(-47*time.Hour), now.Add(-47*time.Hour))
			require.NoError(t, err)
			require.Len(t, two, 1)
			assert.Equal(t, int64(5), two[0].Credits, "47 hours ago is kept")

			// The days count every call, whatever its hour.
			days, err := s.UsageByDay(ctx, org.ID, "", now.Add(-50*time.Hour), now)
			require.NoError(t, err)
			var total, credits int64
			for _, d := range days {
				total += d.Total()
				credits += d.Credits
			}
			assert.Equal(t, int64(7), total)
			assert.Equal(t, int64(6+5+7), credits)

			rows := func() (n int64) {
				require.NoError(t, s.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM keyward_key_usage_hourly`).Scan(&n))
				return n
			}
			assert.Equal(t, int64(4), rows(), "no row for the hour 50 hours ago")

			// Two hours later the hour of 47 hours ago is 49 hours old: the
			// next flush that writes deletes it, and it reads as zeros.
			clock.Advance(2 * time.Hour)
			require.NoError(t, s.FlushUsage(ctx))
			assert.Equal(t, int64(4), rows(), "an idle store looks for no old hours")
			s.RecordOutcome(&k1.Record, usage.Served, 0, clock.Now())
			require.NoError(t, s.FlushUsage(ctx))
			assert.Equal(t, int64(4), rows(), "one hour deleted, one written")
			two, err = s.UsageByHour(ctx, org.ID, "", now.Add(-47*time.Hour), now.Add(-47*time.Hour))
			require.NoError(t, err)
			assert.Equal(t, int64(0), two[0].Total())

			// Deleting the organization deletes its hours.
			require.NoError(t, s.DeleteOrg(ctx, org.ID, true))
			assert.Equal(t, int64(0), rows())
		})
	}
}

// Pruning deletes in batches until no old hour is left, however many
// there are.
func TestPruneHoursInBatches(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			now := time.Date(2026, 11, 28, 10, 30, 0, 0, time.UTC)
			clock := keywardtest.NewClock(now)
			s := open(t, newDSN(t, engine), sqlstore.Options{FlushInterval: time.Hour, Now: clock.Now})
			org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "a"})
			require.NoError(t, err)
			var keys []manage.CreatedKey
			for i := range 30 {
				k, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: fmt.Sprint(i)})
				require.NoError(t, err)
				keys = append(keys, k)
			}
			for h := range usage.KeepHours {
				for _, k := range keys {
					for o := range usage.NumOutcomes {
						s.RecordOutcome(&k.Record, o, 0, now.Add(-time.Duration(h)*time.Hour))
					}
				}
			}
			require.NoError(t, s.FlushUsage(ctx))
			var n int64
			require.NoError(t, s.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM keyward_key_usage_hourly`).Scan(&n))
			require.Equal(t, int64(usage.KeepHours*30*int(usage.NumOutcomes)), n)
			clock.Advance((usage.KeepHours + 1) * time.Hour)                                                      // every hour written is now too old
			s.RecordOutcome(&keys[0].Record, usage.Served, 0, now.Add(-time.Duration(usage.KeepHours)*time.Hour)) // a late call: its day only
			require.NoError(t, s.FlushUsage(ctx))
			require.NoError(t, s.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM keyward_key_usage_hourly`).Scan(&n))
			assert.Equal(t, int64(0), n)
		})
	}
}

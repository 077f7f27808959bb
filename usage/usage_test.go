package usage_test

import (
	"math"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/memstore"
	"github.com/keyward/keyward/usage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	day1 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	day2 = day1.Add(24 * time.Hour)

	testNowUsage = day2
)

func key(id string) *keyward.KeyRecord {
	return &keyward.KeyRecord{ID: id, Org: keyward.Organization{ID: "org_" + id}}
}

// Concurrent recording across a day's turn, with Takes in between, loses
// and doubles nothing.
func TestCounterLosesNothing(t *testing.T) {
	t.Parallel()
	var c usage.Counter
	var wg sync.WaitGroup
	var mu sync.Mutex
	var taken []usage.Count
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				got := c.Take()
				mu.Lock()
				taken = append(taken, got...)
				mu.Unlock()
			}
		}
	}()
	for g := range 8 {
		wg.Go(func() {
			k := key([]string{"a", "b"}[g%2])
			for i := range 1000 {
				day := day1
				if i >= 500 {
					day = day2
				}
				c.RecordOutcome(k, usage.Served, 3, day)
				c.RecordOutcome(k, usage.RateLimited, 0, day)
				if i == 700 {
					c.RecordOutcome(k, usage.Forbidden, 0, day1) // a late call of the day before
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-done
	taken = append(taken, c.Take()...)
	totals := map[string]int64{}
	var credits int64
	for _, n := range taken {
		totals[n.KeyID+" "+usage.DayStart(n.Day).Format(time.DateOnly)+" "+n.Outcome.String()] += n.Requests
		credits += n.Credits
	}
	assert.Equal(t, map[string]int64{
		"a 2026-11-28 served": 2000, "a 2026-11-28 rate_limited": 2000, "a 2026-11-28 forbidden": 4,
		"a 2026-11-29 served": 2000, "a 2026-11-29 rate_limited": 2000,
		"b 2026-11-28 served": 2000, "b 2026-11-28 rate_limited": 2000, "b 2026-11-28 forbidden": 4,
		"b 2026-11-29 served": 2000, "b 2026-11-29 rate_limited": 2000,
	}, totals)
	assert.Equal(t, int64(8*1000*3), credits)
	assert.Empty(t, c.Take())
}

// Counts a store failed to write are given back and taken again.
func TestCounterRestore(t *testing.T) {
	t.Parallel()
	var c usage.Counter
	c.RecordOutcome(key("a"), usage.Served, 2, day2)
	c.RecordOutcome(key("a"), usage.NoCredits, 0, day1)
	first := c.Take()
	require.Len(t, first, 2)
	c.Restore(first)
	c.RecordOutcome(key("a"), usage.Served, 2, day2)
	again := c.Take()
	sort.Slice(again, func(i, j int) bool { return again[i].Day < again[j].Day })
	assert.Equal(t, []usage.Count{
		{KeyID: "a", OrgID: "org_a", Hour: usage.HourNumber(day1), Day: usage.DayNumber(day1), Outcome: usage.NoCredits, Requests: 1},
		{KeyID: "a", OrgID: "org_a", Hour: usage.HourNumber(day2), Day: usage.DayNumber(day2), Outcome: usage.Served, Requests: 2, Credits: 4},
	}, again)
}

// The counter counts by hour, each count with its hour's day: the calls
// of two hours of one day are two counts, which a store sums into the day.
func TestCounterCountsByHour(t *testing.T) {
	t.Parallel()
	var c usage.Counter
	first := time.Date(2026, 11, 28, 22, 59, 59, 0, time.UTC)
	c.RecordOutcome(key("a"), usage.Served, 1, first)
	c.RecordOutcome(key("a"), usage.Served, 2, first.Add(time.Second))           // 23:00, the same day
	c.RecordOutcome(key("a"), usage.Served, 4, first.Add(time.Hour+time.Second)) // 00:00, the next
	c.RecordOutcome(key("a"), usage.Served, 8, first.Add(-time.Minute))          // late, in the first hour
	got := c.Take()
	sort.Slice(got, func(i, j int) bool { return got[i].Hour < got[j].Hour })
	h := usage.HourNumber(first)
	d := usage.DayNumber(first)
	assert.Equal(t, []usage.Count{
		{KeyID: "a", OrgID: "org_a", Hour: h, Day: d, Outcome: usage.Served, Requests: 2, Credits: 9},
		{KeyID: "a", OrgID: "org_a", Hour: h + 1, Day: d, Outcome: usage.Served, Requests: 1, Credits: 2},
		{KeyID: "a", OrgID: "org_a", Hour: h + 2, Day: d + 1, Outcome: usage.Served, Requests: 1, Credits: 4},
	}, got)
	assert.Equal(t, time.Date(2026, 11, 28, 22, 0, 0, 0, time.UTC), usage.HourStart(h))
}

func TestOutcomeOf(t *testing.T) {
	t.Parallel()
	for status, want := range map[int]usage.Outcome{200: usage.Served, 201: usage.Served, 204: usage.Served,
		403: usage.Forbidden, 402: usage.NoCredits, 429: usage.RateLimited, 400: usage.Failed, 401: usage.Failed,
		500: usage.Failed, 503: usage.Failed, 302: usage.Failed} {
		assert.Equal(t, want, usage.OutcomeOf(status), "%d", status)
	}
	for o := range usage.NumOutcomes {
		back, ok := usage.ParseOutcome(o.String())
		assert.True(t, ok)
		assert.Equal(t, o, back)
	}
	_, ok := usage.ParseOutcome("served ")
	assert.False(t, ok)
	assert.Equal(t, int64(-1), usage.DayNumber(time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC)))
	assert.Len(t, usage.Series(day2, day1, nil), 0, "an empty range")
}

// The middleware sees the final status of the chain behind it and the
// credits a ChargeCredits inside charged.
func TestMiddlewareRecordsOutcomeAndCredits(t *testing.T) {
	t.Parallel()
	ledger, err := memstore.NewLedger(memstore.LedgerOptions{})
	require.NoError(t, err)
	charger, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: ledger, Cost: 2})
	require.NoError(t, err)
	var c usage.Counter
	record := usage.Middleware(&c, func() time.Time { return day1 })
	k := key("k")
	k.Org.Limits = keyward.Limits{RequestsPerSecond: 1, RequestsPerMinute: 60, Concurrency: 2, MonthlyCredits: 3}
	status := http.StatusOK
	h := record(charger.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
	})))
	serve := func() int {
		req := httptest.NewRequest("POST", "/", nil)
		req = keyward.AttachKey(req, k)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code
	}
	status = http.StatusTeapot
	require.Equal(t, 418, serve()) // not charged
	status = http.StatusOK
	require.Equal(t, 200, serve())
	require.Equal(t, 402, serve()) // 1 credit left, 2 asked
	// Without a key: passed on, not counted.
	w := httptest.NewRecorder()
	record(http.NotFoundHandler()).ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	assert.Equal(t, 404, w.Code)

	got := map[usage.Outcome][2]int64{}
	for _, n := range c.Take() {
		got[n.Outcome] = [2]int64{n.Requests, n.Credits}
	}
	assert.Equal(t, map[usage.Outcome][2]int64{usage.Served: {1, 2}, usage.Failed: {1, 0}, usage.NoCredits: {1, 0}}, got)
	bal, err := ledger.Balance(t.Context(), credit.Account{OrgID: "org_k", Allocation: 3})
	require.NoError(t, err)
	assert.Equal(t, int64(2), bal.Spent, "what the chart says was spent, was")
}

// A series is at most MaxDays long, the newest days, whatever the range
// asked: never a slice sized by a caller's dates.
func TestSeriesIsBounded(t *testing.T) {
	to := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	days := usage.Series(time.Time{}, to, nil)
	require.Len(t, days, usage.MaxDays)
	assert.Equal(t, usage.DayStart(usage.DayNumber(to)), days[len(days)-1].Day, "ends with to's day")
	assert.Len(t, usage.Series(time.Unix(math.MinInt64/4, 0), time.Unix(math.MaxInt64/4, 0), nil), usage.MaxDays)
	assert.Len(t, usage.Series(to.AddDate(0, 0, -6), to, nil), 7)
	assert.Empty(t, usage.Series(to, to.AddDate(0, 0, -1), nil))

	// Hours by the same rule, at most KeepHours.
	hours := usage.HourSeries(time.Time{}, to, map[int64]*usage.Hour{usage.HourNumber(to): {Credits: 3}})
	require.Len(t, hours, usage.KeepHours)
	assert.Equal(t, usage.HourStart(usage.HourNumber(to)), hours[len(hours)-1].Hour, "ends with to's hour")
	assert.Equal(t, int64(3), hours[len(hours)-1].Credits)
	assert.Len(t, usage.HourSeries(to.Add(-23*time.Hour), to, nil), 24)
	assert.Empty(t, usage.HourSeries(to, to.Add(-time.Hour), nil))
}

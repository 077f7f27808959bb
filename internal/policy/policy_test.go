package policy

import (
	"strconv"
	"testing"
	"time"

	"github.com/keyward/keyward/rate"
	"github.com/stretchr/testify/assert"
)

func TestOf(t *testing.T) {
	assert.Equal(t, &Strings{limits: Limits{PerSecond: 1, PerMinute: 60, Concurrency: 2}, Policy: `"rps";q=1;w=1, "rpm";q=60;w=60, "concurrency";q=2;qu="concurrent-requests"`,
		PerSecond: "1", PerMinute: "60", KeyPerMinute: "0", Concurrency: "2"}, Of(Limits{PerSecond: 1, PerMinute: 60, Concurrency: 2}))
	assert.Equal(t, `"rps";q=10;w=1, "rpm";q=600;w=60, "key";q=30;w=60, "concurrency";q=10;qu="concurrent-requests"`,
		Of(Limits{PerSecond: 10, PerMinute: 600, KeyPerMinute: 30, Concurrency: 10}).Policy)
	assert.Zero(t, testing.AllocsPerRun(100, func() { Of(Limits{PerSecond: 1, PerMinute: 60, Concurrency: 2}) }),
		"a policy seen before costs no allocation")
}

func TestLastAnswersForTheLimitsAsked(t *testing.T) {
	var last Last
	a, b := Limits{PerSecond: 1, PerMinute: 60, Concurrency: 2}, Limits{PerSecond: 1, PerMinute: 60, KeyPerMinute: 7, Concurrency: 2}
	for range 3 { // a, b, a, b…: each answer is for its own limits, never the last one's
		assert.Same(t, Of(a), last.Of(a))
		assert.Same(t, Of(b), last.Of(b))
	}
	assert.Contains(t, last.Of(b).Policy, `"key";q=7`)
	assert.Zero(t, testing.AllocsPerRun(100, func() { last.Of(b) }))
}

func TestCacheIsBounded(t *testing.T) {
	for i := range int64(maxCached + 10) {
		Of(Limits{PerSecond: 1, PerMinute: i + 1, Concurrency: 1})
	}
	cache.RLock()
	n := len(cache.m)
	cache.RUnlock()
	assert.LessOrEqual(t, n, maxCached)
	assert.Equal(t, `"rps";q=1;w=1, "rpm";q=5;w=60, "concurrency";q=1;qu="concurrent-requests"`,
		Of(Limits{PerSecond: 1, PerMinute: 5, Concurrency: 1}).Policy, "formatted again after a reset")
}

func TestReset(t *testing.T) {
	var iso Reset
	at := time.Date(2026, 1, 19, 10, 30, 0, 0, time.UTC)
	assert.Equal(t, "2026-01-19T10:30:00Z", iso.Text(at))
	assert.Equal(t, "2026-01-19T10:30:01Z", iso.Text(at.Add(time.Nanosecond)), "rounded up")
	assert.Zero(t, testing.AllocsPerRun(100, func() { iso.Text(at.Add(time.Millisecond)) }), "once a second")
	unix := Reset{Unix: true}
	assert.Equal(t, "1768818601", unix.Text(at.Add(500*time.Millisecond)))
}

func TestCurrentOf(t *testing.T) {
	sec, min := rate.Window{Remaining: 9, Reset: 100 * time.Millisecond}, rate.Window{Remaining: 590, Reset: 59*time.Second + time.Nanosecond}
	c := CurrentOf(sec, min, rate.Window{Remaining: 1, Reset: 2 * time.Second}, false, 7)
	assert.Equal(t, Current{Field: `"rps";r=9;t=1, "rpm";r=590;t=60, "concurrency";r=7`, Remaining: "9", InFlight: "7", remaining: 9}, c,
		"resets rounded up to the second; no key item without a key quota")
	c = CurrentOf(sec, min, rate.Window{Remaining: 0, Reset: 2 * time.Second}, true, 0)
	assert.Equal(t, `"rps";r=9;t=1, "rpm";r=590;t=60, "key";r=0;t=2, "concurrency";r=0`, c.Field)
	assert.Equal(t, float64(1), testing.AllocsPerRun(100, func() { CurrentOf(sec, min, sec, true, 12345) }), "one string a decision")
}

// Decimal formats any number, and one of the limits, or the bucket's
// remaining requests, from memory.
func TestDecimal(t *testing.T) {
	s := Of(Limits{PerSecond: 250, PerMinute: 6000, KeyPerMinute: 900, Concurrency: 300})
	for _, n := range []int64{250, 6000, 900, 300, 0, 12345} {
		assert.Equal(t, strconv.FormatInt(n, 10), s.Decimal(n))
	}
	cur := CurrentOf(rate.Window{Remaining: 249}, rate.Window{}, rate.Window{}, false, 3)
	assert.Equal(t, "249", cur.Decimal(249))
	assert.Equal(t, "0", cur.Decimal(0))
	assert.Equal(t, "777", cur.Decimal(777))
	assert.Zero(t, testing.AllocsPerRun(100, func() { s.Decimal(6000); s.Decimal(900); cur.Decimal(249) }))
}

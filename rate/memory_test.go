package rate

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/ulule/limiter/v3/drivers/store/memory"
)

var t0 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

func free(now time.Time) Request {
	return Request{Org: "org_a", Key: "key_a", PerSecond: 1, PerMinute: 60, Concurrency: 2, Now: now}
}

// take takes and gives the slot back at once: a request that ends.
func take(t *testing.T, s Store, req Request) Result {
	t.Helper()
	res, err := s.Take(context.Background(), req)
	require.NoError(t, err)
	if res.Slot != 0 {
		s.Release(req.Org, res.Slot)
	}
	return res
}

func TestBucketBurstThenRefill(t *testing.T) {
	var m Memory
	req := Request{Org: "o", PerSecond: 10, PerMinute: 600, Concurrency: 100, Now: t0}
	for i := range 10 {
		res := take(t, &m, req)
		require.Equal(t, Scope(""), res.Refused, "request %d of the burst", i)
		assert.Equal(t, int64(9-i), res.Second.Remaining)
	}
	res := take(t, &m, req)
	assert.Equal(t, PerSecond, res.Refused, "the 11th request of the same instant")
	assert.Equal(t, 100*time.Millisecond, res.Wait, "one token comes back every 100 ms")
	assert.Equal(t, time.Second, res.Second.Reset, "the bucket is full again a second later")

	req.Now = t0.Add(99 * time.Millisecond)
	assert.Equal(t, PerSecond, take(t, &m, req).Refused, "no token yet at 99 ms")
	req.Now = t0.Add(100 * time.Millisecond)
	res = take(t, &m, req)
	assert.Equal(t, Scope(""), res.Refused, "a token at 100 ms")
	assert.Equal(t, int64(0), res.Second.Remaining)
	req.Now = t0.Add(10 * time.Second)
	assert.Equal(t, int64(9), take(t, &m, req).Second.Remaining, "a full bucket after a pause, never more")
}

// The bucket's capacity is Burst, apart from its rate: that many start at
// once after a pause, and then one a second comes back (PerSecond 1).
func TestBucketCapacityIsTheBurst(t *testing.T) {
	for _, tc := range []struct{ perSecond, burst, capacity int64 }{
		{1, 2, 2}, {1, 0, 1}, {10, 3, 3}, {2, 50, 50},
	} {
		var m Memory
		req := Request{Org: "o", PerSecond: tc.perSecond, Burst: tc.burst, PerMinute: 6000, Concurrency: 1000, Now: t0}
		assert.Equal(t, tc.capacity, req.Capacity())
		for i := range tc.capacity {
			res := take(t, &m, req)
			require.Equal(t, Scope(""), res.Refused, "%+v: request %d of the burst", tc, i)
			assert.Equal(t, tc.capacity-1-i, res.Second.Remaining)
		}
		res := take(t, &m, req)
		assert.Equal(t, PerSecond, res.Refused, "%+v: one more at the same instant", tc)
		every := time.Second / time.Duration(tc.perSecond)
		assert.Equal(t, every, res.Wait, "a token comes back at the sustained rate")
		assert.Equal(t, time.Duration(tc.capacity)*every, res.Second.Reset, "the bucket is full again after capacity tokens")
		req.Now = t0.Add(every)
		assert.Equal(t, Scope(""), take(t, &m, req).Refused, "a token after one interval")
		assert.Equal(t, PerSecond, take(t, &m, req).Refused, "and only one")
		req.Now = t0.Add(time.Hour)
		assert.Equal(t, tc.capacity-1, take(t, &m, req).Second.Remaining, "a full bucket after a pause, never more")
	}
	_, err := new(Memory).Take(context.Background(), Request{Org: "o", PerSecond: 1, Burst: -1, PerMinute: 1, Concurrency: 1})
	assert.ErrorIs(t, err, ErrBadRequest)
	_, err = new(Memory).Take(context.Background(), Request{Org: "o", PerSecond: 1, Burst: MaxPerMinute + 1, PerMinute: 1, Concurrency: 1})
	assert.ErrorIs(t, err, ErrBadRequest)
}

func TestMinuteQuotaSlides(t *testing.T) {
	var m Memory
	// A quota below 60 × the rate: the quota binds, not the bucket.
	req := Request{Org: "o", PerSecond: 100, PerMinute: 120, Concurrency: 1000}
	served := 0
	for i := range 200 { // 200 requests in 2 s, at :59 and :00
		req.Now = t0.Add(59*time.Second + time.Duration(i)*10*time.Millisecond)
		if take(t, &m, req).Refused == "" {
			served++
		}
	}
	assert.Equal(t, 120, served, "two seconds across a minute's end serve the quota, not twice it")
	req.Now = t0.Add(61*time.Second + 500*time.Millisecond)
	res := take(t, &m, req)
	assert.Equal(t, PerMinute, res.Refused)
	assert.Equal(t, 57*time.Second+500*time.Millisecond, res.Wait, "until the requests of second :59 leave")
	req.Now = t0.Add(119 * time.Second)
	assert.Equal(t, Scope(""), take(t, &m, req).Refused, "room again once :59's requests are a minute old")
}

// TestNoSixtySecondsServeMoreThanDocumented sends random bursts for five
// minutes and checks every 60-second span, aligned or not, against the
// package's bound: PerMinute plus what the bucket passes in under a second.
func TestNoSixtySecondsServeMoreThanDocumented(t *testing.T) {
	for _, tc := range []struct{ perSecond, perMinute int64 }{{1, 60}, {10, 600}, {20, 1200}, {10, 100}, {5, 30}} {
		var m Memory
		req := Request{Org: "o", PerSecond: tc.perSecond, PerMinute: tc.perMinute, Concurrency: MaxPerMinute}
		rng := rand.New(rand.NewPCG(1, uint64(tc.perMinute)))
		var served []time.Time
		now := t0
		for now.Before(t0.Add(5 * time.Minute)) {
			now = now.Add(time.Duration(rng.IntN(int(50 * time.Millisecond))))
			for range rng.IntN(int(tc.perSecond) * 2) {
				req.Now = now
				if take(t, &m, req).Refused == "" {
					served = append(served, now)
				}
			}
		}
		bound := tc.perMinute + 2*tc.perSecond - 1
		if tc.perMinute >= 60*tc.perSecond {
			bound = tc.perMinute + tc.perSecond // the bucket alone
		}
		most := 0
		for i, start := range served {
			n := 0
			for _, at := range served[i:] {
				if at.Sub(start) >= time.Minute {
					break
				}
				n++
			}
			most = max(most, n)
		}
		assert.LessOrEqual(t, int64(most), bound, "%d/s, %d/min: most served in 60 s", tc.perSecond, tc.perMinute)
		assert.GreaterOrEqual(t, int64(most), tc.perMinute-tc.perSecond, "%d/s, %d/min: the quota is usable", tc.perSecond, tc.perMinute)
		t.Logf("%d/s, %d/min: at most %d in any 60 s (bound %d)", tc.perSecond, tc.perMinute, most, bound)
	}
}

func TestKeyLimitIsStricterAndSpendsNothingWhenOver(t *testing.T) {
	var m Memory
	req := Request{Org: "o", Key: "k1", PerSecond: 100, PerMinute: 100, Concurrency: 100, KeyPerMinute: 3, Now: t0}
	for range 3 {
		assert.Equal(t, Scope(""), take(t, &m, req).Refused)
	}
	res := take(t, &m, req)
	assert.Equal(t, KeyPerMinute, res.Refused)
	assert.Equal(t, int64(97), res.Minute.Remaining, "a request the key may not make spends none of the organization's quota")
	assert.Equal(t, int64(97), res.Second.Remaining, "nor a token of its bucket")
	req.Key, req.KeyPerMinute = "k2", 0
	res = take(t, &m, req)
	assert.Equal(t, Scope(""), res.Refused, "another key of the organization goes on")
	assert.Equal(t, int64(96), res.Minute.Remaining)
}

func TestInFlightCap(t *testing.T) {
	var m Memory
	ctx := context.Background()
	req := free(t0)
	req.PerSecond = 100
	a, _ := m.Take(ctx, req)
	b, _ := m.Take(ctx, req)
	require.NotZero(t, a.Slot)
	require.NotEqual(t, a.Slot, b.Slot)
	assert.Equal(t, int64(2), b.InFlight)
	c, _ := m.Take(ctx, req)
	assert.Equal(t, InFlight, c.Refused)
	assert.Zero(t, c.Slot)
	assert.Equal(t, int64(2), c.InFlight)
	m.Release(req.Org, a.Slot)
	m.Release(req.Org, a.Slot) // twice: ignored
	m.Release(req.Org, 12345)  // never held: ignored
	other := req
	other.Org = "org_other"
	o, _ := m.Take(ctx, other)
	require.NotZero(t, o.Slot)
	m.Release(req.Org, o.Slot)               // another organization's: ignored
	m.Release(req.Org, b.Slot+100*numShards) // a number never taken: ignored
	d, _ := m.Take(ctx, req)
	assert.Equal(t, Scope(""), d.Refused, "a slot given back is free")
	e, _ := m.Take(ctx, req)
	assert.Equal(t, InFlight, e.Refused, "a slot given back twice frees one, not two")
}

func TestPlanChangeTakesEffectAtOnce(t *testing.T) {
	var m Memory
	req := free(t0)
	assert.Equal(t, Scope(""), take(t, &m, req).Refused)
	assert.Equal(t, PerSecond, take(t, &m, req).Refused, "free: one a second")
	req.PerSecond, req.PerMinute = 10, 600 // upgraded to growth
	res := take(t, &m, req)
	assert.Equal(t, Scope(""), res.Refused, "growth's bucket at once")
	req.PerSecond, req.PerMinute = 1, 60 // and back, the same instant
	assert.Equal(t, PerSecond, take(t, &m, req).Refused, "the two tokens spent are owed at the free rate")
	req.Now = t0.Add(1500 * time.Millisecond)
	assert.Equal(t, PerSecond, take(t, &m, req).Refused)
	req.Now = t0.Add(2 * time.Second)
	assert.Equal(t, Scope(""), take(t, &m, req).Refused)
}

func TestIdleOrganizationsAreForgotten(t *testing.T) {
	var m Memory
	for i := range 100 {
		req := free(t0)
		req.Org = "org_" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		take(t, &m, req)
	}
	held, _ := m.Take(context.Background(), free(t0)) // org_a keeps a slot
	take(t, &m, Request{Org: "late", PerSecond: 1, PerMinute: 1, Concurrency: 1, Now: t0.Add(2 * time.Minute)})
	count := func() (n int) {
		for i := range m.shards {
			m.shards[i].mu.Lock()
			n += len(m.shards[i].orgs)
			m.shards[i].mu.Unlock()
		}
		return n
	}
	n := count()
	m.sweep(t0.Add(2 * time.Minute).Unix())
	left := count()
	assert.Equal(t, 2, left, "only the organization with a request in flight and the one just seen stay (of %d)", n)
	m.Release("org_a", held.Slot)
}

func TestUluleKeepsFixedWindows(t *testing.T) {
	s := Ulule(memory.NewStore())
	req := Request{Org: "o", PerSecond: 1000, PerMinute: 60, Concurrency: 1000}
	served := 0
	for i := range 200 {
		req.Now = t0.Add(59*time.Second + time.Duration(i)*10*time.Millisecond)
		if take(t, s, req).Refused == "" {
			served++
		}
	}
	assert.Equal(t, 120, served, "ulule's fixed windows: twice the quota across a minute's end (documented)")
	req.Now = t0.Add(61 * time.Second)
	res := take(t, s, req)
	assert.Equal(t, PerMinute, res.Refused)
	assert.Equal(t, 59*time.Second, res.Wait)
	req.PerSecond, req.Now = 1, t0.Add(3*time.Minute)
	assert.Equal(t, Scope(""), take(t, s, req).Refused)
	assert.Equal(t, PerSecond, take(t, s, req).Refused, "the bucket is kept in process")
}

// A request whose limits are out of range is an error, never a panic
// (a zero rate would divide by zero).
func TestBadRequestIsAnError(t *testing.T) {
	for _, s := range []Store{new(Memory), Ulule(memory.NewStore())} {
		for _, req := range []Request{{Org: "o", PerMinute: 1, Concurrency: 1}, {Org: "o", PerSecond: 1, Concurrency: 1},
			{Org: "o", PerSecond: 1, PerMinute: 1}, {Org: "o", PerSecond: 1, PerMinute: 1, Concurrency: 1, KeyPerMinute: -1},
			// Above the bounds: a bucket's interval would overflow to zero.
			{Org: "o", PerSecond: math.MaxInt64, PerMinute: 1, Concurrency: 1},
			{Org: "o", PerSecond: MaxPerMinute/60 + 1, PerMinute: 1, Concurrency: 1},
			{Org: "o", PerSecond: 1, PerMinute: MaxPerMinute + 1, Concurrency: 1},
			{Org: "o", PerSecond: 1, PerMinute: 1, Concurrency: MaxPerMinute + 1},
			{Org: "o", PerSecond: 1, PerMinute: 1, Concurrency: 1, KeyPerMinute: MaxPerMinute + 1}} {
			req.Now = t0
			_, err := s.Take(context.Background(), req)
			assert.ErrorIs(t, err, ErrBadRequest, "%+v", req)
		}
	}
	top := Request{Org: "o", PerSecond: MaxPerMinute / 60, PerMinute: MaxPerMinute, Concurrency: MaxPerMinute, KeyPerMinute: MaxPerMinute, Now: t0}
	for _, s := range []Store{new(Memory), Ulule(memory.NewStore())} {
		res, err := s.Take(context.Background(), top)
		require.NoError(t, err, "the bounds themselves are in range")
		assert.Equal(t, Scope(""), res.Refused)
	}
	var f *FailedAuth
	assert.NoError(t, f.Check())
	assert.Error(t, (&FailedAuth{PerMinute: -1}).Check())
	assert.Error(t, (&FailedAuth{Burst: 2_000_000_000}).Check(), "a budget so large its interval rounds to zero")
	assert.NoError(t, (&FailedAuth{PerMinute: 1_000_000_000}).Check())
	// Used without Check (its fields are exported): held within the bounds.
	over := &FailedAuth{PerMinute: 100_000_000_000, Burst: 1 << 62}
	assert.Equal(t, int64(1_000_000_000), over.Limit())
	over.Fail("203.0.113.7", t0)
	assert.Zero(t, over.Wait("203.0.113.7", t0))
}

func TestQuotaResetIsWhenTheNewestLeaves(t *testing.T) {
	var m Memory
	req := Request{Org: "o", PerSecond: 10, PerMinute: 100, Concurrency: 10, Now: t0.Add(10 * time.Second)}
	assert.Equal(t, time.Minute, take(t, &m, req).Minute.Reset)
	req.Now = t0.Add(20*time.Second + 500*time.Millisecond)
	assert.Equal(t, 59*time.Second+500*time.Millisecond, take(t, &m, req).Minute.Reset, "second 20 leaves at 80 s")
	req.Now = t0.Add(75 * time.Second) // the first left at 70 s
	res := take(t, &m, req)
	assert.Equal(t, time.Minute, res.Minute.Reset)
	assert.Equal(t, int64(98), res.Minute.Remaining)
}

// A token's interval is 1s ÷ rate rounded up, over the whole range.
func TestIntervalRoundsUp(t *testing.T) {
	for _, r := range []int64{1, 2, 3, 7, 10, 1000, 999_983, 1_000_000_000, MaxPerMinute / 60, math.MaxInt64} {
		want := int64(time.Second) / r
		if int64(time.Second)%r != 0 {
			want++
		}
		assert.Equal(t, want, interval(r), "rate %d", r)
		assert.Positive(t, interval(r))
	}
}

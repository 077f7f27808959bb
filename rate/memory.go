package rate

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Memory is the in-process Store: one process's counts, which instances
// behind a load balancer do not share. The zero value is ready to use.
// State of an organization idle for over a minute with nothing in flight
// is forgotten: once a minute, a request starts a sweep of every
// organization. Requests are decided at their Request.Now, a wall time: a
// clock stepped back by minutes (a large NTP step) refuses organizations
// active just before the step until it catches up.
type Memory struct {
	shards [numShards]shard
	swept  atomic.Int64 // the second the last sweep started
}

// numShards is a power of two: a slot's low bits are its shard's index.
const numShards = 64

type shard struct {
	mu       sync.Mutex
	orgs     map[string]*orgState
	lastSlot uint64 // the last slot taken here, above the shard's index
}

// orgState is an organization's state: its bucket, quota, requests in
// flight, and the quotas of its keys that have their own.
type orgState struct {
	tat    int64 // the bucket's theoretical arrival time, Unix ns
	rate   int64 // the bucket's rate when tat was set
	minute ring
	slots  map[uint64]struct{} // in flight
	keys   map[string]*ring
	seen   int64 // the last second a request was taken
}

var seed = maphash.MakeSeed()

// Take implements Store.
func (m *Memory) Take(_ context.Context, req Request) (Result, error) {
	if err := req.Check(); err != nil {
		return Result{}, err
	}
	return m.take(req), nil
}

// take is Take of a request already checked (rate.Ulule's, whose quota is
// ulule's: its own is math.MaxInt64, never reached).
func (m *Memory) take(req Request) Result {
	var res Result
	now := req.Now.UnixNano()
	sec := req.Now.Unix()
	if last := m.swept.Load(); sec-last >= 60 && m.swept.CompareAndSwap(last, sec) {
		go m.sweep(sec)
	}
	i := maphash.String(seed, req.Org) % numShards
	sh := &m.shards[i]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.orgs == nil {
		sh.orgs = make(map[string]*orgState)
	}
	o := sh.orgs[req.Org]
	if o == nil {
		o = &orgState{}
		sh.orgs[req.Org] = o
	}
	o.seen = max(o.seen, sec)
	var key *ring
	if req.KeyPerMinute > 0 {
		if key = o.keys[req.Key]; key == nil {
			if o.keys == nil {
				o.keys = make(map[string]*ring)
			}
			key = new(ring)
			o.keys[req.Key] = key
		}
	}

	o.tat, o.rate = rescale(o.tat, now, o.rate, req.PerSecond), req.PerSecond
	b := bucket{perSecond: req.PerSecond, burst: req.Capacity(), tat: o.tat}
	okSecond := b.take(now, &res.Second, &res.Wait)
	okMinute := o.minute.take(sec, now, req.PerMinute, &res.Minute)
	okKey := true
	if key != nil {
		okKey = key.take(sec, now, req.KeyPerMinute, &res.Key)
	}
	okFlight := int64(len(o.slots)) < req.Concurrency
	switch {
	case !okSecond:
		res.Refused = PerSecond
	case !okMinute:
		res.Refused, res.Wait = PerMinute, res.Minute.Reset
	case !okKey:
		res.Refused, res.Wait = KeyPerMinute, res.Key.Reset
	case !okFlight:
		// A slot frees when a request ends, which no clock says: a retry
		// after a second is what Retry-After can promise.
		res.Refused, res.Wait = InFlight, time.Second
	}
	res.InFlight = int64(len(o.slots))
	if res.Refused != "" {
		if okSecond { // the bucket as it is: the token was not taken
			res.Second = bucket{perSecond: req.PerSecond, burst: req.Capacity(), tat: o.tat}.state(now)
		}
		if okMinute {
			res.Minute = o.minute.state(now, req.PerMinute)
		}
		if key != nil && okKey {
			res.Key = key.state(now, req.KeyPerMinute)
		}
		return res
	}
	res.Wait = 0
	o.tat = b.tat
	o.minute.add(sec, now, req.PerMinute, &res.Minute)
	if key != nil {
		key.add(sec, now, req.KeyPerMinute, &res.Key)
	}
	sh.lastSlot++
	res.Slot = sh.lastSlot*numShards + i // unique, never 0, and Release finds the shard without hashing
	if o.slots == nil {
		o.slots = make(map[uint64]struct{})
	}
	o.slots[res.Slot] = struct{}{}
	res.InFlight = int64(len(o.slots))
	return res
}

// Release implements Store.
func (m *Memory) Release(org string, slot uint64) {
	if slot == 0 {
		return
	}
	sh := &m.shards[slot%numShards] // a foreign slot's shard lacks it: nothing is freed
	sh.mu.Lock()
	if o := sh.orgs[org]; o != nil {
		delete(o.slots, slot)
	}
	sh.mu.Unlock()
}

// sweep forgets the organizations idle for over a minute before sec with
// nothing in flight: their bucket is full and their quotas empty again
// (a bucket owing more than a minute, after a plan's downgrade, is kept).
// Each shard's map is made anew: a Go map never gives back the room of
// deleted entries.
func (m *Memory) sweep(sec int64) {
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		kept := make(map[string]*orgState)
		for id, o := range sh.orgs {
			if len(o.slots) > 0 || sec-o.seen <= 61 || o.tat > sec*int64(time.Second) {
				kept[id] = o
			}
		}
		sh.orgs = kept
		sh.mu.Unlock()
	}
}

// bucket is GCRA at perSecond requests a second with a capacity of burst
// requests: tat is when the bucket would be full again. The interval is
// rounded up to whole nanoseconds, so the rate is never above perSecond.
type bucket struct {
	perSecond, burst int64
	tat              int64
}

// take decides a request at now (ns), moving tat if it passes, and fills
// w, and wait when refused.
func (b *bucket) take(now int64, w *Window, wait *time.Duration) bool {
	interval := interval(b.perSecond)
	capacity := b.burst * interval // the burst, in time: at most 10^18 ns (rate.MaxPerMinute × 1 s)
	next := max(b.tat, now) + interval
	if over := next - now - capacity; over > 0 {
		*w = Window{Remaining: 0, Reset: time.Duration(max(b.tat-now, 0))}
		*wait = time.Duration(over)
		return false
	}
	b.tat = next
	*w = Window{Remaining: (capacity - (next - now)) / interval, Reset: time.Duration(next - now)}
	return true
}

// interval is the time a token of the bucket takes to come back, rounded
// up: the rate is never above perSecond (≥ 1).
func interval(perSecond int64) int64 {
	return (int64(time.Second)-1)/perSecond + 1
}

// rescale moves a bucket's tat from one rate to another: the tokens it
// lacks at now stay lacking, each taking the new rate's time to come back.
// An upgraded plan's bucket is the new size at once, a downgraded one
// keeps what it had spent.
func rescale(tat, now, from, to int64) int64 {
	if from == to || from == 0 || tat <= now {
		return tat
	}
	old := interval(from)
	missing := (tat - now + old - 1) / old
	return now + missing*interval(to)
}

// state is the bucket's Window at now.
func (b bucket) state(now int64) Window {
	interval := interval(b.perSecond)
	full := max(b.tat-now, 0)
	return Window{Remaining: max(b.burst*interval-full, 0) / interval, Reset: time.Duration(full)}
}

// ring counts requests in one-second buckets over the last 60 seconds.
type ring struct {
	counts [60]int64
	head   int64 // the newest second counted
	sum    int64 // of counts
}

// advance moves the ring to second sec, emptying the buckets it leaves
// behind. A second before head (a clock read just before another
// request's) counts in head's bucket.
func (r *ring) advance(sec int64) int64 {
	if sec <= r.head {
		return r.head
	}
	if sec-r.head >= 60 {
		r.counts, r.sum = [60]int64{}, 0
	} else {
		for s := r.head + 1; s <= sec; s++ {
			r.sum -= r.counts[s%60]
			r.counts[s%60] = 0
		}
	}
	r.head = sec
	return sec
}

// take says whether one more request fits limit at second sec (now in
// ns); when it does not, it fills w, whose Reset is the wait until it
// would fit.
func (r *ring) take(sec, now, limit int64, w *Window) bool {
	r.advance(sec)
	if r.sum < limit {
		return true
	}
	*w = Window{Remaining: 0, Reset: r.until(now, r.sum-limit+1)}
	return false
}

// add counts a request in second sec's bucket and fills w: what limit
// leaves, and when the oldest request counted leaves the window.
func (r *ring) add(sec, now, limit int64, w *Window) {
	sec = r.advance(sec)
	r.counts[sec%60]++
	r.sum++
	*w = r.state(now, limit)
}

// state is the ring's Window at limit: Reset is when the whole count has
// left the window (the newest second counted, a minute on), when the quota
// is whole again.
func (r *ring) state(now, limit int64) Window {
	reset := time.Minute
	if r.sum > 0 {
		reset = max(time.Duration((r.head+60)*int64(time.Second)-now), 0)
	}
	return Window{Remaining: max(limit-r.sum, 0), Reset: reset}
}

// until returns how long after now (ns) the oldest n counted requests have
// all left the window (a minute if fewer are counted).
func (r *ring) until(now int64, n int64) time.Duration {
	var left int64
	for s := r.head - 59; s <= r.head; s++ {
		if c := r.counts[((s%60)+60)%60]; c > 0 {
			left += c
			if left >= n {
				return max(time.Duration((s+60)*int64(time.Second)-now), 0)
			}
		}
	}
	return time.Minute
}

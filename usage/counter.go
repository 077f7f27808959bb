package usage

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward"
)

var (
	_ Recorder             = (*Counter)(nil)
	_ keyward.CallRecorder = (*Counter)(nil)
)

// Count is one batch figure of a Counter: the calls of one key in one UTC
// hour with one outcome, and the credits they spent.
type Count struct {
	KeyID, OrgID string
	// Hour is the UTC hour number (HourNumber).
	Hour int64
	// Day is the UTC day number (DayNumber) of Hour.
	Day      int64
	Outcome  Outcome
	Requests int64
	Credits  int64
}

// Counter counts outcomes per key, UTC hour and outcome in memory, between
// the writes of a store (Take), which sums the hours into days as well.
// Recording a call costs a map read and atomic adds; a lock is taken only
// when a key's hour changes. The zero value is
// ready to use; it is safe for concurrent use.
type Counter struct {
	keys sync.Map // key id → *keyHours

	mu      sync.Mutex
	retired []*hourCounts // earlier hours of keys, until taken empty twice
}

type keyHours struct {
	orgID string
	cur   atomic.Pointer[hourCounts]
}

type hourCounts struct {
	keyID, orgID string
	hour         int64
	n            [NumOutcomes]atomic.Int64
	credits      [NumOutcomes]atomic.Int64
	// writers counts the calls adding to it; dead, once set, turns new
	// ones away. A retired hour's counts are dropped only when dead and no
	// call is adding: none is lost.
	writers atomic.Int64
	dead    atomic.Bool
	quiet   int // Takes in a row that found it empty (retired only; under mu)
}

// RecordOutcome implements Recorder: it counts one call of k, in t's UTC
// hour. An outcome out of range counts as Failed; negative credits as 0.
func (c *Counter) RecordOutcome(k *keyward.KeyRecord, o Outcome, credits int64, t time.Time) {
	if k == nil {
		return
	}
	c.add(k.ID, k.Org.ID, HourNumber(t), o, 1, credits)
}

// RecordCall implements keyward.CallRecorder: it counts one call of k as
// OutcomeOfCall(ctx, sent) counts it, in t's UTC hour.
func (c *Counter) RecordCall(ctx context.Context, k *keyward.KeyRecord, sent int, t time.Time) {
	o, credits := OutcomeOfCall(ctx, sent)
	c.RecordOutcome(k, o, credits, t)
}

func (c *Counter) add(keyID, orgID string, hour int64, o Outcome, n, credits int64) {
	if o >= NumOutcomes {
		o = Failed
	}
	v, ok := c.keys.Load(keyID)
	if !ok {
		v, _ = c.keys.LoadOrStore(keyID, &keyHours{orgID: orgID})
	}
	kd := v.(*keyHours)
	dc := kd.cur.Load()
	for {
		if dc == nil || dc.hour != hour {
			dc = c.roll(kd, keyID, hour)
		}
		dc.writers.Add(1)
		if !dc.dead.Load() {
			break
		}
		dc.writers.Add(-1)
		dc = nil // dropped meanwhile: find or make the hour's counts again
	}
	dc.n[o].Add(n)
	if credits > 0 {
		dc.credits[o].Add(credits)
	}
	dc.writers.Add(-1)
}

// roll returns the counts of keyID for hour: the current ones, or new ones
// that become current (a later hour) or are kept apart (an earlier hour,
// for a late call, a clock that went back or a count put back).
func (c *Counter) roll(kd *keyHours, keyID string, hour int64) *hourCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := kd.cur.Load()
	if cur != nil && cur.hour == hour {
		return cur
	}
	if cur == nil || hour > cur.hour {
		if cur != nil {
			c.retired = append(c.retired, cur)
		}
		n := &hourCounts{keyID: keyID, orgID: kd.orgID, hour: hour}
		kd.cur.Store(n)
		return n
	}
	for _, r := range c.retired {
		if r.keyID == keyID && r.hour == hour && !r.dead.Load() {
			r.quiet = 0
			return r
		}
	}
	n := &hourCounts{keyID: keyID, orgID: kd.orgID, hour: hour}
	c.retired = append(c.retired, n)
	return n
}

// Take returns the counts recorded since the last Take and zeroes them. A
// store that fails to write them gives them back with Restore.
//
// The counts of an hour that is over are dropped from memory once two Takes
// in a row found them empty and no call is adding to them (a call that
// comes later counts afresh).
func (c *Counter) Take() []Count {
	var out []Count
	takeFrom := func(dc *hourCounts) bool {
		empty := true
		for o := range NumOutcomes {
			n, cr := dc.n[o].Swap(0), dc.credits[o].Swap(0)
			if n != 0 || cr != 0 {
				empty = false
				out = append(out, Count{KeyID: dc.keyID, OrgID: dc.orgID, Hour: dc.hour, Day: DayNumber(HourStart(dc.hour)),
					Outcome: o, Requests: n, Credits: cr})
			}
		}
		return empty
	}
	c.keys.Range(func(_, v any) bool {
		if dc := v.(*keyHours).cur.Load(); dc != nil {
			takeFrom(dc)
		}
		return true
	})
	c.mu.Lock()
	kept := c.retired[:0]
	for _, r := range c.retired {
		if takeFrom(r) {
			r.quiet++
		} else {
			r.quiet = 0
		}
		if r.quiet >= 2 {
			r.dead.Store(true)
			if r.writers.Load() == 0 {
				takeFrom(r) // what was added since the last look
				continue
			}
		}
		kept = append(kept, r)
	}
	clear(c.retired[len(kept):])
	c.retired = kept
	c.mu.Unlock()
	return out
}

// Restore adds counts (from Take) back, to be taken again.
func (c *Counter) Restore(counts []Count) {
	for _, n := range counts {
		c.add(n.KeyID, n.OrgID, n.Hour, n.Outcome, n.Requests, n.Credits)
	}
}

// Package clock is a wall clock cheaper to read than time.Now, which on
// virtual machines can cost tens of nanoseconds a call.
package clock

import (
	"sync/atomic"
	"time"
)

// Coarse is a wall clock read with one atomic load: Unix nanoseconds
// advanced every Resolution by a goroutine that runs only while the clock
// is read and stops after a second without a read. The zero value is ready
// to use and safe for concurrent use; it never needs closing.
type Coarse struct {
	now     atomic.Int64
	running atomic.Bool
	read    atomic.Bool
}

// Resolution is how often a running Coarse clock advances.
const Resolution = 10 * time.Millisecond

// idleTicks is how many ticks without a read stop a Coarse clock.
const idleTicks = int(time.Second / Resolution)

// UnixNano returns the current time in Unix nanoseconds, about Resolution
// behind the system clock at most (more while every CPU is busy and the
// ticking goroutine waits for one), never behind the time of a read that
// started it.
func (c *Coarse) UnixNano() int64 {
	if !c.running.Load() {
		// The fresh time goes in before the clock is marked running, so a
		// reader that sees it running never reads the time the clock
		// stopped at. No ticker runs while it is stopped, so several
		// starters storing their own fresh times is harmless.
		n := time.Now().UnixNano()
		c.now.Store(n)
		if c.running.CompareAndSwap(false, true) {
			c.read.Store(true)
			go c.tick()
		}
		return n
	}
	// Only a store when it changes something: readers on several cores
	// share the flag's cache line.
	if !c.read.Load() {
		c.read.Store(true)
	}
	return c.now.Load()
}

// Now returns the current time (without a monotonic reading), at most
// about Resolution behind the system clock.
func (c *Coarse) Now() time.Time { return time.Unix(0, c.UnixNano()) }

func (c *Coarse) tick() {
	t := time.NewTicker(Resolution)
	defer t.Stop()
	idle := 0
	for now := range t.C {
		c.now.Store(now.UnixNano())
		if c.read.Swap(false) {
			idle = 0
			continue
		}
		if idle++; idle >= idleTicks {
			c.running.Store(false)
			return
		}
	}
}

// Process is the Coarse clock that keyward's components share by default.
var Process Coarse

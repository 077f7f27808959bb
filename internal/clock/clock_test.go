package clock

import (
	"sync"
	"testing"
	"time"
)

func within(t *testing.T, c *Coarse, slack time.Duration) {
	t.Helper()
	before := time.Now().UnixNano()
	got := c.UnixNano()
	after := time.Now().UnixNano()
	if got < before-int64(Resolution+slack) || got > after {
		t.Fatalf("Coarse.UnixNano() = %d, want within [%d, %d]", got, before-int64(Resolution+slack), after)
	}
}

func TestCoarseFollowsTheSystemClock(t *testing.T) {
	var c Coarse
	// Over 1.2 s the clock must keep up; a loaded machine (the race
	// detector, other packages' tests) can hold the tick back by tens of
	// milliseconds, hence the slack.
	for range 12 {
		within(t, &c, 250*time.Millisecond)
		time.Sleep(100 * time.Millisecond)
	}
	if d := time.Since(c.Now()); d < 0 || d > time.Second {
		t.Fatalf("Coarse.Now() is %v away from time.Now()", d)
	}
}

func TestCoarseStopsWhenIdleAndRestarts(t *testing.T) {
	var c Coarse
	c.UnixNano()
	if !c.running.Load() {
		t.Fatal("the clock is not running after a read")
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.running.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the clock still runs after 5 s without a read")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Stopped, its time is stale; the next read starts it again and is
	// current.
	within(t, &c, 0)
	if !c.running.Load() {
		t.Fatal("a read did not restart the clock")
	}
}

// Readers racing the first read after the clock stopped never get the
// time it stopped at: the fresh time is stored before the clock is marked
// running.
func TestCoarseRestartIsNeverStale(t *testing.T) {
	for range 300 {
		var c Coarse
		c.now.Store(1) // the time a stopped clock was left at
		var start, wg sync.WaitGroup
		start.Add(1)
		for range 4 {
			wg.Go(func() {
				start.Wait()
				before := time.Now().UnixNano()
				if got := c.UnixNano(); got < before-int64(time.Second) {
					t.Errorf("a read racing the restart got %d, read at %d", got, before)
				}
			})
		}
		start.Done()
		wg.Wait()
		if t.Failed() {
			return
		}
	}
}

func TestCoarseConcurrentReads(t *testing.T) {
	var c Coarse
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10000 {
				before := time.Now().UnixNano()
				if got := c.UnixNano(); got < before-int64(time.Second) || got > time.Now().UnixNano() {
					t.Errorf("Coarse.UnixNano() = %d, read at %d", got, before)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkClock(b *testing.B) {
	b.Run("impl=time.Now", func(b *testing.B) {
		b.ReportAllocs()
		var s int64
		for b.Loop() {
			s += time.Now().UnixNano()
		}
		_ = s
	})
	b.Run("impl=Coarse", func(b *testing.B) {
		b.ReportAllocs()
		var c Coarse
		var s int64
		for b.Loop() {
			s += c.UnixNano()
		}
		_ = s
	})
}

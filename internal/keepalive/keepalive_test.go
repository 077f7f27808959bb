package keepalive_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/clock"
	"github.com/keyward/keyward/internal/keepalive"
)

type counter struct {
	node  keepalive.Node
	n     atomic.Int64
	limit int64
}

func (c *counter) Renew(context.Context) (int64, bool) {
	return clock.Process.UnixNano() + int64(time.Millisecond), c.n.Add(1) < c.limit
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting: " + what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRenewsUntilRemoved(t *testing.T) {
	var s keepalive.Set
	c := &counter{limit: 1 << 40}
	s.Add(&c.node, c, 0)
	waitFor(t, "5 renewals", func() bool { return c.n.Load() >= 5 })
	s.Remove(&c.node)
	n := c.n.Load()
	time.Sleep(100 * time.Millisecond)
	if got := c.n.Load(); got > n+1 { // one may have been under way
		t.Fatalf("renewed after Remove: %d then %d", n, got)
	}
}

func TestNotBeforeDue(t *testing.T) {
	var s keepalive.Set
	c := &counter{limit: 1 << 40}
	s.Add(&c.node, c, clock.Process.UnixNano()+int64(time.Hour))
	defer s.Remove(&c.node)
	time.Sleep(50 * time.Millisecond)
	if got := c.n.Load(); got != 0 {
		t.Fatalf("renewed %d times before it was due", got)
	}
}

func TestStopsWhenTheRenewerSaysSo(t *testing.T) {
	var s keepalive.Set
	c := &counter{limit: 3}
	s.Add(&c.node, c, 0)
	waitFor(t, "3 renewals", func() bool { return c.n.Load() >= 3 })
	time.Sleep(50 * time.Millisecond)
	if got := c.n.Load(); got != 3 {
		t.Fatalf("renewed %d times, want 3", got)
	}
	s.Remove(&c.node) // removing what already left is harmless
}

// Many renewers added and removed from many goroutines, while the Set
// renews: each is renewed only while it is in, and the Set's goroutine
// ends once it is empty.
func TestConcurrentAddRemove(t *testing.T) {
	var s keepalive.Set
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				c := &counter{limit: 1 << 40}
				s.Add(&c.node, c, 0)
				if i%10 == 0 {
					time.Sleep(15 * time.Millisecond)
				}
				s.Remove(&c.node)
				n := c.n.Load()
				time.Sleep(time.Microsecond)
				if got := c.n.Load(); got > n+1 {
					t.Errorf("renewed after Remove: %d then %d", n, got)
				}
			}
		}()
	}
	wg.Wait()
}

func TestAddRemoveAllocations(t *testing.T) {
	var s keepalive.Set
	c := &counter{limit: 1 << 40}
	keep := &counter{limit: 1 << 40} // keeps the goroutine running
	s.Add(&keep.node, keep, clock.Process.UnixNano()+int64(time.Hour))
	defer s.Remove(&keep.node)
	if n := testing.AllocsPerRun(100, func() {
		s.Add(&c.node, c, clock.Process.UnixNano()+int64(time.Hour))
		s.Remove(&c.node)
	}); n > 0 {
		t.Fatalf("%v allocations", n)
	}
}

// A Renewer never removed is given up after MaxAge.
func TestMaxAge(t *testing.T) {
	s := keepalive.Set{MaxAge: 50 * time.Millisecond}
	c := &counter{limit: 1 << 40}
	s.Add(&c.node, c, 0)
	defer s.Remove(&c.node)
	time.Sleep(150 * time.Millisecond)
	n := c.n.Load()
	time.Sleep(100 * time.Millisecond)
	if got := c.n.Load(); n == 0 || got != n {
		t.Fatalf("renewed %d times, then %d: want some renewals, then none past MaxAge", n, got)
	}
}

type hanging struct{ node keepalive.Node }

func (h *hanging) Renew(ctx context.Context) (int64, bool) {
	<-ctx.Done()
	return 0, false
}

// A Renew that hangs is cut off after Timeout, and the others go on.
func TestTimeout(t *testing.T) {
	s := keepalive.Set{Timeout: 30 * time.Millisecond}
	h := &hanging{}
	c := &counter{limit: 1 << 40}
	s.Add(&h.node, h, 0)
	s.Add(&c.node, c, 0)
	defer s.Remove(&c.node)
	waitFor(t, "renewals past the hanging one", func() bool { return c.n.Load() >= 3 })
}

// Package keepalive renews things that would lapse (keyward: the credit
// reservations of calls still running) from one goroutine per Set, so that
// adding and removing one costs a lock and no timer or allocation.
package keepalive

import (
	"cmp"
	"context"
	"sync"
	"time"

	"github.com/keyward/keyward/internal/clock"
)

// Renewer renews something that would lapse. Renew returns when to renew
// it next (Unix nanoseconds), or false to stop renewing it; ctx ends after
// the Set's Timeout.
type Renewer interface {
	Renew(ctx context.Context) (next int64, again bool)
}

// Node is a Set's hold on one Renewer; embed it in the thing renewed. The
// zero value is ready for Add.
type Node struct {
	prev, next *Node
	due        int64 // Unix nanoseconds
	added      int64 // Unix nanoseconds
	r          Renewer
	in         bool
}

// Set renews the Renewers added to it, each when it is due, until they
// are removed. Its goroutine runs only while the Set holds something. The
// zero value is ready to use and safe for concurrent use.
type Set struct {
	mu      sync.Mutex
	head    Node // sentinel of a circular list
	running bool
	// Tick is how often the Set looks for due Renewers. Zero: 10 ms.
	Tick time.Duration
	// Timeout bounds one Renew, so that one that hangs does not hold up
	// the others for long. Zero: 10 s.
	Timeout time.Duration
	// MaxAge is how long a Renewer is renewed at most, from its Add: one
	// never removed (forgotten by its owner) is given up then. Zero: a day.
	MaxAge time.Duration
}

// Add renews r through n from due (Unix nanoseconds) on, until Remove(n).
func (s *Set) Add(n *Node, r Renewer, due int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.head.next == nil {
		s.head.next, s.head.prev = &s.head, &s.head
	}
	if n.in {
		return
	}
	n.r, n.due, n.in, n.added = r, due, true, clock.Process.UnixNano()
	n.prev, n.next = s.head.prev, &s.head
	s.head.prev.next = n
	s.head.prev = n
	if !s.running {
		s.running = true
		go s.run()
	}
}

// Remove stops renewing n. A Renew already running for it finishes, and
// none starts after Remove returns.
func (s *Set) Remove(n *Node) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n.in {
		n.prev.next, n.next.prev = n.next, n.prev
		n.prev, n.next, n.in = nil, nil, false
	}
	n.r = nil
}

// run renews what is due, every Tick, while the Set holds something.
func (s *Set) run() {
	tick := s.Tick
	if tick <= 0 {
		tick = 10 * time.Millisecond
	}
	var due []*Node
	for {
		time.Sleep(tick)
		now := clock.Process.UnixNano()
		s.mu.Lock()
		if s.head.next == &s.head {
			s.running = false
			s.mu.Unlock()
			return
		}
		due = due[:0]
		for n := s.head.next; n != &s.head; n = n.next {
			if n.due <= now {
				n.due = 1<<63 - 1 // not again until renewed
				due = append(due, n)
			}
		}
		s.mu.Unlock()
		for _, n := range due {
			s.renew(n)
		}
	}
}

func (s *Set) renew(n *Node) {
	s.mu.Lock()
	r, added := n.r, n.added
	s.mu.Unlock()
	if r == nil {
		return
	}
	next, again := int64(0), false
	if clock.Process.UnixNano()-added < int64(cmp.Or(s.MaxAge, 24*time.Hour)) {
		ctx, cancel := context.WithTimeout(context.Background(), cmp.Or(s.Timeout, 10*time.Second))
		next, again = r.Renew(ctx)
		cancel()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n.r != r || !n.in {
		return // removed meanwhile
	}
	if again {
		n.due = next
		return
	}
	n.prev.next, n.next.prev = n.next, n.prev
	n.prev, n.next, n.in = nil, nil, false
}

package recent_test

import (
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/recent"
)

var start = time.Date(2036, 1, 19, 10, 30, 0, 0, time.UTC)

func TestHasWithinTheWindowOnly(t *testing.T) {
	t.Parallel()
	s := recent.New(time.Hour, 100)
	s.Add(7, start)
	for _, tc := range []struct {
		id   uint64
		at   time.Duration
		want bool
	}{{7, 0, true}, {7, time.Hour, true}, {7, time.Hour + 1, false}, {8, 0, false}} {
		if got := s.Has(tc.id, start.Add(tc.at)); got != tc.want {
			t.Errorf("Has(%d, +%v) = %v, want %v", tc.id, tc.at, got, tc.want)
		}
	}
	s.Add(7, start.Add(2*time.Hour)) // seen again: the window starts anew
	if !s.Has(7, start.Add(2*time.Hour+time.Minute)) {
		t.Error("an id seen again is not known")
	}
	s.Forget(7)
	if s.Has(7, start.Add(2*time.Hour)) {
		t.Error("a forgotten id is known")
	}
}

// However many ids are added, the set holds at most its bound; when full
// it drops the ids older than the window first, then any.
func TestBounded(t *testing.T) {
	t.Parallel()
	const max = 1 << 12
	s := recent.New(time.Hour, max)
	for i := range max {
		s.Add(uint64(i), start)
	}
	if got := s.Len(); got != max {
		t.Fatalf("Len = %d, want %d", got, max)
	}
	later := start.Add(2 * time.Hour)
	s.Add(0, later) // seen again: kept while the old go
	for i := max; i < max+100; i++ {
		s.Add(uint64(i), later)
		if !s.Has(uint64(i), later) {
			t.Fatalf("the id just added, %d, is not known", i)
		}
	}
	if got := s.Len(); got > 200 {
		t.Errorf("Len = %d: the ids older than the window were not dropped first", got)
	}
	if !s.Has(0, later) || s.Has(1, later) {
		t.Error("the old went, the recent stayed: not so")
	}
	for i := 2 * max; i < 5*max; i++ { // every one recent: any goes
		s.Add(uint64(i), later)
	}
	if got := s.Len(); got > max {
		t.Errorf("Len = %d, above the bound %d", got, max)
	}
}

func TestNilAndZeroKnowNothing(t *testing.T) {
	t.Parallel()
	var none *recent.Set
	none.Add(1, start)
	none.Forget(1)
	var zero recent.Set
	zero.Add(1, start)
	if none.Has(1, start) || zero.Has(1, start) || zero.Len() != 0 {
		t.Error("a nil or zero Set knew an id")
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	s := recent.New(time.Hour, 256)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				id := uint64(g*2000 + i)
				s.Add(id, start)
				s.Has(id, start)
				if i%3 == 0 {
					s.Forget(id)
				}
			}
		})
	}
	wg.Wait()
	if got := s.Len(); got > 256 {
		t.Errorf("Len = %d, above the bound", got)
	}
}

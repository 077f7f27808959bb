package recent_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/recent"
)

var start = time.Date(2036, 1, 19, 10, 30, 0, 0, time.UTC)

func TestHasWithinTheWindowOnly(t *testing.T) {
	t.Parallel()
	s := recent.New(time.Hour, 100, nil)
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
// it drops the ids older than the window first, then the ones seen
// longest ago.
func TestBounded(t *testing.T) {
	t.Parallel()
	const max = 1 << 12
	s := recent.New(time.Hour, max, nil)
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
	for i := 2 * max; i < 5*max; i++ { // every one recent: the oldest go
		s.Add(uint64(i), later.Add(time.Duration(i)))
	}
	if got := s.Len(); got > max {
		t.Errorf("Len = %d, above the bound %d", got, max)
	}
	if !s.Has(5*max-1, later) || s.Has(2*max, later) {
		t.Error("the last id added is gone, or the first of the run is still there")
	}
}

// One customer minting and using key after key (rotating with no grace,
// each old key revoked, so demoted) cannot push out the keys others use:
// 1,000 victims' ids, each seen once before the run and again every
// 50,000 of the customer's, all stay known through 393,216 minted ids,
// three times the set's size. Demoted ids go first, then the oldest.
func TestOneCustomerCannotPushOthersOut(t *testing.T) {
	t.Parallel()
	for _, demote := range []bool{true, false} {
		s := recent.New(7*24*time.Hour, 1<<17, nil)
		const victims, minted = 1000, 3 << 17
		victim := func(i int) uint64 { return uint64(i)*0x9E3779B97F4A7C15 + 1 }
		now := start
		for i := range victims {
			s.Add(victim(i), now)
		}
		lost, prev := 0, uint64(0)
		for n := range minted {
			now = now.Add(time.Millisecond)
			id := uint64(n)*0xBF58476D1CE4E5B9 + 7
			s.Add(id, now)
			if demote && n > 0 {
				s.Demote(prev) // revoked by the rotation
			}
			prev = id
			if n%50_000 == 49_999 || n == minted-1 {
				for i := range victims {
					if !s.Has(victim(i), now) {
						lost++
					}
					s.Add(victim(i), now) // in use: found again at the next cache refill
				}
			}
		}
		if lost != 0 {
			t.Errorf("demoting revoked ids %v: %d victims' ids lost", demote, lost)
		}
	}
}

// A demoted id is still known until room is needed or it is seen again.
func TestDemotedStaysUntilRoomIsNeeded(t *testing.T) {
	t.Parallel()
	s := recent.New(time.Hour, 32, nil) // two ids a shard: 1, 17, 33 and 49 share one
	s.Add(1, start)
	s.Demote(1)
	if !s.Has(1, start) {
		t.Fatal("a demoted id is forgotten at once")
	}
	s.Add(1, start) // seen again: no longer demoted
	s.Add(17, start.Add(-time.Minute))
	if !s.Has(1, start) || !s.Has(17, start) {
		t.Fatal("a shard full of recent ids dropped a newer one than its oldest, or the new one")
	}
	s.Demote(17)
	s.Add(33, start.Add(-2*time.Minute))
	if s.Has(17, start) || !s.Has(33, start) || !s.Has(1, start) {
		t.Error("a demoted id did not go first")
	}
	s.Add(49, start)
	if s.Has(33, start) || !s.Has(1, start) {
		t.Error("the oldest did not go")
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
	s := recent.New(time.Hour, 256, nil)
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

// Known fills the set from its Lister the first time it is asked about an
// id it does not hold, once the Lister answers: after a failure, again
// only FillRetry later.
func TestKnownFillsOnceFromTheLister(t *testing.T) {
	t.Parallel()
	calls, fail := 0, true
	s := recent.New(time.Hour, 100, func(_ context.Context, since time.Time, max int) (map[uint64]time.Time, error) {
		calls++
		if max < 100 {
			t.Errorf("listed at most %d", max)
		}
		if fail {
			return nil, errors.New("store down")
		}
		return map[uint64]time.Time{7: start.Add(-time.Minute)}, nil
	})
	ctx := context.Background()
	if s.Known(ctx, 7, start) || calls != 1 {
		t.Fatalf("a failed fill: known, or %d calls", calls)
	}
	fail = false
	if s.Known(ctx, 7, start.Add(time.Second)) || calls != 1 {
		t.Fatalf("asked again within FillRetry: %d calls", calls)
	}
	later := start.Add(recent.FillRetry)
	s2 := recent.New(time.Hour, 100, func(context.Context, time.Time, int) (map[uint64]time.Time, error) {
		return map[uint64]time.Time{7: start.Add(-2 * time.Hour)}, nil
	})
	if !s.Known(ctx, 7, later) || calls != 2 {
		t.Fatalf("after FillRetry, the fill: %d calls", calls)
	}
	if s.Known(ctx, 8, later) || calls != 2 {
		t.Errorf("filled once: %d calls", calls)
	}
	if s2.Known(ctx, 7, start) {
		t.Error("an id listed as seen before the window is known")
	}
	var none *recent.Set
	if none.Known(ctx, 7, start) || recent.New(time.Hour, 100, nil).Known(ctx, 7, start) {
		t.Error("a nil Set, or one without a Lister, knew an id")
	}
}

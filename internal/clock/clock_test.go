package clock

import (
	"sync"
	"testing"
	"time"
)

func TestMonoFollowsTheWallClock(t *testing.T) {
	var c Mono
	for range 3 {
		before := time.Now().UnixNano()
		got := c.UnixNano()
		after := time.Now().UnixNano()
		if got < before-int64(time.Millisecond) || got > after+int64(time.Millisecond) {
			t.Fatalf("Mono.UnixNano() = %d, want within [%d, %d]", got, before, after)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d := time.Since(c.Now()); d < 0 || d > time.Second {
		t.Fatalf("Mono.Now() is %v away from time.Now()", d)
	}
}

func TestMonoNeverGoesBackWithinABase(t *testing.T) {
	var c Mono
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			last := int64(0)
			for range 10000 {
				n := c.UnixNano()
				if n < last-int64(time.Millisecond) {
					t.Errorf("clock went back by %v", time.Duration(last-n))
					return
				}
				last = max(last, n)
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
	b.Run("impl=Mono", func(b *testing.B) {
		b.ReportAllocs()
		var c Mono
		var s int64
		for b.Loop() {
			s += c.UnixNano()
		}
		_ = s
	})
}

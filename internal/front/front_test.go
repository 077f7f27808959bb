package front_test

import (
	"strconv"
	"sync"
	"testing"

	"github.com/keyward/keyward/internal/front"
)

func TestGetAnswersOnlyTheExactKey(t *testing.T) {
	f := front.New[int](8)
	f.Put("triq_abc", 1)
	if v, ok := f.Get("triq_abc"); !ok || v != 1 {
		t.Fatalf("Get = %v, %v", v, ok)
	}
	for _, k := range []string{"triq_ab", "triq_abd", "triq_abcd", "TRIQ_abc", ""} {
		if _, ok := f.Get(k); ok {
			t.Errorf("Get(%q) answered for another key", k)
		}
	}
}

// A Put keeps its own copy of the key: changing the caller's bytes later
// changes nothing.
func TestPutCopiesTheKey(t *testing.T) {
	f := front.New[int](8)
	b := []byte("triq_abc")
	f.Put(string(b), 1)
	b[0] = 'x'
	if _, ok := f.Get("triq_abc"); !ok {
		t.Fatal("the key was not copied")
	}
}

// Keys that share a slot replace each other; neither is ever answered for
// the other, and nothing grows past the slots.
func TestSharedSlotsNeverMix(t *testing.T) {
	f := front.New[int](1) // one slot: every key shares it
	for i := range 100 {
		k := "key" + strconv.Itoa(i)
		f.Put(k, i)
		if v, ok := f.Get(k); !ok || v != i {
			t.Fatalf("Get(%q) = %v, %v", k, v, ok)
		}
		if i > 0 {
			if _, ok := f.Get("key" + strconv.Itoa(i-1)); ok {
				t.Fatalf("key%d still answered after key%d took its slot", i-1, i)
			}
		}
	}
	f.Clear()
	if _, ok := f.Get("key99"); ok {
		t.Fatal("Clear kept an entry")
	}
}

func TestConcurrentPutGet(t *testing.T) {
	f := front.New[string](16)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				k := strconv.Itoa(g) + "-" + strconv.Itoa(i%50)
				f.Put(k, k)
				if v, ok := f.Get(k); ok && v != k {
					t.Errorf("Get(%q) = %q", k, v)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestGetDoesNotAllocate(t *testing.T) {
	f := front.New[int](64)
	k := "triq_0123456789abcdefghijABCDEFGHIJ012345"
	f.Put(k, 1)
	if n := testing.AllocsPerRun(100, func() { f.Get(k) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

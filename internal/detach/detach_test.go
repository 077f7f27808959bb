package detach_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/detach"
)

type key struct{}

func TestDetachedKeepsValuesNotCancellation(t *testing.T) {
	parent, cancel := context.WithDeadline(context.WithValue(context.Background(), key{}, "v"), time.Now().Add(time.Hour))
	d := &detach.Context{Parent: parent}
	cancel()
	if parent.Err() == nil {
		t.Fatal("the parent should be cancelled")
	}
	if d.Err() != nil || d.Done() != nil {
		t.Fatalf("detached context is done: %v", d.Err())
	}
	if _, ok := d.Deadline(); ok {
		t.Fatal("detached context has a deadline")
	}
	if got := d.Value(key{}); got != "v" {
		t.Fatalf("Value = %v, want the parent's", got)
	}
	// A child of it is cancelled only by its own cancel.
	child, stop := context.WithCancel(d)
	if child.Err() != nil {
		t.Fatal("child of a detached context starts cancelled")
	}
	stop()
	if !errors.Is(child.Err(), context.Canceled) {
		t.Fatalf("child.Err() = %v", child.Err())
	}
	if context.Cause(d) != nil {
		t.Fatal("the parent's cause shows through")
	}
}

func TestZeroIsBackground(t *testing.T) {
	var d detach.Context
	if d.Value(key{}) != nil || d.Err() != nil {
		t.Fatal("zero Context is not like Background")
	}
}

func TestNoAllocation(t *testing.T) {
	parent := context.WithValue(context.Background(), key{}, "v")
	type holder struct{ d detach.Context }
	h := &holder{}
	n := testing.AllocsPerRun(100, func() {
		h.d = detach.Context{Parent: parent}
		var ctx context.Context = &h.d
		_ = ctx.Err()
	})
	if n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

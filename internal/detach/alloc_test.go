//go:build !race

package detach_test

import (
	"context"
	"testing"

	"github.com/keyward/keyward/internal/detach"
)

// Run without the race detector, which allocates on its own.
func TestValueAllocatesNothing(t *testing.T) {
	type k struct{}
	c := &detach.Context{Parent: context.WithValue(context.Background(), k{}, "v")}
	if n := testing.AllocsPerRun(100, func() { _ = c.Value(k{}) }); n != 0 {
		t.Fatalf("allocs = %v, want 0", n)
	}
}

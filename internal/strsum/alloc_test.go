//go:build !race

package strsum

import "testing"

// Run without the race detector, which allocates on its own.
func TestSumsAllocateNothing(t *testing.T) {
	s := "triq_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
	if n := testing.AllocsPerRun(100, func() { _ = CRC32(s); _ = SHA256(s) }); n != 0 {
		t.Fatalf("allocs = %v, want 0", n)
	}
}

package keywardtest_test

import (
	"testing"

	"github.com/keyward/keyward/keywardtest"
)

// TestConformanceNetHTTP runs the kit against the core's own net/http
// middleware: the reference every adapter is compared with.
func TestConformanceNetHTTP(t *testing.T) {
	t.Parallel()
	first := keywardtest.RunConformance(t, keywardtest.NetHTTP)
	again := keywardtest.RunConformance(t, keywardtest.NetHTTP)
	// Two runs of one server are the same transcript: nothing in it
	// depends on the clock, random ids or the keys of a run.
	keywardtest.SameTranscript(t, first, again)
}

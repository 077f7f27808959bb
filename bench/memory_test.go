package bench

import (
	"context"
	"encoding/binary"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/memstore"
)

// TestMemoryBound pushes distinct unknown keys through the key cache and
// distinct organizations through the rate limiter, and fails if the
// cache's heap outgrows its MaxKeys bound or the limiter keeps the
// counters of ended windows. By default it runs at a tenth of the scale
// with a small cache (seconds); KEYWARD_MEMORY_BOUND=1 runs the full
// million against the default cache and reports the peak RSS:
//
//	cd bench && KEYWARD_MEMORY_BOUND=1 go test -run MemoryBound -v .
func TestMemoryBound(t *testing.T) {
	// n keys and organizations; the cache holds maxKeys and its heap must
	// stay under cacheMiB (n entries unbounded would take several times
	// that); the limiter's heap must fall under sweptMiB once its windows
	// end.
	n, maxKeys, cacheMiB, sweptMiB := 100_000, int64(5_000), 10.0, 3.0
	if os.Getenv("KEYWARD_MEMORY_BOUND") == "1" {
		n, maxKeys, cacheMiB, sweptMiB = 1_000_000, 0, 100.0, 10.0 // MaxKeys 0: the default 100,000
	}
	ctx := context.Background()
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	base := heap()

	store, err := memstore.New(memstore.Options{Prefix: "triq_"})
	if err != nil {
		t.Fatal(err)
	}
	cache, err := keyward.NewCache(store, keyward.CacheConfig{MaxKeys: maxKeys})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	var h keyward.KeyHash
	for i := range n {
		binary.LittleEndian.PutUint64(h[:8], uint64(i)*0x9E3779B97F4A7C15)
		binary.LittleEndian.PutUint64(h[8:], uint64(i))
		if _, err := cache.LookupKey(ctx, h); err != keyward.ErrKeyNotFound {
			t.Fatalf("lookup %d: %v", i, err)
		}
	}
	afterCache := heap()
	t.Logf("key cache: %d distinct unknown keys → heap +%.1f MiB (MaxKeys bounds the entries), %d store lookups",
		n, mib(afterCache, base), cache.StoreCalls())
	if grown := mib(afterCache, base); grown > cacheMiB {
		t.Errorf("the key cache grew by %.1f MiB for %d unknown keys; its MaxKeys should hold it under %.0f MiB", grown, n, cacheMiB)
	}

	rl, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{})
	if err != nil {
		t.Fatal(err)
	}
	// The organizations call three windows ago; the sweep goes by the system
	// clock, so a request now is what ends their windows.
	now := time.Now()
	then := now.Add(-3 * time.Minute)
	principal := func(i int) *keyward.KeyRecord {
		id := "org_" + strconv.Itoa(i)
		return &keyward.KeyRecord{ID: "key_" + strconv.Itoa(i),
			Org: keyward.Organization{ID: id, Plan: "free", Limits: keyward.Limits{RequestsPerSecond: 1, RequestsPerMinute: 60, Concurrency: 2}}}
	}
	for i := range n {
		d, err := rl.Allow(ctx, principal(i), then)
		if err != nil {
			t.Fatal(err)
		}
		d.Done()
	}
	afterLimiter := heap()
	t.Logf("rate limiter: %d distinct organizations in one window → heap +%.1f MiB (one counter each)",
		n, mib(afterLimiter, afterCache))
	t.Logf("peak RSS (VmHWM): %s", vmHWM())

	// A request in a later window sweeps the counters of the ended ones.
	d, err := rl.Allow(ctx, principal(0), now)
	if err != nil {
		t.Fatal(err)
	}
	d.Done()
	deadline := time.Now().Add(30 * time.Second)
	for {
		swept := heap()
		if mib(swept, afterCache) < sweptMiB {
			t.Logf("rate limiter: three windows later → heap +%.1f MiB over the cache's", mib(swept, afterCache))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rate limiter: the counters of ended windows are still held: heap +%.1f MiB", mib(swept, afterCache))
		}
		time.Sleep(100 * time.Millisecond)
	}
	runtime.KeepAlive(rl)
}

// mib is after − before in MiB (negative when the heap shrank).
func mib(after, before uint64) float64 { return (float64(after) - float64(before)) / (1 << 20) }

func vmHWM() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:"))
		}
	}
	return "unknown"
}

package bench

import (
	"context"
	"crypto/sha256"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/httprate"
	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/middleware/stdlib"
	"github.com/ulule/limiter/v3/drivers/store/memory"
)

// discard is a ResponseWriter that costs nothing.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

func run(b *testing.B, h http.Handler, r *http.Request, parallel bool) {
	b.ReportAllocs()
	if parallel {
		b.RunParallel(func(pb *testing.PB) {
			w := &discard{h: http.Header{}}
			for pb.Next() {
				clear(w.h)
				h.ServeHTTP(w, r)
			}
		})
		return
	}
	w := &discard{h: http.Header{}}
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, r)
	}
}

type floorKey struct{}

// floor is the least an API-key check can do: header → SHA-256 →
// sync.Map → context.
func floor(keys *sync.Map, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok := keys.Load(sha256.Sum256([]byte(r.Header.Get("X-API-Key"))))
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), floorKey{}, v)))
	})
}

// BenchmarkPeers: keyward's full chain on memory backends (impl=keyward:
// key check, permissions, per-org rate limit with headers, credits
// reserved and committed) beside a bare handler, the hand-written floor,
// ulule's stdlib rate-limit middleware alone and go-chi/httprate's
// LimitByIP alone.
func BenchmarkPeers(b *testing.B) {
	be, err := MemoryBackends()
	if err != nil {
		b.Fatal(err)
	}
	chain, err := NewChain(context.Background(), be)
	if err != nil {
		b.Fatal(err)
	}
	defer chain.Close()
	be.NoFront = true
	noFront, err := NewChain(context.Background(), be)
	if err != nil {
		b.Fatal(err)
	}
	defer noFront.Close()
	var keys sync.Map
	keys.Store(sha256.Sum256([]byte(chain.Key)), "org")
	impls := []struct {
		name string
		h    http.Handler
	}{
		{"bare", Ok},
		{"floor", floor(&keys, Ok)},
		{"ulule", stdlib.NewMiddleware(limiter.New(memory.NewStore(), limiter.Rate{Period: time.Minute, Limit: 1 << 40})).Handler(Ok)},
		{"httprate", httprate.LimitByIP(1<<30, time.Minute)(Ok)},
		{"keyward", chain.Handler},
		{"keyward-nofront", noFront.Handler},
	}
	for _, mode := range []string{"serial", "parallel"} {
		for _, impl := range impls {
			b.Run("impl="+impl.name+"/"+mode, func(b *testing.B) { run(b, impl.h, chain.Request, mode == "parallel") })
		}
	}
}

package keyward_test

import (
	"context"
	"crypto/sha256"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward"
)

// discard is a ResponseWriter that costs nothing, so benchmarks measure the
// middleware and not a recorder.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if _, ok := keyward.FromContext(r.Context()); !ok {
		w.WriteHeader(http.StatusInternalServerError)
	}
})

type floorKey struct{}

// floorMiddleware is the least an API-key check can do: read the header,
// hash it, look the hash up in a sync.Map and attach the result. It is the
// baseline RequireAPIKey is measured against.
func floorMiddleware(keys *sync.Map, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.Sum256([]byte(r.Header.Get("X-API-Key")))
		v, ok := keys.Load(h)
		_ = w
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), floorKey{}, v)))
	})
}

var floorNext = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.Context().Value(floorKey{}) == nil {
		w.WriteHeader(http.StatusInternalServerError)
	}
})

func benchRequest(b *testing.B, key string) *http.Request {
	r, err := http.NewRequest(http.MethodGet, "/v1/transactions", nil)
	if err != nil {
		b.Fatal(err)
	}
	r.Header.Set("X-API-Key", key)
	return r
}

// runHandler serves r with h, serially or from parallel goroutines.
func runHandler(b *testing.B, h http.Handler, r *http.Request, parallel bool) {
	b.ReportAllocs()
	if parallel {
		b.RunParallel(func(pb *testing.PB) {
			w := &discard{h: http.Header{}}
			for pb.Next() {
				h.ServeHTTP(w, r)
			}
		})
		return
	}
	w := &discard{h: http.Header{}}
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

func BenchmarkRequireAPIKey(b *testing.B) {
	f := newFixture(b)
	k := f.newKey(b)
	// A TTL longer than the whole run, so that every lookup is a hit.
	cache, err := keyward.NewCache(f.probe, keyward.CacheConfig{TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer cache.Close()
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_"})
	if err != nil {
		b.Fatal(err)
	}
	keyed := auth.Middleware(okHandler)
	r := benchRequest(b, k.Key)
	keyed.ServeHTTP(&discard{h: http.Header{}}, r) // warm the cache

	var keys sync.Map
	keys.Store([sha256.Size]byte(keyward.Hash(k.Key)), &keyward.KeyRecord{ID: k.Record.ID})
	floor := floorMiddleware(&keys, floorNext)

	for _, mode := range []struct {
		name     string
		parallel bool
	}{{"serial", false}, {"parallel", true}} {
		b.Run("impl=floor/"+mode.name, func(b *testing.B) { runHandler(b, floor, r, mode.parallel) })
		b.Run("impl=keyward/"+mode.name, func(b *testing.B) { runHandler(b, keyed, r, mode.parallel) })
	}
	if calls := f.probe.calls.Load(); calls != 1 {
		b.Fatalf("store calls = %d, want 1 (the warm-up)", calls)
	}
}

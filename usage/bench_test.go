package usage_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/usage"
)

// What counting an outcome costs a request: the counter alone, from many
// goroutines on one key, and the middleware around a handler.
func BenchmarkCounterParallel(b *testing.B) {
	var c usage.Counter
	k := key("hot")
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.RecordOutcome(k, usage.Served, 1, now)
		}
	})
}

func BenchmarkMiddleware(b *testing.B) {
	var c usage.Counter
	h := usage.Middleware(&c, nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	req := keyward.AttachKey(httptest.NewRequest("GET", "/", nil), key("k"))
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}

package keywardecho_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The full chain through echo costs the core's four allocations (see the
// core's budget in BENCHMARKS.md) plus echo's own: one closure per route
// middleware and request (four: echo applies route middleware on every
// request).
func TestChainAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	d := newBenchDecisions(t)
	for _, impl := range []struct {
		name string
		h    http.Handler
		max  float64
	}{{"nethttp", d.netHTTP(t), 4}, {"echo", d.echo(t), 8}} {
		r := httptest.NewRequest(http.MethodPost, benchPath, nil)
		r.Header.Set("X-API-Key", d.key)
		w := &statusWriter{discard: discard{h: http.Header{}}}
		impl.h.ServeHTTP(w, r)
		if got := testing.AllocsPerRun(500, func() { impl.h.ServeHTTP(w, r) }); got > impl.max {
			t.Errorf("%s: allocs per request = %v, want ≤ %v", impl.name, got, impl.max)
		}
		if w.bad != 0 {
			t.Errorf("%s: a response was %d", impl.name, w.bad)
		}
	}
}

// Whatever a client sends, the chain answers with a status of the
// catalogue (never 500: nothing here is misconfigured) and never panics.
func FuzzChain(f *testing.F) {
	d := newBenchDecisions(f)
	h := d.echo(f)
	f.Add(d.key, "", []byte(nil))
	f.Add(d.key, "order-1", []byte(`{"n":1}`))
	f.Add(d.key, "order-1", []byte(`{"n":2}`))
	f.Add(d.key, "not a key!", []byte(nil))
	f.Add("", "", []byte(nil))
	f.Add("   ", "", []byte(nil))
	f.Add("sk_live_0123456789abcdef", "", []byte(nil))
	f.Add(d.key[:len(d.key)-1]+"A", "", []byte(nil))
	f.Add("triq_\x00\xff", "\n", bytes.Repeat([]byte("x"), 2<<20))
	f.Fuzz(func(t *testing.T, key, idem string, body []byte) {
		r := httptest.NewRequest(http.MethodPost, benchPath, bytes.NewReader(body))
		r.Header["X-Api-Key"] = []string{key}
		if idem != "" {
			r.Header["Idempotency-Key"] = []string{idem}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case 200, 400, 401, 409, 413, 422:
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body.String())
		}
		if w.Code >= 400 && w.Header().Get("Content-Type") != "application/json; charset=utf-8" {
			t.Fatalf("a %d that is not keyward's envelope: %q", w.Code, w.Body.String())
		}
	})
}

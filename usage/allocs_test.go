//go:build !race

package usage_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/usage"
)

// Counting a call costs the request path one allocation (the writer that
// watches the status) and the counter none, once the key is known. Checked
// without the race detector, which allocates on its own.
func TestMiddlewareAllocs(t *testing.T) {
	var c usage.Counter
	h := usage.Middleware(&c, nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	req := keyward.AttachKey(httptest.NewRequest("GET", "/", nil), key("k"))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if n := testing.AllocsPerRun(1000, func() { h.ServeHTTP(w, req) }); n > 1 {
		t.Errorf("the middleware allocates %v times per request, want at most 1", n)
	}
	k := key("k")
	if n := testing.AllocsPerRun(1000, func() { c.RecordOutcome(k, usage.Served, 1, testNowUsage) }); n != 0 {
		t.Errorf("the counter allocates %v times per call, want 0", n)
	}
}

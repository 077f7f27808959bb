package keywardtest_test

import (
	"net/http"
	"testing"

	"github.com/keyward/keyward/keywardtest"
	"github.com/stretchr/testify/assert"
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

// A Stack whose routes cannot be served is an error from NetHTTP, never a
// panic of the mux or a handler that panics per request.
func TestStackCheck(t *testing.T) {
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	for name, routes := range map[string][]keywardtest.Route{
		"no handler":           {{Method: "GET", Path: "/a"}},
		"no method":            {{Path: "/a", Handler: ok}},
		"relative path":        {{Method: "GET", Path: "a", Handler: ok}},
		"path with a wild":     {{Method: "GET", Path: "/a/{id}", Handler: ok}},
		"served twice":         {{Method: "GET", Path: "/a", Handler: ok}, {Method: "GET", Path: "/a", Handler: ok}},
		"auth without one":     {{Method: "GET", Path: "/a", Handler: ok, Auth: true}},
		"limit without one":    {{Method: "GET", Path: "/a", Handler: ok, Limit: true}},
		"a method not a token": {{Method: "G(T", Path: "/a", Handler: ok}},
		"an unclean path":      {{Method: "GET", Path: "//a", Handler: ok}, {Method: "GET", Path: "/a/../b", Handler: ok}},
	} {
		_, err := keywardtest.NetHTTP(keywardtest.Stack{Routes: routes})
		assert.Error(t, err, name)
	}
	_, err := keywardtest.NetHTTP(keywardtest.Stack{Routes: []keywardtest.Route{{Method: "GET", Path: "/a", Handler: ok},
		{Method: "POST", Path: "/a", NativeFailure: http.StatusTeapot}}})
	assert.NoError(t, err)
}

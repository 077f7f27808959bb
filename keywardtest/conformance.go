package keywardtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/keyward/keyward"
)

// Stack is what a server under conformance test is built from: the
// configured keyward handlers, each built once (so that, for example, one
// rate limiter counts every route), and the routes to serve with them.
// RunConformance makes a fresh Stack for every run.
type Stack struct {
	// Auth is RequireAPIKey's decision: a key store that fails for some
	// keys, keys of the live environment only.
	Auth *keyward.Authenticator
	// Limiter is RateLimitByOrg's decision, on in-memory counters, with a
	// clock stopped in the middle of a window.
	Limiter *keyward.RateLimiter
	// Errors is the writer every handler above answers with, its meta
	// pinned: a fixed generatedAt and version, requestId echoed from the
	// request's X-Request-Id. Route handlers use it too.
	Errors *keyward.ErrorWriter
	// Routes are the routes to serve, each with the handlers it needs.
	Routes []Route
}

// Route is one route of the server under test. Build it as
//
//	RequireAPIKey (if Auth) → EnforcePermissions (if Permissions != nil) →
//	RateLimitByOrg (if Limit) → ChargeCredits (if Charge) → the handler
//
// using the framework's own way of registering Method and Path.
type Route struct {
	// Method and Path, a fixed path without parameters.
	Method, Path string
	// Auth: RequireAPIKey with Stack.Auth.
	Auth bool
	// Permissions: EnforcePermissions with this checker; nil for none.
	Permissions *keyward.PermissionChecker
	// Limit: RateLimitByOrg with Stack.Limiter.
	Limit bool
	// Charge: ChargeCredits with this Charger (each route's has its own
	// cost; all share one memory ledger that fails for one organization);
	// nil for none.
	Charge *keyward.Charger
	// Handler is the application; serve it through the framework's
	// wrapper for net/http handlers (gin.WrapH, echo.WrapHandler). Nil when
	// NativeFailure is set.
	Handler http.Handler
	// NativeFailure, when not zero, asks for a handler that fails with this
	// status in the framework's own way: gin's c.AbortWithStatus, an
	// echo.HTTPError returned by the handler, http.Error on net/http. The
	// kit compares only the status and keyward's headers of its response.
	NativeFailure int
}

// Builder builds the server under test from a Stack. It must not install a
// recovery middleware: the kit checks that a handler's panic goes on past
// keyward.
type Builder func(Stack) (http.Handler, error)

// Check returns every problem of s's routes, joined: a method or path
// that is empty, has a space or (the path) does not start with "/"; a
// method and path served twice; no Handler and no NativeFailure; Auth or
// Limit without Stack.Auth or Stack.Limiter. NetHTTP calls it first.
func (s Stack) Check() error {
	var errs []error
	seen := map[string]bool{}
	for i, rt := range s.Routes {
		bad := func(problem string) {
			errs = append(errs, fmt.Errorf("keywardtest: route %d (%s %s): %s", i, rt.Method, rt.Path, problem))
		}
		if rt.Method == "" || strings.ContainsAny(rt.Method, " \t") || !strings.HasPrefix(rt.Path, "/") || strings.ContainsAny(rt.Path, " \t{}") {
			bad("want a method and a fixed path starting with /")
		}
		if seen[rt.Method+" "+rt.Path] {
			bad("served twice")
		}
		seen[rt.Method+" "+rt.Path] = true
		if rt.Handler == nil && rt.NativeFailure == 0 {
			bad("has neither a Handler nor a NativeFailure")
		}
		if rt.Auth && s.Auth == nil || rt.Limit && s.Limiter == nil {
			bad("asks for Auth or Limit, which the Stack lacks")
		}
	}
	return errors.Join(errs...)
}

// NetHTTP is the reference Builder: the routes on an http.ServeMux, each
// behind the core's net/http middleware.
func NetHTTP(s Stack) (_ http.Handler, err error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	defer func() {
		if p := recover(); p != nil { // a pattern the mux refuses, past Check's rules
			err = fmt.Errorf("keywardtest: %v", p)
		}
	}()
	mux := http.NewServeMux()
	for _, rt := range s.Routes {
		h := rt.Handler
		if rt.NativeFailure != 0 {
			code := rt.NativeFailure
			h = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, http.StatusText(code), code)
			})
		}
		if rt.Charge != nil {
			h = rt.Charge.Middleware(h)
		}
		if rt.Limit {
			h = s.Limiter.Middleware(h)
		}
		if rt.Permissions != nil {
			h = rt.Permissions.Middleware(h)
		}
		if rt.Auth {
			h = s.Auth.Middleware(h)
		}
		mux.Handle(rt.Method+" "+rt.Path, h)
	}
	return mux, nil
}

// Exchange is one request of the conformance run and what came back.
type Exchange struct {
	// Case names the request.
	Case string
	// Status is the status code sent (200 when nothing was sent).
	Status int
	// Header is the response header: all of it, or, for a route with a
	// NativeFailure, only the headers keyward writes.
	Header http.Header
	// Body is the response body; empty for a NativeFailure route.
	Body string
	// Spent is the credits the request spent, all organizations together.
	Spent int64
	// Panicked reports that the handler's panic went on past the server.
	Panicked bool
}

// Transcript is every Exchange of a run, in order.
type Transcript []Exchange

// nativeHeaders are the headers keyward's handlers write that a
// framework's own failure leaves alone.
var nativeHeaders = []string{
	"Idempotent-Replayed", "Ratelimit", "Ratelimit-Policy", "Retry-After", "Www-Authenticate",
	"X-Credits-Remaining", "X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset", "X-Request-Id",
}

// onlyKeywardHeaders returns the part of h that keyward writes and a
// framework's own failure does not.
func onlyKeywardHeaders(h http.Header) http.Header {
	out := http.Header{}
	for _, k := range nativeHeaders {
		if v, ok := h[k]; ok {
			out[k] = v
		}
	}
	return out
}

// SameTranscript reports, as test errors, every difference between two
// transcripts of the kit: the same cases in the same order, each with the
// same status, headers, body, credits spent and panic. It returns whether
// they are the same.
func SameTranscript(t testing.TB, want, got Transcript) bool {
	t.Helper()
	same := true
	if len(want) != len(got) {
		t.Errorf("transcripts have %d and %d exchanges", len(want), len(got))
		same = false
	}
	for i := range min(len(want), len(got)) {
		w, g := want[i], got[i]
		if w.Case != g.Case {
			t.Errorf("exchange %d: case %q, want %q", i, g.Case, w.Case)
			same = false
			continue
		}
		if w.Status != g.Status {
			t.Errorf("%s: status %d, want %d", w.Case, g.Status, w.Status)
			same = false
		}
		for _, k := range unionKeys(w.Header, g.Header) {
			if !slices.Equal(w.Header[k], g.Header[k]) {
				t.Errorf("%s: header %s: %q, want %q", w.Case, k, g.Header[k], w.Header[k])
				same = false
			}
		}
		if w.Body != g.Body {
			t.Errorf("%s: body\n  got  %q\n  want %q", w.Case, g.Body, w.Body)
			same = false
		}
		if w.Spent != g.Spent {
			t.Errorf("%s: spent %d credits, want %d", w.Case, g.Spent, w.Spent)
			same = false
		}
		if w.Panicked != g.Panicked {
			t.Errorf("%s: panicked %v, want %v", w.Case, g.Panicked, w.Panicked)
			same = false
		}
	}
	return same
}

func unionKeys(a, b http.Header) []string {
	var ks []string
	for k := range a {
		ks = append(ks, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	return ks
}

// errNoRoute is for a Builder that lost a route.
var errNoRoute = errors.New("keywardtest: the server answered 404: a route is missing")

type cancelKey struct{}

// cancelRequest cancels the request's context, as a client that goes away
// does; the kit puts the function in every request's context.
func cancelRequest(ctx context.Context) {
	if f, ok := ctx.Value(cancelKey{}).(context.CancelFunc); ok {
		f()
	}
}

package keywardecho_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/keyward/keyward"
	keywardecho "github.com/keyward/keyward/adapters/echo"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// discard is a ResponseWriter that costs nothing, so that benchmarks
// measure the chain and not a recorder.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

// benchDecisions are the four decisions of the full chain for one
// organization that is never limited (a rate of 2^40 a minute) and never
// runs out of credits (overage), and its key.
type benchDecisions struct {
	auth   *keyward.Authenticator
	perm   *keyward.PermissionChecker
	limit  *keyward.RateLimiter
	charge *keyward.Charger
	key    string
}

func newBenchDecisions(b testing.TB) *benchDecisions {
	b.Helper()
	ctx := context.Background()
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	store, err := memstore.New(memstore.Options{Prefix: "triq_"})
	must(err)
	cache, err := keyward.NewCache(store, keyward.CacheConfig{TTL: time.Hour})
	must(err)
	b.Cleanup(cache.Close)
	store.Watch(cache)
	org, err := store.CreateOrg(ctx, manage.OrgSpec{Name: "acme", Plan: "growth", RatePerMinute: keyward.MaxRatePerMinute,
		RatePerSecond: keyward.MaxRatePerMinute / 60, Concurrency: keyward.MaxRatePerMinute, AllowOverage: true})
	must(err)
	k, err := store.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "production", Permissions: []string{"transactions:enrich"}})
	must(err)
	ledger, err := memstore.NewLedger(memstore.LedgerOptions{})
	must(err)
	d := &benchDecisions{key: k.Key}
	d.auth, err = keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_"})
	must(err)
	d.perm, err = keyward.EnforcePermissions(keyward.PermissionConfig{Required: []string{"transactions:enrich"}})
	must(err)
	d.limit, err = keyward.RateLimitByOrg(keyward.RateLimitConfig{})
	must(err)
	d.charge, err = keyward.ChargeCredits(keyward.CreditConfig{Ledger: ledger})
	must(err)
	return d
}

const benchPath = "/v1/transactions/enrich"

// netHTTP is the full chain on net/http: a ServeMux route behind the
// core's four middleware.
func (d *benchDecisions) netHTTP(b testing.TB) http.Handler {
	charge := d.charge.Middleware
	mux := http.NewServeMux()
	mux.Handle("POST "+benchPath, d.auth.Middleware(d.perm.Middleware(d.limit.Middleware(charge(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, ok := keyward.FromContext(r.Context()); !ok {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusOK)
		}))))))
	return mux
}

// echo is the same chain on an *echo.Echo.
func (d *benchDecisions) echo(b testing.TB) http.Handler {
	auth, err1 := keywardecho.RequireAPIKey(d.auth)
	perm, err2 := keywardecho.EnforcePermissions(d.perm)
	limit, err3 := keywardecho.RateLimitByOrg(d.limit)
	charge, err4 := keywardecho.ChargeCredits(d.charge)
	for _, err := range []error{err1, err2, err3, err4} {
		if err != nil {
			b.Fatal(err)
		}
	}
	e := echo.New()
	e.POST(benchPath, func(c echo.Context) error {
		if _, ok := keywardecho.Key(c); !ok {
			return c.NoContent(http.StatusInternalServerError)
		}
		return c.NoContent(http.StatusOK)
	}, auth, perm, limit, charge)
	return e
}

// serveBench serves r with h, serially or from parallel goroutines, and
// fails if a response is not 200. Besides wall time it reports the
// process's CPU time per request (cpu-ns/op): the machine is shared, and
// another process's load stretches wall time but not this one's CPU time.
func serveBench(b *testing.B, h http.Handler, r *http.Request, parallel bool) {
	b.ReportAllocs()
	cpu0, cpuOK := processCPU()
	var n int
	if parallel {
		b.RunParallel(func(pb *testing.PB) {
			// A request of its own: a ServeMux writes the matched pattern
			// into the request it serves.
			r := r.Clone(r.Context())
			w := &statusWriter{discard: discard{h: http.Header{}}}
			for pb.Next() {
				h.ServeHTTP(w, r)
			}
			w.check(b)
		})
		n = b.N
	} else {
		w := &statusWriter{discard: discard{h: http.Header{}}}
		for b.Loop() {
			h.ServeHTTP(w, r)
			n++
		}
		w.check(b)
	}
	if cpu1, ok := processCPU(); cpuOK && ok && n > 0 {
		b.ReportMetric(float64(cpu1-cpu0)/float64(n), "cpu-ns/op")
	}
}

// statusWriter is discard that remembers a status other than 200.
type statusWriter struct {
	discard
	bad int
}

func (w *statusWriter) WriteHeader(code int) {
	if code != http.StatusOK {
		w.bad = code
	}
}

func (w *statusWriter) check(b *testing.B) {
	if w.bad != 0 {
		b.Errorf("a response was %d, want 200", w.bad)
	}
}

// BenchmarkChain is the full chain (RequireAPIKey → EnforcePermissions →
// RateLimitByOrg → ChargeCredits, memory limiter and ledger) through echo
// and through net/http, in one run.
func BenchmarkChain(b *testing.B) {
	d := newBenchDecisions(b)
	r, err := http.NewRequest(http.MethodPost, benchPath, nil)
	if err != nil {
		b.Fatal(err)
	}
	r.Header.Set("X-API-Key", d.key)
	impls := []struct {
		name string
		h    http.Handler
	}{{"nethttp", d.netHTTP(b)}, {"echo", d.echo(b)}}
	for _, impl := range impls {
		impl.h.ServeHTTP(&discard{h: http.Header{}}, r) // warm the cache
	}
	for _, mode := range []struct {
		name     string
		parallel bool
	}{{"serial", false}, {"parallel", true}} {
		for _, impl := range impls {
			b.Run("impl="+impl.name+"/"+mode.name, func(b *testing.B) { serveBench(b, impl.h, r, mode.parallel) })
		}
	}
}

// BenchmarkKeyAuth is what keyward's safety costs against echo's built-in:
// echo's middleware.KeyAuth with a validator that looks the key up in a
// map, against RequireAPIKey on echo (format and checksum, SHA-256, the
// cache with its revocation and expiry checks, the Principal in the
// request context and in c). Both routes answer 200 with no body.
func BenchmarkKeyAuth(b *testing.B) {
	d := newBenchDecisions(b)
	r, err := http.NewRequest(http.MethodGet, "/v1/categories", nil)
	if err != nil {
		b.Fatal(err)
	}
	r.Header.Set("X-API-Key", d.key)
	ok := func(c echo.Context) error { return c.NoContent(http.StatusOK) }

	keys := map[string]bool{d.key: true}
	builtin := echo.New()
	builtin.GET("/v1/categories", ok, middleware.KeyAuthWithConfig(middleware.KeyAuthConfig{
		KeyLookup: "header:X-API-Key",
		Validator: func(key string, _ echo.Context) (bool, error) { return keys[key], nil },
	}))

	auth, err := keywardecho.RequireAPIKey(d.auth)
	if err != nil {
		b.Fatal(err)
	}
	ours := echo.New()
	ours.GET("/v1/categories", ok, auth)

	impls := []struct {
		name string
		h    http.Handler
	}{{"echo-keyauth", builtin}, {"keyward", ours}}
	for _, impl := range impls {
		impl.h.ServeHTTP(&discard{h: http.Header{}}, r) // warm the cache
	}
	for _, mode := range []struct {
		name     string
		parallel bool
	}{{"serial", false}, {"parallel", true}} {
		for _, impl := range impls {
			b.Run("impl="+impl.name+"/"+mode.name, func(b *testing.B) { serveBench(b, impl.h, r, mode.parallel) })
		}
	}
}

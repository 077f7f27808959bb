package keyward_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
)

// Plans on the store; permissions per route; one organization's limits
// across all of its keys and routes.
func ExampleRateLimitByOrg() {
	ctx := context.Background()
	// The plan table, configured once, on the store. Nil: keyward.DefaultPlans().
	plans, err := keyward.NewPlans(
		keyward.Plan{Name: "free", Limits: keyward.Limits{RequestsPerSecond: 1, RequestsPerMinute: 60, Concurrency: 2, MonthlyCredits: 100}},
		keyward.Plan{Name: "pro", Limits: keyward.Limits{RequestsPerSecond: 20, RequestsPerMinute: 1_000, Concurrency: 20, MonthlyCredits: 50_000}},
		keyward.Plan{Name: "enterprise"}, // custom: each organization sets its own
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	store, _ := memstore.New(memstore.Options{Prefix: "triq_", Plans: plans})
	cache, _ := keyward.NewCache(store, keyward.CacheConfig{})
	defer cache.Close()
	store.Watch(cache)

	auth, _ := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_"})
	// A malformed or wildcard permission is an error here, never a panic.
	enrich, err := keyward.EnforcePermissions(keyward.PermissionConfig{Required: []string{"transactions:enrich"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	// In-process limits (Store nil): one rate.Memory per process, shared
	// by every RateLimiter, so an organization's limits hold across routes.
	limit, _ := keyward.RateLimitByOrg(keyward.RateLimitConfig{})

	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "enriched")
	})
	mux := http.NewServeMux()
	mux.Handle("POST /v1/transactions/enrich", auth.Middleware(enrich.Middleware(limit.Middleware(hello))))
	mux.Handle("GET /v1/categories", auth.Middleware(limit.Middleware(hello))) // the same limits

	big, _ := store.CreateOrg(ctx, manage.OrgSpec{Name: "bigco", Plan: "enterprise", RatePerMinute: 5_000})
	fmt.Printf("%s: %+v\n", big.Name, big.Limits)
	_, _ = store.CreateKey(ctx, manage.KeySpec{OrgID: big.ID, Name: "partner",
		Permissions: []string{"transactions:enrich"}, RatePerMinute: 100}) // a key's own limit, on top

	small, _ := store.CreateOrg(ctx, manage.OrgSpec{Name: "smallco", Plan: "free"}) // 1 a second, 2 at once
	reader, _ := store.CreateKey(ctx, manage.KeySpec{OrgID: small.ID, Name: "reader", Permissions: []string{"transactions:read"}})
	writer, _ := store.CreateKey(ctx, manage.KeySpec{OrgID: small.ID, Name: "writer", Permissions: []string{"transactions:*"}})
	for _, call := range []struct{ method, path, key string }{
		{"POST", "/v1/transactions/enrich", reader.Key}, // lacks transactions:enrich
		{"POST", "/v1/transactions/enrich", writer.Key},
		{"GET", "/v1/categories", reader.Key},
		{"GET", "/v1/categories", writer.Key}, // a third request in the same second
	} {
		r := httptest.NewRequest(call.method, call.path, nil)
		r.Header.Set("X-API-Key", call.key)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		line := fmt.Sprint(call.method, " ", call.path, " ", w.Code)
		if scope := w.Header().Get("X-RateLimit-Scope"); scope != "" { // on a 429: the limit that refused
			line += " " + scope
		}
		fmt.Println(line)
	}
	// Output:
	// bigco: {RequestsPerSecond:84 Burst:84 RequestsPerMinute:5000 Concurrency:84 MonthlyCredits:0}
	// POST /v1/transactions/enrich 403
	// POST /v1/transactions/enrich 200
	// GET /v1/categories 200
	// GET /v1/categories 429 rps
}

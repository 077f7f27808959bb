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

// Wrap a handler so that only requests with a valid key reach it.
func ExampleRequireAPIKey() {
	store, _ := memstore.New(memstore.Options{Prefix: "triq_"})
	cache, _ := keyward.NewCache(store, keyward.CacheConfig{})
	defer cache.Close()
	store.Watch(cache) // revocations reach the cache at once

	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_"})
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("GET /v1/categories", auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, _ := keyward.FromContext(r.Context())
		fmt.Fprintf(w, "hello %s", k.Org.Name)
	})))

	org, _ := store.CreateOrg(context.Background(), manage.OrgSpec{Name: "acme", Plan: "free"})
	key, _ := store.CreateKey(context.Background(), manage.KeySpec{OrgID: org.ID, Name: "production"})

	for _, presented := range []string{key.Key, "", "sk_live_123"} {
		r := httptest.NewRequest(http.MethodGet, "/v1/categories", nil)
		if presented != "" {
			r.Header.Set("X-API-Key", presented)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		fmt.Println(w.Code)
	}
	// Output:
	// 200
	// 401
	// 401
}

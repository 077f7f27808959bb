package keyward_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
)

// Wrap a handler so that only requests with a valid key reach it, and read
// there who is calling.
func ExampleRequireAPIKey() {
	ctx := context.Background()
	store, _ := memstore.New(memstore.Options{Prefix: "triq_"}) // or sqlstore (docs/multi-instance.md)
	cache, _ := keyward.NewCache(store, keyward.CacheConfig{})
	defer cache.Close()
	store.Watch(cache) // changes reach the cache at once

	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_"})
	if err != nil {
		fmt.Println(err) // every configuration problem, joined
		return
	}
	mux := http.NewServeMux()
	mux.Handle("GET /v1/categories", auth.Middleware(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			rec, _ := keyward.FromContext(r.Context()) // always there behind RequireAPIKey
			fmt.Fprintf(w, "hello %s (%s plan, %d requests/min)",
				rec.Org.Name, rec.Org.Plan, rec.Org.Limits.RequestsPerMinute)
		})))

	org, _ := store.CreateOrg(ctx, manage.OrgSpec{Name: "acme", Plan: "starter"})
	key, _ := store.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "production",
		Permissions: []string{"transactions:*"}})
	// key.Key is the X-API-Key to hand over: the only time the plaintext exists.

	for _, presented := range []string{key.Key, "", "sk_live_123"} {
		r := httptest.NewRequest(http.MethodGet, "/v1/categories", nil)
		if presented != "" {
			r.Header.Set("X-API-Key", presented)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		var answer struct { // a failure's envelope, as the table below lists
			Error struct{ Details struct{ Reason string } }
		}
		if json.Unmarshal(w.Body.Bytes(), &answer) == nil {
			fmt.Println(w.Code, answer.Error.Details.Reason)
		} else {
			fmt.Println(w.Code, w.Body.String())
		}
	}
	// Output:
	// 200 hello acme (starter plan, 300 requests/min)
	// 401 missing_api_key
	// 401 invalid_api_key_format
}

// Failures in your words: one ErrorWriter, given to every handler, with
// messages of your own; errors.Is matches a failure by code and reason.
func ExampleErrorWriter() {
	ctx := context.Background()
	store, _ := memstore.New(memstore.Options{Prefix: "triq_"})
	cache, _ := keyward.NewCache(store, keyward.CacheConfig{})
	defer cache.Close()
	store.Watch(cache)

	errs := &keyward.ErrorWriter{
		Message: func(e *keyward.Error) string { // "" keeps keyward's message
			return strings.ReplaceAll(e.Message, "in the dashboard", "at https://console.example.com/keys")
		},
	}
	auth, _ := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_", Errors: errs})

	org, _ := store.CreateOrg(ctx, manage.OrgSpec{Name: "acme"}) // the free plan
	key, _ := store.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "ci"})
	_ = store.RevokeKey(ctx, key.Record.ID)

	r := httptest.NewRequest(http.MethodGet, "/v1/categories", nil)
	r.Header.Set("X-API-Key", key.Key)
	revoked := &keyward.Error{Code: keyward.CodeAuthentication, Reason: keyward.ReasonRevokedAPIKey}
	_, err := auth.Authenticate(r)
	fmt.Println(errors.Is(err, revoked))

	w := httptest.NewRecorder()
	auth.Middleware(nil).ServeHTTP(w, r) // refused: the next handler is never reached
	var answer struct {
		Error struct{ Code, Message string }
	}
	_ = json.Unmarshal(w.Body.Bytes(), &answer)
	fmt.Println(w.Code, answer.Error.Code)
	fmt.Println(answer.Error.Message)
	// Output:
	// true
	// 401 authentication_error
	// API key has been revoked. Generate a new key at https://console.example.com/keys.
}

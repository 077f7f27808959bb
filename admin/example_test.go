package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/admin"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/keyward/keyward/sqlstore/sqlite"
)

// The dashboard in self-service mode, embedded beside the API it reports
// on: each signed-in customer manages their own organization only.
func ExampleNew() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "keyward")
	defer os.RemoveAll(dir)
	store, err := sqlstore.Open(ctx, sqlite.DSN(filepath.Join(dir, "keyward.db")), sqlstore.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	cache, _ := keyward.NewCache(store, keyward.CacheConfig{})
	defer cache.Close()
	store.Watch(cache)
	// The API: with the store as Usage, RequireAPIKey records every call it
	// lets through (outcome, and the credits the ledger took) for the chart.
	auth, _ := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: store.Format().Prefix(), Usage: store})
	charge, _ := keyward.ChargeCredits(keyward.CreditConfig{Ledger: store, Cost: 1})
	enrich := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})

	// sessions stands for your sign-in: the browser holds a random session
	// id, and only the server knows whose organization it is.
	var sessions sync.Map // session id → organization id
	dash, err := admin.New(admin.Config{
		Keys: store, Ledger: store, Usage: store, History: store, Plans: store.Plans,
		Permissions: []string{"transactions:enrich", "transactions:read"}, // the most a customer may give a key
		// Your own server-side sign-in, never an organization id the
		// browser sends: whoever could set that would manage any organization.
		OrgFor: func(r *http.Request) (string, error) {
			if c, err := r.Cookie("session"); err == nil {
				if org, ok := sessions.Load(c.Value); ok {
					return org.(string), nil
				}
			}
			return "", errors.New("not signed in") // 401 not_signed_in
		},
		Brand: admin.Brand{Name: "Acme Cloud", Accent: "#6b2fa0"}, // your name and colour
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/transactions/enrich", auth.Middleware(charge.Middleware(enrich)))
	mux.Handle(admin.APIPath, dash)  // /admin/v1/
	mux.Handle(admin.PagePath, dash) // /dashboard/

	acme, _ := store.CreateOrg(ctx, manage.OrgSpec{Name: "acme", Plan: "free"})
	other, _ := store.CreateOrg(ctx, manage.OrgSpec{Name: "other", Plan: "free"})
	key, _ := store.CreateKey(ctx, manage.KeySpec{OrgID: acme.ID, Name: "production"})
	sessions.Store("7Hq2vX9kPz", acme.ID) // acme's customer signed in

	call := func(method, path, header, value string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, nil)
		r.Header.Set(header, value)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}
	fmt.Println("enrich:", call("POST", "/v1/transactions/enrich", "X-API-Key", key.Key).Code)
	w := call("GET", "/admin/v1/orgs/"+acme.ID+"/credits", "Cookie", "session=7Hq2vX9kPz")
	var balance struct {
		Data struct{ Available, Spent int64 }
	}
	_ = json.Unmarshal(w.Body.Bytes(), &balance)
	fmt.Printf("acme's credits: %d %+v\n", w.Code, balance.Data)
	fmt.Println("another organization:", call("GET", "/admin/v1/orgs/"+other.ID+"/credits", "Cookie", "session=7Hq2vX9kPz").Code)
	fmt.Println("a grant, the operator's:", call("POST", "/admin/v1/orgs/"+acme.ID+"/credits/grants", "Cookie", "session=7Hq2vX9kPz").Code)
	fmt.Println("not signed in:", call("GET", "/admin/v1/orgs/"+acme.ID+"/credits", "Cookie", "session=guess").Code)
	fmt.Println("the page:", call("GET", "/dashboard/", "Cookie", "session=7Hq2vX9kPz").Code) // to acme's page
	// Output:
	// enrich: 200
	// acme's credits: 200 {Available:99 Spent:1}
	// another organization: 404
	// a grant, the operator's: 403
	// not signed in: 401
	// the page: 303
}

package keyward_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
)

// Charge each call one credit, and let a batch endpoint set its own cost.
func ExampleChargeCredits() {
	store, _ := memstore.New(memstore.Options{Prefix: "triq_"})
	cache, _ := keyward.NewCache(store, keyward.CacheConfig{})
	defer cache.Close()
	store.Watch(cache)
	auth, _ := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_"})
	requireKey := auth.Middleware

	ledger, _ := memstore.NewLedger(memstore.LedgerOptions{})
	one, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: ledger, Cost: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	batch, _ := keyward.ChargeCredits(keyward.CreditConfig{Ledger: ledger}) // reserves 1; the handler sets the real cost
	chargeOne, chargeBatch := one.Middleware, batch.Middleware

	mux := http.NewServeMux()
	mux.Handle("POST /v1/enrich", requireKey(chargeOne(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "enriched") }))))
	mux.Handle("POST /v1/enrich/batch", requireKey(chargeBatch(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			n, _ := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
			if err := keyward.SetCost(r.Context(), n); err != nil {
				(&keyward.ErrorWriter{}).WriteError(w, r, err) // 402 when credits are short
				return
			}
			fmt.Fprintf(w, "enriched %d", n)
		}))))

	org, _ := store.CreateOrg(context.Background(), manage.OrgSpec{Name: "acme", Plan: "free"}) // 100 credits a month
	key, _ := store.CreateKey(context.Background(), manage.KeySpec{OrgID: org.ID, Name: "production"})

	for _, target := range []string{"/v1/enrich", "/v1/enrich/batch?size=90", "/v1/enrich/batch?size=10", "/v1/enrich"} {
		r := httptest.NewRequest(http.MethodPost, target, nil)
		r.Header.Set("X-API-Key", key.Key)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		line := fmt.Sprint(target, " ", w.Code)
		if rem := w.Header().Get("X-Credits-Remaining"); rem != "" {
			line += ", remaining " + rem
		}
		fmt.Println(line)
	}
	// Output:
	// /v1/enrich 200, remaining 99
	// /v1/enrich/batch?size=90 200, remaining 9
	// /v1/enrich/batch?size=10 402
	// /v1/enrich 200, remaining 8
}

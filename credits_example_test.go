package keyward_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/keyward/keyward/sqlstore/sqlite"
)

// Charge each call one credit, and let a batch endpoint set its own cost:
// a 2xx spends its cost, anything else (this 422, a 402) spends nothing.
func ExampleChargeCredits() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "keyward")
	defer os.RemoveAll(dir)
	// Keys, organizations and credits in one SQLite file; make keys with
	// `keyward orgs create` and `keyward keys create` (same --db).
	store, err := sqlstore.Open(ctx, sqlite.DSN(filepath.Join(dir, "keyward.db")), sqlstore.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close() // flushes usage counters: shut down as docs/multi-instance.md shows
	cache, _ := keyward.NewCache(store, keyward.CacheConfig{})
	defer cache.Close()
	store.Watch(cache)
	auth, _ := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: store.Format().Prefix(), Usage: store})

	// One Charger per cost. The ledger: the store (a credit.Ledger), or
	// memstore.NewLedger(memstore.LedgerOptions{}).
	chargeOne, _ := keyward.ChargeCredits(keyward.CreditConfig{Ledger: store, Cost: 1})
	chargeBatch, _ := keyward.ChargeCredits(keyward.CreditConfig{Ledger: store,
		CostFunc: func(r *http.Request) (int64, error) { return 0, nil }}) // the handler sets it

	var errs *keyward.ErrorWriter // nil: the defaults, as the handlers use
	enrich := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, `{"category":"food_and_drink"}`)
	})
	batch := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var items []json.RawMessage
		if err := json.NewDecoder(r.Body).Decode(&items); err != nil {
			errs.WriteError(w, r, keyward.Validation(http.StatusUnprocessableEntity,
				"The body must be a JSON array.", nil)) // a 422: not charged
			return
		}
		// Raising the cost reserves the difference now, or fails with a
		// 402 *keyward.Error for the handler to write.
		if err := keyward.SetCost(r.Context(), int64(len(items))); err != nil {
			errs.WriteError(w, r, err)
			return
		}
		fmt.Fprintf(w, `{"enriched":%d}`+"\n", len(items))
	})
	mux := http.NewServeMux()
	mux.Handle("POST /v1/transactions/enrich", auth.Middleware(chargeOne.Middleware(enrich)))
	mux.Handle("POST /v1/transactions/enrich/batch", auth.Middleware(chargeBatch.Middleware(batch)))

	org, _ := store.CreateOrg(ctx, manage.OrgSpec{Name: "acme", Plan: "free"}) // 100 credits a month
	key, _ := store.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "production"})
	items := func(n int) string { return "[" + strings.Repeat("{},", n-1) + "{}]" } // n JSON items
	for _, call := range []struct{ path, body string }{
		{"/v1/transactions/enrich", ""},
		{"/v1/transactions/enrich/batch", items(90)},
		{"/v1/transactions/enrich/batch", "not json"},
		{"/v1/transactions/enrich/batch", items(10)}, // 10 more than are left
		{"/v1/transactions/enrich", ""},
	} {
		r := httptest.NewRequest(http.MethodPost, call.path, bytes.NewBufferString(call.body))
		r.Header.Set("X-API-Key", key.Key)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		line := fmt.Sprint(call.path, " ", w.Code)
		if left := w.Header().Get("X-Credits-Remaining"); left != "" { // on every 2xx of a charged call
			line += ", remaining " + left
		}
		fmt.Println(line)
	}
	// Output:
	// /v1/transactions/enrich 200, remaining 99
	// /v1/transactions/enrich/batch 200, remaining 9
	// /v1/transactions/enrich/batch 422
	// /v1/transactions/enrich/batch 402
	// /v1/transactions/enrich 200, remaining 8
}

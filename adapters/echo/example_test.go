package keywardecho_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/keyward/keyward"
	keywardecho "github.com/keyward/keyward/adapters/echo"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
	"github.com/labstack/echo/v4"
)

// The full chain on an echo route: a 2xx spends one credit, anything else
// (an echo.HTTPError included) spends none.
func Example() {
	store, _ := memstore.New(memstore.Options{Prefix: "triq_"})
	cache, _ := keyward.NewCache(store, keyward.CacheConfig{})
	defer cache.Close()
	store.Watch(cache)
	ledger, _ := memstore.NewLedger(memstore.LedgerOptions{})

	// The decisions, shared by every route (and every router).
	auth, _ := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_"})
	enrich, _ := keyward.EnforcePermissions(keyward.PermissionConfig{Required: []string{"transactions:enrich"}})
	limiter, _ := keyward.RateLimitByOrg(keyward.RateLimitConfig{})
	charger, _ := keyward.ChargeCredits(keyward.CreditConfig{Ledger: ledger})

	requireKey, _ := keywardecho.RequireAPIKey(auth) // an error only for a nil decision
	perm, _ := keywardecho.EnforcePermissions(enrich)
	limit, _ := keywardecho.RateLimitByOrg(limiter)
	charge, _ := keywardecho.ChargeCredits(charger)
	e := echo.New()
	e.POST("/v1/transactions/enrich", func(c echo.Context) error {
		p, _ := keywardecho.Key(c) // or keyward.FromContext(c.Request().Context())
		if c.QueryParam("bad") != "" {
			return echo.NewHTTPError(http.StatusUnprocessableEntity, "bad body") // released: not charged
		}
		return c.JSON(http.StatusOK, map[string]string{"org": p.Org.Name})
	}, requireKey, perm, limit, charge)

	org, _ := store.CreateOrg(context.Background(), manage.OrgSpec{Name: "acme", Plan: "free", RatePerSecond: 5})
	key, _ := store.CreateKey(context.Background(), manage.KeySpec{OrgID: org.ID, Name: "production", Permissions: []string{"transactions:*"}})
	for _, target := range []string{"/v1/transactions/enrich", "/v1/transactions/enrich?bad=1"} {
		req := httptest.NewRequest(http.MethodPost, target, nil)
		req.Header.Set("X-API-Key", key.Key)
		w := httptest.NewRecorder()
		e.ServeHTTP(w, req)
		fmt.Print(w.Code, " ", w.Header().Get("X-Credits-Remaining"), " ", w.Body.String())
	}
	// Output:
	// 200 99 {"org":"acme"}
	// 422  {"message":"bad body"}
}

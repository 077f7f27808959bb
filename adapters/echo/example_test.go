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

// The four handlers on an echo route: a 2xx spends one credit, anything
// else (an echo.HTTPError included) spends none.
func Example() {
	ctx := context.Background()
	// In memory here; in production sqlstore.Open(ctx, sqlite.DSN("keyward.db"),
	// sqlstore.Options{}), a store and a ledger in one (see the core's README).
	store, _ := memstore.New(memstore.Options{Prefix: "triq_"})
	ledger, _ := memstore.NewLedger(memstore.LedgerOptions{})
	cache, _ := keyward.NewCache(store, keyward.CacheConfig{})
	defer cache.Close()
	store.Watch(cache)

	// The decisions, shared by every route (and every router).
	auth, _ := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_"})
	enrich, _ := keyward.EnforcePermissions(keyward.PermissionConfig{Required: []string{"transactions:enrich"}})
	limiter, _ := keyward.RateLimitByOrg(keyward.RateLimitConfig{})
	charger, _ := keyward.ChargeCredits(keyward.CreditConfig{Ledger: ledger, Cost: 1})

	// The adapter's errors are only for a nil decision.
	requireKey, _ := keywardecho.RequireAPIKey(auth)
	perm, _ := keywardecho.EnforcePermissions(enrich)
	limit, _ := keywardecho.RateLimitByOrg(limiter)
	charge, _ := keywardecho.ChargeCredits(charger)

	e := echo.New()
	e.POST("/v1/transactions/enrich", func(c echo.Context) error {
		rec, _ := keywardecho.Key(c) // or keyward.FromContext(c.Request().Context())
		if c.QueryParam("title") == "" {
			return echo.NewHTTPError(http.StatusUnprocessableEntity, "title is required") // not charged
		}
		return c.JSON(http.StatusOK, map[string]string{"org": rec.Org.Name}) // charged
	}, requireKey, perm, limit, charge)

	org, _ := store.CreateOrg(ctx, manage.OrgSpec{Name: "acme", Plan: "free", RatePerSecond: 5})
	key, _ := store.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "production", Permissions: []string{"transactions:*"}})
	for _, target := range []string{"/v1/transactions/enrich?title=Coffee", "/v1/transactions/enrich"} {
		req := httptest.NewRequest(http.MethodPost, target, nil)
		req.Header.Set("X-API-Key", key.Key)
		w := httptest.NewRecorder()
		e.ServeHTTP(w, req) // or e.Start("127.0.0.1:8080")
		fmt.Print(w.Code, " ", w.Header().Get("X-Credits-Remaining"), " ", w.Body.String())
	}
	// Output:
	// 200 99 {"org":"acme"}
	// 422  {"message":"title is required"}
}

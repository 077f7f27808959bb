package keywardgin_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/gin-gonic/gin"
	"github.com/keyward/keyward"
	keywardgin "github.com/keyward/keyward/adapters/gin"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
)

// The four handlers on a gin route: a 2xx spends one credit, anything else
// spends none.
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
	requireKey, _ := keywardgin.RequireAPIKey(auth)
	perm, _ := keywardgin.EnforcePermissions(enrich)
	limit, _ := keywardgin.RateLimitByOrg(limiter)
	charge, _ := keywardgin.ChargeCredits(charger)

	r := gin.New()
	r.POST("/v1/transactions/enrich", requireKey, perm, limit, charge, func(c *gin.Context) {
		rec, _ := keywardgin.Key(c) // or keyward.FromContext(c.Request.Context())
		if c.Query("title") == "" {
			c.AbortWithStatus(http.StatusUnprocessableEntity) // not charged
			return
		}
		c.JSON(http.StatusOK, gin.H{"org": rec.Org.Name}) // charged
	})

	org, _ := store.CreateOrg(ctx, manage.OrgSpec{Name: "acme", Plan: "free", RatePerSecond: 5})
	key, _ := store.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "production", Permissions: []string{"transactions:*"}})
	for _, target := range []string{"/v1/transactions/enrich?title=Coffee", "/v1/transactions/enrich"} {
		req := httptest.NewRequest(http.MethodPost, target, nil)
		req.Header.Set("X-API-Key", key.Key)
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req) // or r.Run("127.0.0.1:8080")
		fmt.Println(w.Code, w.Header().Get("X-Credits-Remaining"), w.Body.String())
	}
	// Output:
	// 200 99 {"org":"acme"}
	// 422
}

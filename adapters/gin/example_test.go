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

// The full chain on a gin route: a 2xx spends one credit, anything else
// spends none.
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

	requireKey, _ := keywardgin.RequireAPIKey(auth) // an error only for a nil decision
	perm, _ := keywardgin.EnforcePermissions(enrich)
	limit, _ := keywardgin.RateLimitByOrg(limiter)
	charge, _ := keywardgin.ChargeCredits(charger)
	r := gin.New()
	r.POST("/v1/transactions/enrich", requireKey, perm, limit, charge, func(c *gin.Context) {
		p, _ := keywardgin.Key(c) // or keyward.FromContext(c.Request.Context())
		if c.Query("bad") != "" {
			c.AbortWithStatus(http.StatusUnprocessableEntity) // released: not charged
			return
		}
		c.JSON(http.StatusOK, gin.H{"org": p.Org.Name})
	})

	org, _ := store.CreateOrg(context.Background(), manage.OrgSpec{Name: "acme", Plan: "free", RatePerSecond: 5})
	key, _ := store.CreateKey(context.Background(), manage.KeySpec{OrgID: org.ID, Name: "production", Permissions: []string{"transactions:*"}})
	for _, target := range []string{"/v1/transactions/enrich", "/v1/transactions/enrich?bad=1"} {
		req := httptest.NewRequest(http.MethodPost, target, nil)
		req.Header.Set("X-API-Key", key.Key)
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		fmt.Println(w.Code, w.Header().Get("X-Credits-Remaining"), w.Body.String())
	}
	// Output:
	// 200 99 {"org":"acme"}
	// 422
}

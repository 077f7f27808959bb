package bench

import (
	"context"
	"net/http"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
	"github.com/keyward/keyward/rate"
)

// Backends are what a chain runs on.
type Backends struct {
	// Keys and Manager hold the organization and its key.
	Keys    keyward.KeyStore
	Manager manage.KeyManager
	// Ledger holds the credits.
	Ledger credit.Ledger
	// Counters holds the rate-limit counters; nil for keyward's default.
	Counters rate.Store
	// Cold skips the key cache: every request reaches the key store.
	Cold bool
	// NoFront turns the cache's front of recently found keys off: every
	// request hashes its key and asks ristretto.
	NoFront bool
}

// Unlimited is a plan under which no benchmark hits a limit or runs out of
// credits.
var Unlimited, _ = keyward.NewPlans(keyward.Plan{Name: "free", Limits: keyward.Limits{RequestsPerSecond: keyward.MaxRatePerMinute / 60,
	RequestsPerMinute: keyward.MaxRatePerMinute, Concurrency: keyward.MaxRatePerMinute, MonthlyCredits: credit.MaxCredits}})

// Chain is the full keyward chain of one route and a request for it.
type Chain struct {
	Handler http.Handler
	Request *http.Request
	Key     string
	close   func()
}

// Close releases the chain's cache.
func (c *Chain) Close() { c.close() }

// Ok is the handler every chain ends in.
var Ok = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })

// NewChain builds RequireAPIKey → EnforcePermissions → RateLimitByOrg →
// ChargeCredits(1) → Ok on b, with one organization (overage allowed) and
// one key holding every permission.
func NewChain(ctx context.Context, b Backends) (*Chain, error) {
	org, err := b.Manager.CreateOrg(ctx, manage.OrgSpec{Name: "bench", Plan: "free", AllowOverage: true})
	if err != nil {
		return nil, err
	}
	k, err := b.Manager.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "bench", Permissions: []string{"*"}})
	if err != nil {
		return nil, err
	}
	keys, closeFn := b.Keys, func() {}
	if !b.Cold {
		cfg := keyward.CacheConfig{TTL: time.Hour}
		if b.NoFront {
			cfg.FrontSlots = -1
		}
		cache, err := keyward.NewCache(b.Keys, cfg)
		if err != nil {
			return nil, err
		}
		keys, closeFn = cache, cache.Close
	}
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: keys, Prefix: "triq_"})
	if err != nil {
		return nil, err
	}
	perm, err := keyward.EnforcePermissions(keyward.PermissionConfig{Required: []string{"transactions:enrich"}})
	if err != nil {
		return nil, err
	}
	limit, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{Store: b.Counters})
	if err != nil {
		return nil, err
	}
	charge, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: b.Ledger, Cost: 1})
	if err != nil {
		return nil, err
	}
	r, err := http.NewRequest(http.MethodPost, "/v1/transactions/enrich", nil)
	if err != nil {
		return nil, err
	}
	r.Header.Set("X-API-Key", k.Key)
	r.RemoteAddr = "203.0.113.7:41234"
	return &Chain{Handler: auth.Middleware(perm.Middleware(limit.Middleware(charge.Middleware(Ok)))), Request: r, Key: k.Key, close: closeFn}, nil
}

// MemoryBackends are keyward's in-process defaults.
func MemoryBackends() (Backends, error) {
	store, err := memstore.New(memstore.Options{Prefix: "triq_", Plans: Unlimited})
	if err != nil {
		return Backends{}, err
	}
	ledger, err := memstore.NewLedger(memstore.LedgerOptions{})
	if err != nil {
		return Backends{}, err
	}
	return Backends{Keys: store, Manager: store, Ledger: ledger}, nil
}

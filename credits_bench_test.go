package keyward_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/keyward/keyward/credit"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/memstore"
)

// attachState is the least a middleware that carries per-request state in
// the context can do: one allocation the size of a Charge, which is also
// the context, and the request copy that carries it. It is the floor
// ChargeCredits is measured against.
func attachState(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(&stateCtx{Context: r.Context()}))
	})
}

type stateCtx struct {
	context.Context
	_ [26]int64 // a Charge is 224 bytes
}

type stateKey struct{}

func (c *stateCtx) Value(key any) any {
	if _, ok := key.(stateKey); ok {
		return c
	}
	return c.Context.Value(key)
}

// BenchmarkChargeCredits measures what ChargeCredits adds to a request:
// chain=auth is RequireAPIKey alone (cached key), chain=auth+credits is
// RequireAPIKey → ChargeCredits(1) on a memory ledger whose organization
// allows overage, so that every call reserves and commits, and
// chain=auth+attach is RequireAPIKey → attachState, the floor.
func BenchmarkChargeCredits(b *testing.B) {
	f := newFixture(b)
	f.org.AllowOverage = true
	if err := f.store.UpdateOrg(b.Context(), f.org); err != nil {
		b.Fatal(err)
	}
	k := f.newKey(b)
	cache, err := keyward.NewCache(f.probe, keyward.CacheConfig{TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer cache.Close()
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_"})
	if err != nil {
		b.Fatal(err)
	}
	ledger, err := memstore.NewLedger(memstore.LedgerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	charge, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: ledger, Cost: 1})
	if err != nil {
		b.Fatal(err)
	}
	chains := []struct {
		name string
		h    http.Handler
	}{
		{"auth", auth.Middleware(okHandler)},
		{"auth+attach", auth.Middleware(attachState(okHandler))},
		{"auth+credits", auth.Middleware(charge.Middleware(okHandler))},
	}
	r := benchRequest(b, k.Key)
	for _, c := range chains {
		w := &discard{h: http.Header{}}
		c.h.ServeHTTP(w, r) // warm the cache
		if w.h.Get("X-Credits-Remaining") == "" && c.name == "auth+credits" {
			b.Fatal("the charged chain did not charge")
		}
	}
	for _, mode := range []struct {
		name     string
		parallel bool
	}{{"serial", false}, {"parallel", true}} {
		for _, c := range chains {
			b.Run("chain="+c.name+"/"+mode.name, func(b *testing.B) { runHandler(b, c.h, r, mode.parallel) })
		}
	}
	bal, err := ledger.Balance(b.Context(), credit.Account{OrgID: f.org.ID, Allocation: 100, AllowOverage: true})
	if err != nil {
		b.Fatal(err)
	}
	if bal.OpenReservations != 0 {
		b.Fatalf("%d reservations left open", bal.OpenReservations)
	}
}

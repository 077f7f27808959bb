package main

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLeaseIsVisible: with `keyward serve` (leases by default), an
// organization with credits to spare is served from a lease, and both
// /v1/usage and `keyward orgs show` (another process) report what the
// lease holds as leased, apart from what calls reserve; with --ledger
// exact nothing is leased.
func TestLeaseIsVisible(t *testing.T) {
	for _, ledger := range []string{"db", "exact"} {
		t.Run(ledger, func(t *testing.T) {
			c := newCLI(t)
			org := c.org("--name", "big", "--plan", "enterprise", "--rate", "1000/min", "--credits", "1000000")
			k := c.key(org, "--name", "k", "--permissions", "*")
			srv := c.serve("--ledger", ledger)
			r := srv.do(t, http.MethodPost, "/v1/transactions/enrich", k.Key, enrichBody)
			require.Equal(t, http.StatusOK, r.status, r.raw)
			r = srv.do(t, http.MethodGet, "/v1/usage", k.Key, "")
			require.Equal(t, http.StatusOK, r.status, r.raw)
			credits := r.body["data"].(map[string]any)["credits"].(map[string]any)
			assert.Equal(t, 1.0, credits["spent"])
			assert.Equal(t, 0.0, credits["reserved"])
			assert.Equal(t, 999_999.0, credits["remaining"])
			var shown struct {
				Reserved  int64 `json:"reserved"`
				Leased    int64 `json:"leased"`
				Available int64 `json:"available"`
			}
			c.json(&shown, "orgs", "show", org, "--json")
			assert.Zero(t, shown.Reserved, "a lease is not a call in flight")
			if ledger == "db" {
				assert.Positive(t, credits["leased"], "/v1/usage shows the lease")
				assert.Positive(t, shown.Leased, "orgs show, from another process, shows the lease")
			} else {
				assert.Equal(t, 0.0, credits["leased"])
				assert.Zero(t, shown.Leased)
			}
			out, _, code := c.run("orgs", "show", org)
			require.Zero(t, code)
			assert.Contains(t, out, "leased")
		})
	}
}

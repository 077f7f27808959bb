package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/keyward/keyward/admin"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/spf13/cobra"
)

// demoCommand is `keyward demo`: keyward serve on a fresh SQLite file, with
// an organization, a key and an admin token made for the occasion.
func (a *app) demoCommand() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "demo [--addr 127.0.0.1:8080]",
		Short: "Serve the demo API on a fresh SQLite file, with an organization and a key ready to use",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			ctx := cmd.Context()
			dir, err := os.MkdirTemp("", "keyward-demo-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			a.db = filepath.Join(dir, "keyward.db")
			a.create = true
			return a.withStore(ctx, func(s *sqlstore.Store) error {
				// The starter plan (5 requests/s): the three curl commands
				// below, pasted as one block, all answer 200.
				org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "demo", Plan: "starter"})
				if err != nil {
					return err
				}
				key, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "demo", Permissions: []string{"*"}})
				if err != nil {
					return err
				}
				f.adminTokens, f.loginLink = filepath.Join(dir, "admin-tokens"), true
				adminToken, _, err := admin.CreateToken(f.adminTokens, "demo", time.Now())
				if err != nil {
					return err
				}
				ready := func(addr, metrics, login string) {
					base := "http://" + addr
					l := org.Limits
					fmt.Fprintf(a.stdout, `keyward demo: organization "demo" (%s plan: %d requests/s, %d/min, %d in flight, %d credits/month)
	database: %s (deleted on exit)

	Your API key (shown once):

	    %s

	Try it:

	    curl -s %s/v1/categories -H 'X-API-Key: %s'

	    curl -s -X POST %s/v1/transactions/enrich -H 'X-API-Key: %s' \
	      -H 'Content-Type: application/json' -d '{"title": "STARBUCKS STORE 1234 SEATTLE", "country": "US", "type": "expense"}'

	    curl -s %s/v1/usage -H 'X-API-Key: %s'

	Metrics (Prometheus text format): curl -s %s

	Every answer carries the rate-limit headers (X-RateLimit-Limit is per
	second; -Concurrency-* the requests in flight); %d calls may start at once
	(the plan's burst), and past that, the next within the second gets 429
	with X-RateLimit-Scope: rps. Requests with a bad key are throttled per
	client (--failed-auth-per-minute).

	The dashboard (create, rotate and revoke keys; watch usage). This sign-in link works once, for 15 minutes:

	    %s%s

	The admin API, with the demo's admin token (shown once):

	    curl -s %s/admin/v1/orgs -H 'Authorization: Bearer %s'

	Press Ctrl-C to stop.
	`, org.Plan, l.RequestsPerSecond, l.RequestsPerMinute, l.Concurrency, l.MonthlyCredits,
						a.db, key.Key, base, key.Key, base, key.Key, base, key.Key, metrics, l.Burst, base, login, base, adminToken)
				}
				return a.serve(ctx, s, f, ready)
			})
		},
	}
	cmd.Flags().StringVar(&f.addr, "addr", "127.0.0.1:8080", "address to listen on")
	cmd.Flags().StringVar(&f.redis, "redis", "", "Redis URL for the rate limits (default: in memory)")
	f.limitFlags(cmd)
	cmd.Flags().StringVar(&f.metricsAddr, "metrics-addr", "",
		"serve GET /metrics on this address of its own instead of --addr's (e.g. 127.0.0.1:9464 when --addr is public)")
	return cmd
}

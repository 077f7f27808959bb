package usage_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
	"github.com/keyward/keyward/usage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder is an AuthConfig.Usage that keeps what sqlstore.Store keeps:
// last-used times and, in its Counter, each call's outcome.
type recorder struct {
	usage.Counter
	uses atomic.Int64
}

func (r *recorder) RecordUse(*keyward.KeyRecord) { r.uses.Add(1) }

// usesOnly is an AuthConfig.Usage that keeps last-used times only.
type usesOnly struct{}

func (usesOnly) RecordUse(*keyward.KeyRecord) {}

// What the usage chart shows of a call is what the ledger charged for it,
// by one rule (the Charge's settlement), however the recording is wired:
// by RequireAPIKey itself (AuthConfig.Usage records calls), by the
// deprecated usage.Middleware, or by both (counted once). Calls go over a
// real connection, so that a client that leaves is a real disconnect.
func TestChartShowsWhatTheLedgerCharged(t *testing.T) {
	t.Parallel()
	for name, wire := range map[string]func(rec *recorder) (keyward.UsageRecorder, func(http.Handler) http.Handler){
		"RequireAPIKey records": func(rec *recorder) (keyward.UsageRecorder, func(http.Handler) http.Handler) {
			return rec, nil
		},
		"usage.Middleware records": func(rec *recorder) (keyward.UsageRecorder, func(http.Handler) http.Handler) {
			return usesOnly{}, usage.Middleware(&rec.Counter, nil)
		},
		"both, counted once": func(rec *recorder) (keyward.UsageRecorder, func(http.Handler) http.Handler) {
			return rec, usage.Middleware(rec, nil)
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			store, err := memstore.New(memstore.Options{Prefix: "triq_"})
			require.NoError(t, err)
			org, err := store.CreateOrg(ctx, manage.OrgSpec{Name: "acme", Plan: "free"})
			require.NoError(t, err)
			org, err = store.Org(ctx, org.ID) // with its Limits
			require.NoError(t, err)
			k, err := store.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "k", Permissions: []string{"transactions:enrich"}})
			require.NoError(t, err)
			ledger, err := memstore.NewLedger(memstore.LedgerOptions{})
			require.NoError(t, err)
			rec := &recorder{}
			keyUsage, middleware := wire(rec)
			auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: store, Prefix: "triq_", Usage: keyUsage})
			require.NoError(t, err)
			charge, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: ledger, Cost: 1})
			require.NoError(t, err)
			forbid, err := keyward.EnforcePermissions(keyward.PermissionConfig{Required: []string{"admin:write"}})
			require.NoError(t, err)

			started := make(chan struct{}, 1)
			mux := http.NewServeMux()
			mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {})
			mux.HandleFunc("/batch", func(w http.ResponseWriter, r *http.Request) {
				if err := keyward.SetCost(r.Context(), 5); err != nil {
					t.Error(err)
				}
				w.WriteHeader(http.StatusCreated)
			})
			mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
			mux.HandleFunc("/leave", func(w http.ResponseWriter, r *http.Request) {
				started <- struct{}{}
				<-r.Context().Done() // the client left; nothing was written
			})
			var h http.Handler = charge.Middleware(mux)
			if middleware != nil {
				h = middleware(h)
			}
			h = auth.Middleware(h)
			forbidden := auth.Middleware(forbid.Middleware(charge.Middleware(mux)))
			if middleware != nil {
				forbidden = auth.Middleware(middleware(forbid.Middleware(charge.Middleware(mux))))
			}
			served := make(chan struct{}, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer func() { served <- struct{}{} }()
				if r.URL.Path == "/forbidden" {
					forbidden.ServeHTTP(w, r)
					return
				}
				h.ServeHTTP(w, r)
			}))
			t.Cleanup(srv.Close)

			call := func(path string, leave bool) int {
				cctx, cancel := context.WithCancel(ctx)
				defer cancel()
				req, err := http.NewRequestWithContext(cctx, "POST", srv.URL+path, nil)
				require.NoError(t, err)
				req.Header.Set("X-API-Key", k.Key)
				if leave {
					go func() { <-started; cancel() }()
				}
				resp, err := srv.Client().Do(req)
				<-served // the chain returned: everything is recorded
				if leave {
					require.Error(t, err, "the client left")
					return 0
				}
				require.NoError(t, err)
				resp.Body.Close()
				return resp.StatusCode
			}
			assert.Equal(t, 200, call("/ok", false))
			assert.Equal(t, 201, call("/batch", false))
			assert.Equal(t, 500, call("/fail", false))
			assert.Equal(t, 403, call("/forbidden", false))
			call("/leave", true)

			bal, err := ledger.Balance(ctx, org.Account())
			require.NoError(t, err)
			assert.Equal(t, int64(6), bal.Spent, "the ledger took 1 and 5; the failed call and the one whose client left, nothing")
			assert.Zero(t, bal.Reserved, "everything settled")
			got := map[usage.Outcome][2]int64{}
			for _, n := range rec.Take() {
				assert.Equal(t, k.Record.ID, n.KeyID)
				c := got[n.Outcome]
				got[n.Outcome] = [2]int64{c[0] + n.Requests, c[1] + n.Credits}
			}
			assert.Equal(t, map[usage.Outcome][2]int64{
				usage.Served:    {2, 6}, // what the ledger committed: 1 and 5
				usage.Failed:    {2, 0}, // the 500, and the client that left before an answer
				usage.Forbidden: {1, 0},
			}, got)
		})
	}
}

package admin_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The README's self-service program: an API chain whose AuthConfig.Usage
// is the store, and the dashboard over the same store. The chart fills
// with the calls made, with no other middleware.
func TestUsageChartFillsFromTheChain(t *testing.T) {
	e := selfServiceEnv(t)
	org := e.org("acme")
	k := e.key(org.ID, "k")
	cache, err := keyward.NewCache(e.store, keyward.CacheConfig{})
	require.NoError(t, err)
	t.Cleanup(cache.Close)
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: e.store.Format().Prefix(), Usage: e.store})
	require.NoError(t, err)
	charge, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: e.store, Cost: 2})
	require.NoError(t, err)
	api := auth.Middleware(charge.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/fail" {
			w.WriteHeader(http.StatusBadGateway)
		}
	})))
	for _, path := range []string{"/v1/enrich", "/v1/enrich", "/v1/enrich", "/v1/fail"} {
		req := httptest.NewRequest("POST", path, nil)
		req.Header.Set("X-API-Key", k.Key)
		api.ServeHTTP(httptest.NewRecorder(), req)
	}
	require.NoError(t, e.store.FlushUsage(context.Background()))

	for _, path := range []string{"/usage?days=1", "/keys/" + k.Record.ID + "/usage?days=1"} {
		a := e.call("GET", "/admin/v1/orgs/"+org.ID+path, "", "X-Test-Org", org.ID)
		require.Equal(t, http.StatusOK, a.status, a.raw)
		days := a.obj(t)["days"].([]any)
		require.Len(t, days, 1, path)
		today := days[0].(map[string]any)
		assert.Equal(t, time.Now().UTC().Format(time.DateOnly), today["day"], path)
		assert.Equal(t, 3.0, today["requests"].(map[string]any)["served"], path)
		assert.Equal(t, 1.0, today["requests"].(map[string]any)["failed"], path)
		assert.Equal(t, 6.0, today["credits"], "what the ledger took: "+path)
	}
	bal, err := e.store.Balance(context.Background(), org.Account())
	require.NoError(t, err)
	assert.Equal(t, int64(6), bal.Spent)
}

// The calls of the chain are in the pages' last 24 hours, by hour: the
// organization's chart and the key's own, once the store has flushed; the
// key's last use is on its page.
func TestHourlyChartFillsFromTheChain(t *testing.T) {
	e := selfServiceEnv(t)
	org := e.org("acme")
	k := e.key(org.ID, "k")
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: e.store, Prefix: e.store.Format().Prefix(), Usage: e.store})
	require.NoError(t, err)
	api := auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for range 3 {
		req := httptest.NewRequest("GET", "/v1/things", nil)
		req.Header.Set("X-API-Key", k.Key)
		w := httptest.NewRecorder()
		api.ServeHTTP(w, req)
		require.Equal(t, http.StatusOK, w.Code)
	}
	require.NoError(t, e.store.FlushUsage(context.Background()))

	b := e.browser()
	as := []string{"X-Test-Org", org.ID}
	hour := time.Now().UTC().Truncate(time.Hour).Format("2006-01-02T15:04Z")
	for _, path := range []string{"/dashboard/orgs/" + org.ID, "/dashboard/orgs/" + org.ID + "/keys/" + k.Record.ID} {
		p := b.do("GET", path+"?range=24h", nil, as...)
		require.Equal(t, http.StatusOK, p.status, path)
		assert.Contains(t, p.body, `<a href="?range=24h#usage" aria-current="true">24 hours</a>`, path)
		assert.Contains(t, p.body, "the last 24 hours, by hour (UTC)", path)
		assert.Regexp(t, `<g class="bucket" data-start="`+hour+`" data-served="3" `, p.body, path)
		assert.Equal(t, 24, strings.Count(p.body[:strings.Index(p.body, "chart-credits")], `<g class="bucket"`), "one bar an hour: "+path)
	}
	p := b.do("GET", "/dashboard/orgs/"+org.ID+"/keys/"+k.Record.ID, nil, as...)
	assert.Contains(t, p.body, "<dt>Last used</dt><dd>"+time.Now().UTC().Format("2 Jan 2006 "), "RequireAPIKey with the store as Usage records the last use")
}

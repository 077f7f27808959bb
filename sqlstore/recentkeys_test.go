package sqlstore_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/keywardtest"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/rate"
	"github.com/keyward/keyward/sqlstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A process started anew (here: a second Store on the same database)
// while an attacker keeps the shared address over its failed-auth budget
// looks up the keys in use, as the first process recorded them: the victim
// gets through. RecentKeys lists the keys used within the window that
// still work, the most recent first, at most the limit asked.
func TestKeysInUseSurviveARestart(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clock := keywardtest.NewClock(time.Date(2036, 1, 19, 10, 30, 0, 0, time.UTC))
			dsn := newDSN(t, engine)
			first := open(t, dsn, sqlstore.Options{FlushInterval: time.Hour, Now: clock.Now})
			org, err := first.CreateOrg(ctx, manage.OrgSpec{Name: "a"})
			require.NoError(t, err)
			var keys [4]manage.CreatedKey // victim, older, revoked, unused
			for i := range keys {
				keys[i], err = first.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "k"})
				require.NoError(t, err)
			}
			serve := process(t, first, clock.Now)
			for _, i := range []int{1, 2, 0} {
				require.Equal(t, http.StatusOK, serve(keys[i].Key))
				require.NoError(t, first.FlushUsage(ctx))
				clock.Advance(time.Hour)
			}
			require.NoError(t, first.RevokeKey(ctx, keys[2].Record.ID))

			used, err := first.RecentKeys(ctx, clock.Now().Add(-7*24*time.Hour), 10)
			require.NoError(t, err)
			assert.Equal(t, map[keyward.KeyHash]time.Time{keys[0].Record.Hash: clock.Now().Add(-time.Hour),
				keys[1].Record.Hash: clock.Now().Add(-3 * time.Hour)}, used, "the keys used that work")
			used, err = first.RecentKeys(ctx, clock.Now().Add(-2*time.Hour), 10)
			require.NoError(t, err)
			assert.Len(t, used, 1, "since")
			used, err = first.RecentKeys(ctx, clock.Now().Add(-7*24*time.Hour), 1)
			require.NoError(t, err)
			assert.Contains(t, used, keys[0].Record.Hash, "the most recent first")
			assert.Len(t, used, 1, "at most the limit")

			second := open(t, dsn, sqlstore.Options{FlushInterval: time.Hour, Now: clock.Now})
			serve = process(t, second, clock.Now)
			for range 20 {
				serve("triq_nonsense")
			}
			require.Equal(t, http.StatusTooManyRequests, serve("triq_nonsense"), "the address is over budget")
			codes := map[int]int{}
			for range 10 {
				codes[serve(keys[0].Key)]++
				serve("triq_nonsense")
			}
			assert.Equal(t, map[int]int{http.StatusOK: 10}, codes, "the victim, after the restart")
			assert.Equal(t, http.StatusOK, serve(keys[1].Key), "a key used earlier in the week")
			assert.Equal(t, http.StatusTooManyRequests, serve(keys[2].Key), "a revoked key waits")
			assert.Equal(t, http.StatusTooManyRequests, serve(keys[3].Key), "a key never used waits")
		})
	}
}

// process is what one process of an API serves: RequireAPIKey, with a
// failed-auth throttle of its own, over a Cache in front of s, s recording
// the uses; every request from one address.
func process(t *testing.T, s *sqlstore.Store, now func() time.Time) func(key string) int {
	t.Helper()
	cache, err := keyward.NewCache(s, keyward.CacheConfig{})
	require.NoError(t, err)
	t.Cleanup(cache.Close)
	s.Watch(cache)
	a, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: s.Format().Prefix(), Usage: s, Now: now,
		FailedAuth: &rate.FailedAuth{}})
	require.NoError(t, err)
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	return func(key string) int {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = "198.51.100.7:1"
		r.Header.Set("X-API-Key", key)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
}

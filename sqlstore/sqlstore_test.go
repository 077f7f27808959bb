package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/keywardtest"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/keyward/keyward/sqlstore/postgres"
	"github.com/keyward/keyward/sqlstore/sqlite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKeyBackend(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			keywardtest.TestKeyBackend(t, func(t *testing.T, now func() time.Time) keywardtest.KeyBackend {
				return open(t, newDSN(t, engine), sqlstore.Options{Now: now})
			})
		})
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, err := sqlstore.Open(ctx, sqlite.DSN("mysql://root@127.0.0.1/test"), sqlstore.Options{})
	assert.ErrorIs(t, err, sqlstore.ErrUnknownDSN)
	_, err = sqlstore.Open(ctx, postgres.DSN("postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=1"), sqlstore.Options{})
	assert.ErrorContains(t, err, "postgres does not answer")
	_, err = sqlstore.Open(ctx, sqlite.DSN("sqlite:/nonexistent-dir/x/keyward.db"), sqlstore.Options{})
	assert.Error(t, err)
	_, err = sqlstore.Open(ctx, sqlite.DSN("sqlite:"+t.TempDir()+"/k.db"), sqlstore.Options{Prefix: "TRIQ"})
	assert.Error(t, err)
	_, err = sqlstore.Open(ctx, sqlite.DSN("sqlite:"+t.TempDir()+"/k.db"), sqlstore.Options{PollInterval: -1, MaxConns: -2})
	require.Error(t, err, "negative settings are refused, not replaced by defaults")
	assert.Contains(t, err.Error(), "PollInterval")
	assert.Contains(t, err.Error(), "MaxConns")
}

// mysqlEngine is an engine of a dialect sqlstore does not speak.
type mysqlEngine struct{ sqlite.DSN }

func (mysqlEngine) Dialect() string { return "mysql" }

// TestOpenRefusesMisusedEngines: a nil engine, or one whose SQL is
// neither SQLite's nor PostgreSQL's, is a configuration error returned
// with every other problem, never a panic and never a database opened.
func TestOpenRefusesMisusedEngines(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, err := sqlstore.Open(ctx, nil, sqlstore.Options{MaxConns: -1})
	var ce *keyward.ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Contains(t, err.Error(), "engine")
	assert.Contains(t, err.Error(), "MaxConns")
	path := filepath.Join(t.TempDir(), "k.db")
	_, err = sqlstore.Open(ctx, mysqlEngine{sqlite.DSN(path)}, sqlstore.Options{})
	require.ErrorAs(t, err, &ce)
	assert.Contains(t, err.Error(), `"mysql"`)
	assert.NoFileExists(t, path)
}

func TestMigrations(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			dsn := newDSN(t, engine)
			ctx := context.Background()
			// Four processes' worth of opens at once on an empty database.
			var wg sync.WaitGroup
			errs := make([]error, 4)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s, err := sqlstore.Open(ctx, engineOf(dsn), sqlstore.Options{})
					if err == nil {
						err = s.Close()
					}
					errs[i] = err
				}()
			}
			wg.Wait()
			require.NoError(t, errors.Join(errs...))
			s := open(t, dsn, sqlstore.Options{})
			assert.Equal(t, engine, s.Dialect())
			var n, v int64
			require.NoError(t, s.DB().QueryRowContext(ctx, `SELECT COUNT(*), MAX(version) FROM keyward_migrations`).Scan(&n, &v))
			files, err := filepath.Glob("migrations/*.sql")
			require.NoError(t, err)
			assert.Equal(t, int64(len(files)), n, "each migration applied once")
			last, err := strconv.ParseInt(strings.SplitN(filepath.Base(files[len(files)-1]), "_", 2)[0], 10, 64)
			require.NoError(t, err)
			assert.Equal(t, last, v, "the last migration's number")
			org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "a"})
			require.NoError(t, err)
			require.NoError(t, s.Close())
			// Reopen: the data is there and nothing is applied again.
			s2 := open(t, dsn, sqlstore.Options{})
			got, err := s2.Org(ctx, org.ID)
			require.NoError(t, err)
			assert.Equal(t, org, got)
		})
	}
}

// revocationBound is the bound README states for each engine.
var revocationBound = map[string]time.Duration{"postgres": time.Second, "sqlite": 2 * time.Second}

// TestRevocationReachesOtherInstances: two instances (two pools, two
// caches) on one database; a key revoked through A is refused by B within
// the stated bound. On SQLite the revoking instance is another process.
func TestRevocationReachesOtherInstances(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := newDSN(t, engine)
			a := open(t, dsn, sqlstore.Options{})
			b := open(t, dsn, sqlstore.Options{PollInterval: 250 * time.Millisecond})
			cache, err := keyward.NewCache(b, keyward.CacheConfig{TTL: time.Hour})
			require.NoError(t, err)
			defer cache.Close()
			b.Watch(cache)

			org, err := a.CreateOrg(ctx, manage.OrgSpec{Name: "acme"})
			require.NoError(t, err)
			k, err := a.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "production"})
			require.NoError(t, err)
			rec, err := cache.LookupKey(ctx, k.Record.Hash)
			require.NoError(t, err)
			require.False(t, rec.Revoked(time.Now()))
			// B's feed announces the key's creation too, which drops the
			// entry: wait for that, then cache the key for good.
			time.Sleep(600 * time.Millisecond)
			_, err = cache.LookupKey(ctx, k.Record.Hash)
			require.NoError(t, err)
			calls := cache.StoreCalls()
			_, err = cache.LookupKey(ctx, k.Record.Hash)
			require.NoError(t, err)
			require.Equal(t, calls, cache.StoreCalls(), "B answers from its cache")

			revoke := func() time.Time {
				assert.NoError(t, a.RevokeKey(ctx, k.Record.ID))
				return time.Now()
			}
			if engine == "sqlite" {
				revoke = revokeInAnotherProcess(t, dsn, k.Record.ID)
			}
			done := make(chan time.Time, 1)
			go func() { done <- revoke() }()
			// Watch B until it refuses the key; the bound is measured from
			// the moment the revocation committed, as a client sees it.
			var refused, committed time.Time
			for refused.IsZero() {
				rec, err := cache.LookupKey(ctx, k.Record.Hash)
				require.NoError(t, err)
				if rec.Revoked(time.Now()) {
					refused = time.Now()
					break
				}
				select {
				case committed = <-done:
					require.True(t, time.Since(committed) < revocationBound[engine],
						"B still accepts the key %v after the revocation", revocationBound[engine])
				case <-time.After(2 * time.Millisecond):
				}
			}
			if committed.IsZero() {
				committed = <-done
			}
			lag := refused.Sub(committed)
			t.Logf("%s: the other instance refused the key %v after the revocation committed", engine, lag.Round(time.Millisecond))
			assert.Less(t, lag, revocationBound[engine])
		})
	}
}

// revokeInAnotherProcess returns a function that runs this test binary
// again as a helper process that opens dsn and revokes keyID, and returns
// when the revocation committed, as the helper reports it.
func revokeInAnotherProcess(t *testing.T, dsn, keyID string) func() time.Time {
	return func() time.Time {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcessRevoke$", "-test.v")
		cmd.Env = append(os.Environ(), "KEYWARD_HELPER_DSN="+dsn, "KEYWARD_HELPER_KEY="+keyID)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("helper process: %v: %s", err, out)
			return time.Now()
		}
		_, after, ok := strings.Cut(string(out), "committed-at=")
		if !ok {
			t.Errorf("helper process said: %s", out)
			return time.Now()
		}
		ns, err := strconv.ParseInt(strings.Fields(after)[0], 10, 64)
		if err != nil {
			t.Errorf("helper process said: %s", out)
		}
		return time.Unix(0, ns)
	}
}

// TestHelperProcessRevoke is not a test: it is the other process of
// TestRevocationReachesOtherInstances.
func TestHelperProcessRevoke(t *testing.T) {
	dsn, keyID := os.Getenv("KEYWARD_HELPER_DSN"), os.Getenv("KEYWARD_HELPER_KEY")
	if dsn == "" {
		t.Skip("helper process only")
	}
	s, err := sqlstore.Open(context.Background(), engineOf(dsn), sqlstore.Options{})
	require.NoError(t, err)
	require.NoError(t, s.RevokeKey(context.Background(), keyID))
	fmt.Printf("committed-at=%d\n", time.Now().UnixNano())
	require.NoError(t, s.Close())
}

type counter struct {
	one, all atomic.Int64
}

func (c *counter) Invalidate(keyward.KeyHash) { c.one.Add(1) }
func (c *counter) InvalidateAll()             { c.all.Add(1) }

// TestFeedReconnectDropsTheCache: when the LISTEN connection drops, the
// watcher reconnects and drops every cache, since it may have missed
// changes.
func TestFeedReconnectDropsTheCache(t *testing.T) {
	t.Parallel()
	dsn := pgSchemaDSN(t, testenv.PostgresDSN(t))
	proxy, viaProxy := proxied(t, dsn)
	s := open(t, viaProxy, sqlstore.Options{})
	c := &counter{}
	s.Watch(c)
	require.Eventually(t, func() bool { return c.all.Load() == 1 }, 5*time.Second, 10*time.Millisecond, "the first LISTEN drops the cache once")
	proxy.Cut()
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, int64(1), c.all.Load(), "no listener while cut")
	proxy.Restore()
	require.Eventually(t, func() bool { return c.all.Load() >= 2 }, 10*time.Second, 20*time.Millisecond, "reconnected and dropped the cache")

	// And the feed works again: a change by another instance is heard.
	other := open(t, dsn, sqlstore.Options{})
	org, err := other.CreateOrg(context.Background(), manage.OrgSpec{Name: "a"})
	require.NoError(t, err)
	before := c.one.Load()
	_, err = other.CreateKey(context.Background(), manage.KeySpec{OrgID: org.ID, Name: "k"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return c.one.Load() > before }, time.Second, 5*time.Millisecond)
}

func TestUsageIsWrittenInBatches(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clock := keywardtest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
			dsn := newDSN(t, engine)
			s := open(t, dsn, sqlstore.Options{Now: clock.Now, FlushInterval: time.Hour})
			org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "a"})
			require.NoError(t, err)
			k1, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "one"})
			require.NoError(t, err)
			k2, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "two"})
			require.NoError(t, err)
			cache, err := keyward.NewCache(s, keyward.CacheConfig{})
			require.NoError(t, err)
			defer cache.Close()
			auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_", Usage: s})
			require.NoError(t, err)

			var wg sync.WaitGroup
			for i := range 300 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					key := k1.Key
					if i%3 == 0 {
						key = k2.Key
					}
					r := newRequest(key)
					_, err := auth.Authenticate(r)
					assert.NoError(t, err)
				}()
			}
			wg.Wait()
			n, err := s.Usage(ctx, org.ID, clock.Now())
			require.NoError(t, err)
			assert.Zero(t, n, "nothing is written per request")
			clock.Advance(time.Minute)
			require.NoError(t, s.FlushUsage(ctx))
			n, err = s.Usage(ctx, org.ID, clock.Now())
			require.NoError(t, err)
			assert.Equal(t, int64(300), n)
			rec, err := s.LookupKey(ctx, k2.Record.Hash)
			require.NoError(t, err)
			assert.True(t, clock.Now().Equal(rec.LastUsedAt), "last used = the flush time")
			// Close flushes what is left.
			_, err = auth.Authenticate(newRequest(k1.Key))
			require.NoError(t, err)
			require.NoError(t, s.Close())
			s2 := open(t, dsn, sqlstore.Options{})
			n, err = s2.Usage(ctx, org.ID, clock.Now())
			require.NoError(t, err)
			assert.Equal(t, int64(301), n)
		})
	}
}

// Usage counted for an organization deleted before the flush is dropped;
// the flush still writes every other organization's.
func TestUsageOfADeletedOrgDoesNotStopTheFlush(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clock := keywardtest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
			s := open(t, newDSN(t, engine), sqlstore.Options{Now: clock.Now, FlushInterval: time.Hour})
			gone, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "gone"})
			require.NoError(t, err)
			kept, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "kept"})
			require.NoError(t, err)
			kg, err := s.CreateKey(ctx, manage.KeySpec{OrgID: gone.ID, Name: "k"})
			require.NoError(t, err)
			kk, err := s.CreateKey(ctx, manage.KeySpec{OrgID: kept.ID, Name: "k"})
			require.NoError(t, err)
			s.RecordUse(&kg.Record)
			s.RecordUse(&kk.Record)
			require.NoError(t, s.DeleteOrg(ctx, gone.ID, true))
			require.NoError(t, s.FlushUsage(ctx))
			n, err := s.Usage(ctx, kept.ID, clock.Now())
			require.NoError(t, err)
			assert.Equal(t, int64(1), n)
		})
	}
}

func newRequest(key string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-API-Key", key)
	return r
}

func TestLookupAfterClose(t *testing.T) {
	t.Parallel()
	s, err := sqlstore.Open(context.Background(), engineOf(newDSN(t, "sqlite")), sqlstore.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	_, err = s.LookupKey(context.Background(), keyward.Hash("triq_x"))
	require.Error(t, err)
	assert.False(t, errors.Is(err, keyward.ErrKeyNotFound), "a failed store is not 'no such key'")
	assert.True(t, strings.Contains(fmt.Sprint(err), "sqlstore"))
}

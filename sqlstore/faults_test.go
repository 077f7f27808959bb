package sqlstore_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/keywardtest"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// proxied puts a fault-injecting proxy between dsn's PostgreSQL and the
// client, and returns the proxy and the DSN that goes through it.
func proxied(t *testing.T, dsn string) (*testenv.Proxy, string) {
	t.Helper()
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	host := u.Host
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, "5432")
	}
	proxy := testenv.NewProxy(t, host)
	u.Host = proxy.Addr()
	q := u.Query()
	q.Set("connect_timeout", "2")
	u.RawQuery = q.Encode()
	return proxy, u.String()
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// api is one API process on a store: a cached key lookup, a charged route
// (1 credit) and a free route, served by a real HTTP server.
type api struct {
	srv    *httptest.Server
	cache  *keyward.Cache
	served sync.Map // reservation id → true, for every charged handler run
	// unreserved counts charged handler runs without an open reservation:
	// it must stay 0.
	unreserved atomic.Int64
}

// newAPI serves the API on s; deadline > 0 gives every request a
// deadline, as a server's timeout middleware would.
func newAPI(t *testing.T, s *sqlstore.Store, deadline time.Duration) *api {
	t.Helper()
	a := &api{}
	var err error
	a.cache, err = keyward.NewCache(s, keyward.CacheConfig{LookupTimeout: 2 * time.Second})
	require.NoError(t, err)
	s.Watch(a.cache)
	ew := &keyward.ErrorWriter{Logger: quiet}
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: a.cache, Prefix: "triq_", Errors: ew, Usage: s})
	require.NoError(t, err)
	charge, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: s, Errors: ew})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("POST /charged", auth.Middleware(charge.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ch, ok := keyward.ChargeFromContext(r.Context())
		if !ok || ch.Reservation().ID <= 0 || ch.Reservation().Amount != 1 {
			a.unreserved.Add(1)
		} else {
			a.served.Store(ch.Reservation().ID, true)
		}
		w.WriteHeader(http.StatusOK)
	}))))
	mux.Handle("GET /free", auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	})))
	var h http.Handler = mux
	if deadline > 0 {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), deadline)
			defer cancel()
			mux.ServeHTTP(w, r.WithContext(ctx))
		})
	}
	a.srv = httptest.NewServer(h)
	t.Cleanup(func() {
		a.srv.Close()
		a.cache.Close()
	})
	return a
}

// call makes one request and returns its status and error code.
func (a *api) call(t *testing.T, method, path, key string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, a.srv.URL+path, nil)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	req.Header.Set("X-API-Key", key)
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	var env struct {
		Error struct{ Code string } `json:"error"`
	}
	if resp.StatusCode != http.StatusOK {
		_ = json.NewDecoder(resp.Body).Decode(&env)
	} else if path == "/charged" && resp.Header.Get(keyward.HeaderCreditsRemaining) == "" {
		t.Errorf("a charged 200 without %s", keyward.HeaderCreditsRemaining)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, env.Error.Code
}

// checkLedger proves the ledger invariant of one organization: what the
// 2xx answers committed is what the balance lost, every reservation was
// settled exactly once (commit, release or expire), and nothing is left
// open or reserved. served, when not nil, holds the reservations whose
// handler ran: only those may be committed.
func checkLedger(t *testing.T, s *sqlstore.Store, acct credit.Account, served *sync.Map) credit.Balance {
	t.Helper()
	ctx := context.Background()
	b, err := s.Balance(ctx, acct)
	require.NoError(t, err)
	entries, err := s.Entries(ctx, acct.OrgID, b.PeriodStart)
	require.NoError(t, err)
	settled := map[int64]string{}
	var committed int64
	for _, e := range entries {
		if e.Kind == "grant" || e.Kind == "allocation" {
			continue
		}
		if prev, dup := settled[e.ReservationID]; dup {
			t.Errorf("reservation %d settled twice: %s then %s", e.ReservationID, prev, e.Kind)
		}
		settled[e.ReservationID] = e.Kind
		if e.Kind == "commit" {
			committed += e.Amount
			if served == nil {
				continue
			}
			if _, ok := served.Load(e.ReservationID); !ok {
				t.Errorf("reservation %d committed but its handler never ran", e.ReservationID)
			}
		}
	}
	var total int64
	require.NoError(t, s.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM keyward_reservations WHERE org_id = $1`, acct.OrgID).Scan(&total))
	assert.Equal(t, total, int64(len(settled)), "every reservation settled once")
	assert.Equal(t, committed, b.Spent, "committed = spent")
	assert.Equal(t, b.Allocation-committed, b.Available, "committed = balance delta")
	assert.Zero(t, b.Reserved)
	assert.Zero(t, b.OpenReservations)
	return b
}

// settleGoroutines waits for the goroutine count to fall back to at most
// before+slack, and fails with the stacks if it does not.
func settleGoroutines(t *testing.T, before, slack int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+slack {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:n])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPostgresCutDuringChargedLoad cuts PostgreSQL off in the middle of a
// charged load, through a proxy (the shared server keeps running). While
// it is down: a key already cached still authenticates, an uncached key
// and every credit call answer 503 service_unavailable (never 401, never
// served unreserved). After it is back, everything recovers in the same
// process, and once the reservations that could not be settled have
// expired the ledger balances exactly.
//
// Not parallel: it counts goroutines.
func TestPostgresCutDuringChargedLoad(t *testing.T) {
	ctx := context.Background()
	dsn := pgSchemaDSN(t, testenv.PostgresDSN(t))
	proxy, viaProxy := proxied(t, dsn)
	clock := keywardtest.NewClock(time.Now().UTC())
	opts := sqlstore.Options{Now: clock.Now, ReservationTTL: time.Minute, Logger: quiet}
	direct := open(t, dsn, opts) // the operator's view: not through the proxy
	org, err := direct.CreateOrg(ctx, manage.OrgSpec{Name: "acme", MonthlyCredits: 1_000_000})
	require.NoError(t, err)
	acct := org.Account()
	hot, err := direct.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "hot"})
	require.NoError(t, err)
	cold, err := direct.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "cold"})
	require.NoError(t, err)

	before := runtime.NumGoroutine()
	s, err := sqlstore.Open(ctx, engineOf(viaProxy), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	a := newAPI(t, s, 0)
	// The change feed announces the keys' creation (and drops the cache
	// once it listens): wait for it before warming the cache.
	time.Sleep(300 * time.Millisecond)
	status, _ := a.call(t, http.MethodPost, "/charged", hot.Key)
	require.Equal(t, http.StatusOK, status)

	// The load: 6 clients calling the charged route with the hot key.
	var stop atomic.Bool
	var ok, unavailable atomic.Int64
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				switch status, code := a.call(t, http.MethodPost, "/charged", hot.Key); {
				case status == http.StatusOK:
					ok.Add(1)
				case status == http.StatusServiceUnavailable && code == keyward.CodeServiceUnavailable:
					unavailable.Add(1)
				default:
					t.Errorf("under load: %d %s", status, code)
					return
				}
			}
		}()
	}
	require.Eventually(t, func() bool { return ok.Load() >= 5 }, 10*time.Second, 5*time.Millisecond, "the load runs")

	proxy.Cut()
	okBefore := ok.Load()
	time.Sleep(100 * time.Millisecond) // requests in flight at the cut finish
	servedAtCut := ok.Load()
	for _, c := range []struct {
		method, path, key string
		status            int
	}{
		{http.MethodGet, "/free", hot.Key, http.StatusOK},                     // cached: still authenticates
		{http.MethodGet, "/free", cold.Key, http.StatusServiceUnavailable},    // uncached: 503, not 401
		{http.MethodPost, "/charged", hot.Key, http.StatusServiceUnavailable}, // the ledger is down
		{http.MethodPost, "/charged", cold.Key, http.StatusServiceUnavailable},
	} {
		status, code := a.call(t, c.method, c.path, c.key)
		assert.Equal(t, c.status, status, "%s %s while PostgreSQL is down", c.method, c.path)
		if c.status == http.StatusServiceUnavailable {
			assert.Equal(t, keyward.CodeServiceUnavailable, code)
		}
	}
	time.Sleep(400 * time.Millisecond)
	assert.Equal(t, servedAtCut, ok.Load(), "nothing is served while the ledger is down")
	assert.Positive(t, unavailable.Load())
	downFor := time.Now()

	proxy.Restore()
	require.Eventually(t, func() bool {
		s1, _ := a.call(t, http.MethodPost, "/charged", cold.Key)
		s2, _ := a.call(t, http.MethodGet, "/free", cold.Key)
		return s1 == http.StatusOK && s2 == http.StatusOK
	}, 10*time.Second, 50*time.Millisecond, "recovers without a restart")
	recovered := time.Since(downFor)
	okAfter := ok.Load()
	require.Eventually(t, func() bool { return ok.Load() >= okAfter+5 }, 10*time.Second, 5*time.Millisecond, "the load is served again")
	stop.Store(true)
	wg.Wait()
	assert.Zero(t, a.unreserved.Load(), "a handler ran without a reservation")

	// Calls whose commit met the cut were served but could not be
	// charged: their reservations expire. Then the ledger balances.
	b, err := direct.Balance(ctx, acct)
	require.NoError(t, err)
	openAtEnd := b.OpenReservations
	clock.Advance(2 * time.Minute)
	b = checkLedger(t, direct, acct, &a.served)
	entries, err := direct.Entries(ctx, acct.OrgID, b.PeriodStart)
	require.NoError(t, err)
	kinds := map[string]int{}
	for _, e := range entries {
		kinds[e.Kind]++
	}
	assert.Equal(t, openAtEnd, kinds["expire"], "what was left open expired")
	assert.LessOrEqual(t, int64(kinds["commit"]), ok.Load()+3, "no more charged than served")
	t.Logf("served %d (%d before the cut), %d answered 503; recovered %v after the restore; ledger: %v",
		ok.Load(), okBefore, unavailable.Load(), recovered.Round(time.Millisecond), kinds)

	// No connection or goroutine is left behind once the process shuts
	// its parts down.
	require.Eventually(t, func() bool { return s.DB().Stats().InUse == 0 }, 5*time.Second, 10*time.Millisecond)
	assert.LessOrEqual(t, proxy.Conns(), s.DB().Stats().MaxOpenConnections+1, "the pool's bound + the change feed's connection")
	assert.LessOrEqual(t, s.DB().Stats().MaxOpenConnections, 16, "the pool is bounded")
	a.srv.Close()
	a.cache.Close()
	require.NoError(t, s.Close())
	require.Eventually(t, func() bool { return proxy.Conns() == 0 }, 5*time.Second, 10*time.Millisecond, "every connection closed")
	a.srv.Client().CloseIdleConnections()
	settleGoroutines(t, before, 2)
}

// TestPostgresBlackHoleDuringChargedLoad: PostgreSQL stops answering
// (a partition: connections stay open, nothing comes back) while calls are
// in flight. Callers give up with their own deadline and get a 503 or
// nothing; no handler runs unreserved; after the network heals, the held
// calls finish and the ledger balances.
func TestPostgresBlackHoleDuringChargedLoad(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgSchemaDSN(t, testenv.PostgresDSN(t))
	proxy, viaProxy := proxied(t, dsn)
	clock := keywardtest.NewClock(time.Now().UTC())
	opts := sqlstore.Options{Now: clock.Now, ReservationTTL: time.Minute, Logger: quiet}
	direct := open(t, dsn, opts)
	org, err := direct.CreateOrg(ctx, manage.OrgSpec{Name: "acme", MonthlyCredits: 1_000_000})
	require.NoError(t, err)
	acct := org.Account()
	k, err := direct.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "k"})
	require.NoError(t, err)
	s := open(t, viaProxy, opts)
	s.DB().SetMaxOpenConns(8) // a partition must not open a connection per request
	a := newAPI(t, s, 0)
	time.Sleep(300 * time.Millisecond)
	status, _ := a.call(t, http.MethodPost, "/charged", k.Key)
	require.Equal(t, http.StatusOK, status)

	proxy.BlackHole()
	var wg sync.WaitGroup
	var timedOut, unavailable atomic.Int64
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.srv.URL+"/charged", nil)
			req.Header.Set("X-API-Key", k.Key)
			resp, err := a.srv.Client().Do(req)
			if err != nil {
				timedOut.Add(1)
				return
			}
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable {
				unavailable.Add(1)
				return
			}
			t.Errorf("in a black hole: %d", resp.StatusCode)
		}()
	}
	wg.Wait()
	assert.Equal(t, int64(6), timedOut.Load()+unavailable.Load())
	t.Logf("in the black hole: %d callers gave up, %d got a 503", timedOut.Load(), unavailable.Load())
	proxy.Restore()
	require.Eventually(t, func() bool {
		s, _ := a.call(t, http.MethodPost, "/charged", k.Key)
		return s == http.StatusOK
	}, 10*time.Second, 50*time.Millisecond, "recovers once the network heals")
	require.Eventually(t, func() bool { return s.DB().Stats().InUse == 0 }, 5*time.Second, 10*time.Millisecond)
	assert.Zero(t, a.unreserved.Load())
	clock.Advance(2 * time.Minute)
	checkLedger(t, direct, acct, &a.served)
}

// TestSIGKILLBetweenReserveAndSettle: a process reserves credits for a
// call through ChargeCredits and is killed (SIGKILL) while the handler
// runs; a second process, which went on charging meanwhile, sees the
// reservation held until its expiry, then released with an expire entry,
// and a balance exact to the credit.
func TestSIGKILLBetweenReserveAndSettle(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := newDSN(t, engine)
			start := time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)
			clock := keywardtest.NewClock(start)
			survivor := open(t, dsn, sqlstore.Options{Now: clock.Now})
			acct := credit.Account{OrgID: "org_killed", Allocation: 100}
			charge := func(n int) {
				for range n {
					r, err := survivor.Reserve(ctx, credit.ReserveRequest{Account: acct, Amount: 2})
					require.NoError(t, err)
					require.NoError(t, survivor.Commit(ctx, acct, r.ID, 2))
				}
			}
			charge(3)

			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcessReserveAndHang$", "-test.v")
			cmd.Env = append(os.Environ(), "KEYWARD_HELPER_DSN="+dsn, "KEYWARD_HELPER_ORG="+acct.OrgID,
				"KEYWARD_HELPER_NOW="+strconv.FormatInt(start.UnixNano(), 10))
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			cmd.Stderr = cmd.Stdout
			require.NoError(t, cmd.Start())
			t.Cleanup(func() { _ = cmd.Process.Kill() })
			var resID int64
			lines := bufio.NewScanner(stdout)
			for resID == 0 && lines.Scan() {
				if v, ok := strings.CutPrefix(lines.Text(), "reservation-id="); ok {
					resID, err = strconv.ParseInt(v, 10, 64)
					require.NoError(t, err)
				}
			}
			require.NotZero(t, resID, "the helper never reserved: %v", lines.Err())

			charge(2) // the survivor goes on while the other process holds its call
			require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
			err = cmd.Wait()
			require.Error(t, err)
			assert.Equal(t, "signal: killed", err.Error())
			charge(2)

			b, err := survivor.Balance(ctx, acct)
			require.NoError(t, err)
			assert.Equal(t, int64(100-7*2-5), b.Available, "the dead call's 5 credits are held until expiry")
			assert.Equal(t, 1, b.OpenReservations)
			clock.Advance(credit.DefaultReservationTTL)
			b, err = survivor.Balance(ctx, acct)
			require.NoError(t, err)
			assert.Equal(t, int64(100-7*2), b.Available, "exact: only the survivor's calls are charged")
			assert.Equal(t, int64(14), b.Spent)
			assert.Zero(t, b.OpenReservations)
			assert.ErrorIs(t, survivor.Commit(ctx, acct, resID, 5), credit.ErrReservationExpired, "a late commit cannot charge")
			entries, err := survivor.Entries(ctx, acct.OrgID, b.PeriodStart)
			require.NoError(t, err)
			var expired []sqlstore.LedgerEntry
			commits := 0
			for _, e := range entries {
				switch e.Kind {
				case "expire":
					expired = append(expired, e)
				case "commit":
					commits++
				}
			}
			assert.Equal(t, 7, commits)
			require.Len(t, expired, 1)
			assert.Equal(t, resID, expired[0].ReservationID)
			assert.Equal(t, int64(5), expired[0].Amount)
			assert.Equal(t, "req-killed", expired[0].RequestID)
		})
	}
}

// TestHelperProcessReserveAndHang is not a test: it is the process that
// TestSIGKILLBetweenReserveAndSettle kills. It serves one charged call
// whose handler reports its reservation and never returns.
func TestHelperProcessReserveAndHang(t *testing.T) {
	dsn, orgID := os.Getenv("KEYWARD_HELPER_DSN"), os.Getenv("KEYWARD_HELPER_ORG")
	if dsn == "" || orgID == "" {
		t.Skip("helper process only")
	}
	ns, err := strconv.ParseInt(os.Getenv("KEYWARD_HELPER_NOW"), 10, 64)
	require.NoError(t, err)
	now := time.Unix(0, ns)
	s, err := sqlstore.Open(context.Background(), engineOf(dsn), sqlstore.Options{Now: func() time.Time { return now }})
	require.NoError(t, err)
	charge, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: s, Cost: 5})
	require.NoError(t, err)
	h := charge.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ch, _ := keyward.ChargeFromContext(r.Context())
		fmt.Printf("reservation-id=%d\n", ch.Reservation().ID)
		select {} // killed here, between reserve and settle
	}))
	r := httptest.NewRequest(http.MethodPost, "/v1/enrich", nil)
	r.Header.Set("X-Request-Id", "req-killed")
	rec := &keyward.KeyRecord{ID: "key_1", Org: keyward.Organization{ID: orgID, Plan: "free",
		Limits: keyward.Limits{RequestsPerSecond: 1, RequestsPerMinute: 60, Concurrency: 2, MonthlyCredits: 100}}}
	h.ServeHTTP(httptest.NewRecorder(), r.WithContext(keyward.WithKey(r.Context(), rec)))
}

// TestSlowPostgres: every packet to and from PostgreSQL is delayed by
// 400 ms, so a lookup takes over a second. Requests, which the server
// gives 250 ms, end with their deadline as a 503 (never a 401: a slow
// store does not make a key unknown); a key already cached is served; the pool holds no connection
// in use afterwards; once the database is fast again, everything is
// served and the ledger balances.
func TestSlowPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgSchemaDSN(t, testenv.PostgresDSN(t))
	proxy, viaProxy := proxied(t, dsn)
	clock := keywardtest.NewClock(time.Now().UTC())
	opts := sqlstore.Options{Now: clock.Now, ReservationTTL: time.Minute, Logger: quiet}
	direct := open(t, dsn, opts)
	org, err := direct.CreateOrg(ctx, manage.OrgSpec{Name: "acme", MonthlyCredits: 1_000_000})
	require.NoError(t, err)
	acct := org.Account()
	hot, err := direct.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "hot"})
	require.NoError(t, err)
	cold := make([]manage.CreatedKey, 6)
	for i := range cold {
		cold[i], err = direct.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "cold"})
		require.NoError(t, err)
	}
	s := open(t, viaProxy, opts)
	a := newAPI(t, s, 250*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	status, _ := a.call(t, http.MethodGet, "/free", hot.Key)
	require.Equal(t, http.StatusOK, status)

	proxy.Slow(400 * time.Millisecond)
	call := func(method, path, key string) (int, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, method, a.srv.URL+path, nil)
		req.Header.Set("X-API-Key", key)
		resp, err := a.srv.Client().Do(req)
		if err != nil {
			return 0, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
	var wg sync.WaitGroup
	var unavailable, gaveUp atomic.Int64
	for i := range cold {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, path := range []string{"/free", "/charged"} {
				method := http.MethodGet
				if path == "/charged" {
					method = http.MethodPost
				}
				switch status, err := call(method, path, cold[i].Key); {
				case err != nil:
					gaveUp.Add(1)
				case status == http.StatusServiceUnavailable:
					unavailable.Add(1)
				default:
					t.Errorf("%s %s with a slow store: %d", method, path, status)
				}
			}
		}()
	}
	status, err = call(http.MethodGet, "/free", hot.Key)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, status, "a cached key does not wait for the store")
	wg.Wait()
	t.Logf("slow store: %d answered 503, %d callers gave up", unavailable.Load(), gaveUp.Load())
	assert.Zero(t, gaveUp.Load(), "every request ends with its server-side deadline")
	assert.Equal(t, int64(2*len(cold)), unavailable.Load())

	proxy.Restore()
	for _, k := range cold {
		require.Eventually(t, func() bool {
			s, _ := a.call(t, http.MethodPost, "/charged", k.Key)
			return s == http.StatusOK
		}, 10*time.Second, 20*time.Millisecond, "served once the store is fast again")
	}
	require.Eventually(t, func() bool { return s.DB().Stats().InUse == 0 }, 10*time.Second, 10*time.Millisecond, "no connection stuck in use")
	assert.Zero(t, a.unreserved.Load())
	clock.Advance(2 * time.Minute)
	checkLedger(t, direct, acct, &a.served)
}

// TestSIGKILLAtRandomMoments: a process charges in a tight loop (reserve,
// then commit or release) and is killed with SIGKILL at a random moment —
// between calls, between reserve and settle, or inside a transaction —
// three times over, while a second process charges too. Once the
// reservations the dead processes left have expired, every reservation is
// settled exactly once and the balance is exactly what was committed.
func TestSIGKILLAtRandomMoments(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := newDSN(t, engine)
			start := time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)
			clock := keywardtest.NewClock(start)
			survivor := open(t, dsn, sqlstore.Options{Now: clock.Now})
			acct := credit.Account{OrgID: "org_killed", Allocation: 1_000_000}
			for round := range 3 {
				cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcessChargeLoop$", "-test.v")
				cmd.Env = append(os.Environ(), "KEYWARD_HELPER_DSN="+dsn, "KEYWARD_HELPER_ORG="+acct.OrgID,
					"KEYWARD_HELPER_NOW="+strconv.FormatInt(start.UnixNano(), 10))
				stdout, err := cmd.StdoutPipe()
				require.NoError(t, err)
				require.NoError(t, cmd.Start())
				t.Cleanup(func() { _ = cmd.Process.Kill() })
				lines := bufio.NewScanner(stdout)
				for lines.Scan() && lines.Text() != "charging" {
				}
				// The survivor charges while the other process does. On SQLite a
				// writer of another process can be starved past its busy timeout
				// by that tight loop on a loaded machine: the call is refused and
				// writes nothing, so it is made again.
				again := func(call func() error) {
					err := call()
					for try := 1; try < 3 && err != nil && strings.Contains(err.Error(), "SQLITE_BUSY"); try++ {
						t.Logf("%s: the survivor's call timed out on the lock; again", engine)
						err = call()
					}
					require.NoError(t, err, "three tries")
				}
				for i := range 5 {
					var r credit.Reservation
					again(func() (err error) {
						r, err = survivor.Reserve(ctx, credit.ReserveRequest{Account: acct, Amount: 1})
						return err
					})
					if i%2 == 0 {
						again(func() error { return survivor.Commit(ctx, acct, r.ID, 1) })
					} else {
						again(func() error { return survivor.Release(ctx, acct, r.ID) })
					}
				}
				time.Sleep(time.Duration(20+round*37) * time.Millisecond)
				require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
				_ = cmd.Wait()
			}
			clock.Advance(credit.DefaultReservationTTL)
			b := checkLedger(t, survivor, acct, nil)
			entries, err := survivor.Entries(ctx, acct.OrgID, b.PeriodStart)
			require.NoError(t, err)
			kinds := map[string]int{}
			for _, e := range entries {
				kinds[e.Kind]++
			}
			t.Logf("%s: after 3 kills: spent %d, balance exact; ledger %v", engine, b.Spent, kinds)
			assert.Greater(t, b.Spent, int64(9), "the dead processes charged too")
		})
	}
}

// TestHelperProcessChargeLoop is not a test: it is the process that
// TestSIGKILLAtRandomMoments kills. It charges 1–3 credits a call,
// committing two calls in three and releasing the third, until killed.
func TestHelperProcessChargeLoop(t *testing.T) {
	dsn, orgID := os.Getenv("KEYWARD_HELPER_DSN"), os.Getenv("KEYWARD_HELPER_ORG")
	if dsn == "" || orgID == "" {
		t.Skip("helper process only")
	}
	ns, err := strconv.ParseInt(os.Getenv("KEYWARD_HELPER_NOW"), 10, 64)
	require.NoError(t, err)
	now := time.Unix(0, ns)
	ctx := context.Background()
	s, err := sqlstore.Open(ctx, engineOf(dsn), sqlstore.Options{Now: func() time.Time { return now }})
	require.NoError(t, err)
	acct := credit.Account{OrgID: orgID, Allocation: 1_000_000}
	fmt.Println("charging")
	for i := 0; ; i++ {
		r, err := s.Reserve(ctx, credit.ReserveRequest{Account: acct, Amount: int64(1 + i%3)})
		require.NoError(t, err)
		if i%3 == 2 {
			require.NoError(t, s.Release(ctx, acct, r.ID))
		} else {
			require.NoError(t, s.Commit(ctx, acct, r.ID, r.Amount))
		}
	}
}

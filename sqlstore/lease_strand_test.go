package sqlstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// strandOpts are keyward serve's leased options but for TTL: 4 s instead
// of 2, so that the window in which a dead instance's lease still holds
// credits is long enough, on a loaded machine, for the calls this test
// makes in it.
var strandOpts = sqlstore.Options{Logger: quiet, Lease: sqlstore.LeaseOptions{Enabled: true, TTL: 4 * time.Second}}

// strandCost is what each charged call of the test costs.
const strandCost = 10

// strandAPI serves POST /charged (strandCost credits) and GET /free
// (uncharged), both behind the organization's rate limits (in-flight cap
// included), from s.
type strandAPI struct {
	srv *httptest.Server
	n   atomic.Int64 // request ids
}

func newStrandAPI(t *testing.T, s *sqlstore.Store) *strandAPI {
	t.Helper()
	cache, err := keyward.NewCache(s, keyward.CacheConfig{})
	require.NoError(t, err)
	t.Cleanup(cache.Close)
	ew := &keyward.ErrorWriter{Logger: quiet}
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_", Errors: ew})
	require.NoError(t, err)
	limit, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{Store: nil, Errors: ew, Now: time.Now})
	require.NoError(t, err)
	charge, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: s, Cost: strandCost, Errors: ew})
	require.NoError(t, err)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux := http.NewServeMux()
	mux.Handle("POST /charged", auth.Middleware(limit.Middleware(charge.Middleware(ok))))
	mux.Handle("GET /free", auth.Middleware(limit.Middleware(ok)))
	a := &strandAPI{srv: httptest.NewServer(mux)}
	t.Cleanup(a.srv.Close)
	return a
}

// answer is one call's outcome.
type answer struct {
	status int
	code   string // error.code
	reqID  string
	took   time.Duration
}

// call makes one request, with a request id of its own, and returns its
// answer; a client that gives up after 10 s sees status 0.
func (a *strandAPI) call(method, path, key string) answer {
	id := "b-" + strconv.FormatInt(a.n.Add(1), 10)
	req, _ := http.NewRequest(method, a.srv.URL+path, nil)
	req.Header.Set("X-API-Key", key)
	req.Header.Set("X-Request-Id", id)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	resp, err := a.srv.Client().Do(req.WithContext(ctx))
	out := answer{reqID: id}
	if err != nil {
		out.took = time.Since(start)
		return out
	}
	defer resp.Body.Close()
	var env struct {
		Error struct{ Code string } `json:"error"`
	}
	if resp.StatusCode != http.StatusOK {
		_ = json.NewDecoder(resp.Body).Decode(&env)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	out.status, out.code, out.took = resp.StatusCode, env.Error.Code, time.Since(start)
	return out
}

// TestKilledInstanceLeaseNeverHangsTheOrganization: two instances on
// PostgreSQL with leases; instance A (a child process) holds a lease of
// the organization and is killed with SIGKILL; B spends the rest. While
// A's lease still holds the credits, a charged call that arrives alone
// at B, and concurrent ones, are answered within a second: 503 (the
// credits exist but a lease holds them), never a 402; their in-flight
// slots are free again at once (an uncharged route answers 200). A's
// lease is returned by B within TTL of A's last write, and then every
// credit it held is spent at B without a single 402 until the balance is
// truly spent. No call is charged that was not answered 200, each once,
// and the ledger adds up.
func TestKilledInstanceLeaseNeverHangsTheOrganization(t *testing.T) {
	// Not parallel: its timings need the machine's attention.
	ctx := context.Background()
	dsn := newDSN(t, "postgres")
	b := open(t, dsn, strandOpts)
	const allocation = 25_000
	org, err := b.CreateOrg(ctx, manage.OrgSpec{Name: "stranded", MonthlyCredits: allocation,
		RatePerSecond: 1000, RatePerMinute: 60_000, Concurrency: 8})
	require.NoError(t, err)
	key, err := b.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "b"})
	require.NoError(t, err)
	acct := org.Account()
	api := newStrandAPI(t, b)

	// A charges the organization until its lease holds enough.
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcessHoldLease$")
	cmd.Env = append(os.Environ(), "KEYWARD_HELPER_DSN="+dsn, "KEYWARD_HELPER_ORG="+acct.OrgID,
		"KEYWARD_HELPER_ALLOCATION="+strconv.Itoa(allocation))
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	leased := func() (held int64, id int64) {
		require.NoError(t, b.DB().QueryRow(`SELECT COALESCE(SUM(amount), 0), COALESCE(MAX(id), 0) FROM keyward_reservations
			WHERE org_id = $1 AND state = 'open' AND lease = 1`, acct.OrgID).Scan(&held, &id))
		return held, id
	}
	require.Eventually(t, func() bool { held, _ := leased(); return held >= 1500 }, 60*time.Second, 20*time.Millisecond,
		"A holds a lease")
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	killedAt := time.Now()
	_ = cmd.Wait()
	stranded, leaseID := leased()

	// B spends everything no lease holds: what is left is in A's lease.
	bal, err := b.Balance(ctx, acct)
	require.NoError(t, err)
	rest := bal.Available - bal.Leased
	r, err := b.Reserve(ctx, credit.ReserveRequest{Account: acct, Amount: rest, RequestID: "drain"})
	require.NoError(t, err)
	require.NoError(t, b.Commit(ctx, acct, r.ID, rest))
	require.Less(t, time.Since(killedAt), 2*time.Second, "the machine is too slow for this test's window")

	// A call alone. (B's state of the organization is idle: its flush
	// drops it while the call waits, which once restarted the wait.)
	single := api.call(http.MethodPost, "/charged", key.Key)
	assert.Contains(t, []int{http.StatusServiceUnavailable, http.StatusOK}, single.status, "a call alone: %+v", single)
	assert.Less(t, single.took, 1500*time.Millisecond, "a call alone is answered within a second")

	// Concurrent calls, as many as the in-flight cap.
	var wg sync.WaitGroup
	concurrent := make([]answer, 8)
	for i := range concurrent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			concurrent[i] = api.call(http.MethodPost, "/charged", key.Key)
		}()
	}
	wg.Wait()
	var slowest time.Duration
	for _, c := range concurrent {
		assert.Contains(t, []int{http.StatusServiceUnavailable, http.StatusOK}, c.status, "a concurrent call: %+v", c)
		slowest = max(slowest, c.took)
	}
	assert.Less(t, slowest, 1500*time.Millisecond, "concurrent calls are answered within a second")
	inWindow := time.Since(killedAt)
	free := api.call(http.MethodGet, "/free", key.Key)
	assert.Equal(t, http.StatusOK, free.status, "the in-flight slots are free: %+v", free)

	// Until A's lease is returned calls answer 503; then every credit it
	// held is spendable, and only a spent balance answers 402.
	answers := append([]answer{single}, concurrent...)
	var returnedAfter time.Duration
	for {
		c := api.call(http.MethodPost, "/charged", key.Key)
		answers = append(answers, c)
		if c.status == http.StatusOK {
			returnedAfter = time.Since(killedAt)
			break
		}
		require.Equal(t, http.StatusServiceUnavailable, c.status, "before the lease is returned: %+v", c)
		require.Less(t, time.Since(killedAt), 2*strandOpts.Lease.TTL, "A's lease is returned")
		time.Sleep(20 * time.Millisecond)
	}
	var mu sync.Mutex
	var spent atomic.Int64
	spent.Store(strandCost) // the first 200, above
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c := api.call(http.MethodPost, "/charged", key.Key)
				mu.Lock()
				answers = append(answers, c)
				mu.Unlock()
				if c.status != http.StatusOK {
					assert.Equal(t, http.StatusPaymentRequired, c.status, "once the lease is returned: %+v", c)
					return
				}
				spent.Add(strandCost)
			}
		}()
	}
	wg.Wait()
	t.Logf("A's lease held %d credits at the kill; a call alone answered %d in %v, %d concurrent calls within %v "+
		"(%v after the kill); the lease's credits were spendable %v after the kill; %d credits spent from it at B",
		stranded, single.status, single.took.Round(time.Millisecond), len(concurrent), slowest.Round(time.Millisecond),
		inWindow.Round(time.Millisecond), returnedAfter.Round(time.Millisecond), spent.Load())
	assert.Less(t, returnedAfter, strandOpts.Lease.TTL+time.Second, "stranded for at most TTL")

	// The ledger: nothing overspent, every 200 of B charged once, nothing
	// else of B charged (no call that gave up is charged later).
	require.NoError(t, b.Close())
	time.Sleep(200 * time.Millisecond)
	check := open(t, dsn, sqlstore.Options{})
	final, err := check.Balance(ctx, acct)
	require.NoError(t, err)
	leases, rows := openRows(t, check, acct.OrgID)
	assert.Zero(t, leases+rows, "nothing left open")
	assert.LessOrEqual(t, final.Spent, final.Allocation+final.Granted, "never overspent")
	assert.Less(t, final.Available, int64(strandCost), "a 402 only once the credits are spent")
	assert.Equal(t, final.Allocation+final.Granted-final.Spent, rebuild(t, check, final), "Σ commits = spent")
	byReq := commitsByRequest(t, check, final)
	ok := map[string]bool{}
	for _, c := range append(answers, answer{status: http.StatusOK, reqID: "drain"}) {
		ok[c.reqID] = c.status == http.StatusOK
	}
	for req, e := range byReq {
		if strings.HasPrefix(req, "b-") {
			assert.True(t, ok[req], "%s charged without a 200", req)
			assert.Len(t, e, 1, "%s charged once", req)
		}
	}
	for req, was := range ok {
		if was && strings.HasPrefix(req, "b-") {
			assert.Len(t, byReq[req], 1, "%s answered 200 and charged", req)
		}
	}
	var expired int64
	entries, err := check.Entries(ctx, acct.OrgID, final.PeriodStart)
	require.NoError(t, err)
	for _, e := range entries {
		if e.Kind == "expire" && e.ReservationID == leaseID {
			expired += e.Amount
		}
	}
	assert.Positive(t, expired, "A's lease was returned")
	t.Logf("A's lease returned %d credits", expired)
}

// TestHelperProcessHoldLease is not a test: it is instance A of
// TestKilledInstanceLeaseNeverHangsTheOrganization, which kills it. It
// charges the organization with leases from 16 workers, for good.
func TestHelperProcessHoldLease(t *testing.T) {
	dsn, orgID := os.Getenv("KEYWARD_HELPER_DSN"), os.Getenv("KEYWARD_HELPER_ORG")
	allocation, _ := strconv.ParseInt(os.Getenv("KEYWARD_HELPER_ALLOCATION"), 10, 64)
	if dsn == "" || orgID == "" || os.Getenv("KEYWARD_HELPER_ALLOCATION") == "" {
		t.Skip("helper process only")
	}
	ctx := context.Background()
	s, err := sqlstore.Open(ctx, dsn, strandOpts)
	require.NoError(t, err)
	acct := credit.Account{OrgID: orgID, Allocation: allocation}
	err = chargeLoop(ctx, s, acct, "a", make(chan struct{}), func(string, int64) {})
	fmt.Fprintln(os.Stderr, "helper stopped:", err)
}

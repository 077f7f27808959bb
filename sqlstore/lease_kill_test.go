package sqlstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/sqlstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// killOpts are the leased options of the SIGKILL test: a short
// reservation TTL, so that what the dead instance held comes back within
// the test.
var killOpts = sqlstore.Options{ReservationTTL: time.Second,
	Lease: sqlstore.LeaseOptions{Enabled: true, MinAvailable: 1, FlushInterval: 50 * time.Millisecond}}

// chargeLoop charges acct from 16 workers until stop is closed: cost 1–3,
// one handler in four fails (release), the others commit a random part of
// the cost. Each commit is reported to committed with its request id.
func chargeLoop(ctx context.Context, s *sqlstore.Store, acct credit.Account, prefix string, stop <-chan struct{},
	committed func(req string, amount int64)) error {
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(len(prefix))))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req := fmt.Sprintf("%s-%d-%d", prefix, w, i)
				cost := 1 + rng.Int64N(3)
				r, err := s.Reserve(ctx, credit.ReserveRequest{Account: acct, Amount: cost, KeyID: "key_k", RequestID: req})
				if errors.Is(err, credit.ErrInsufficientCredits) || errors.Is(err, sqlstore.ErrCreditsLeased) {
					continue // spent, or the last credits are in the killed instance's lease
				}
				if err != nil {
					errs <- err
					return
				}
				if rng.IntN(4) == 0 {
					err = s.Release(ctx, acct, r.ID)
				} else {
					final := 1 + rng.Int64N(cost)
					if err = s.Commit(ctx, acct, r.ID, final); err == nil {
						committed(req, final)
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// TestLeasedInstanceKilledMidRun: two instances × 16 workers charge one
// organization on PostgreSQL with leases, handlers failing at random; one
// instance is killed (SIGKILL) mid-run. After the TTLs: no overspend, no
// open reservation or lease left, the balance delta is exactly what the
// ledger's commits say, each call is in the ledger at most once, every
// call of the survivor is, and the dead instance's calls missing from it
// (charged to nobody: the customer's favour) were all committed within
// the last flush before the kill.
func TestLeasedInstanceKilledMidRun(t *testing.T) {
	// Not parallel: its load would slow the other tests' database calls.
	ctx := context.Background()
	dsn := newDSN(t, "postgres")
	survivor := open(t, dsn, killOpts)
	const allocation = 25_000
	acct := credit.Account{OrgID: "org_kill", Allocation: allocation}

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcessLeasedCharge$", "-test.v")
	cmd.Env = append(os.Environ(), "KEYWARD_HELPER_DSN="+dsn, "KEYWARD_HELPER_ORG="+acct.OrgID)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	type done struct {
		amount, at int64
	}
	helper := map[string]done{}
	var killedAt int64
	read := make(chan struct{})
	started := make(chan struct{})
	go func() {
		defer close(read)
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			f := strings.Fields(lines.Text())
			if len(f) == 1 && f[0] == "charging" {
				close(started)
			}
			if len(f) != 4 || f[0] != "committed" {
				continue
			}
			amount, _ := strconv.ParseInt(f[2], 10, 64)
			at, _ := strconv.ParseInt(f[3], 10, 64)
			helper[f[1]] = done{amount, at}
		}
	}()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the helper never started charging")
	}

	var mu sync.Mutex
	mine := map[string]int64{}
	stop := make(chan struct{})
	loopErr := make(chan error, 1)
	go func() {
		loopErr <- chargeLoop(ctx, survivor, acct, "s", stop, func(req string, amount int64) {
			mu.Lock()
			mine[req] = amount
			mu.Unlock()
		})
	}()
	time.Sleep(700 * time.Millisecond)
	killedAt = time.Now().UnixNano()
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	<-read
	time.Sleep(500 * time.Millisecond) // the survivor goes on alone
	close(stop)
	require.NoError(t, <-loopErr)
	require.NoError(t, survivor.FlushLeases(ctx))

	// After the dead instance's lease (lease TTL after its last flush) and
	// reservations (reservation TTL) expired:
	time.Sleep(max(killOpts.ReservationTTL, sqlstore.DefaultLeaseTTL) + 200*time.Millisecond)
	require.NoError(t, survivor.Close())
	check := open(t, dsn, sqlstore.Options{})
	b, err := check.Balance(ctx, acct)
	require.NoError(t, err)
	leases, rows := openRows(t, check, acct.OrgID)
	assert.Zero(t, leases, "no lease left")
	assert.Zero(t, rows, "no reservation left")
	assert.Zero(t, b.Reserved)
	assert.Zero(t, b.Leased)
	assert.LessOrEqual(t, b.Spent, int64(allocation), "never overspent")
	assert.Equal(t, b.Allocation+b.Granted-b.Spent, rebuild(t, check, b), "committed = balance delta")

	byReq := commitsByRequest(t, check, b)
	var lost, lostCredits, oldest int64
	for req, e := range byReq {
		assert.Len(t, e, 1, "%s in the ledger once", req)
	}
	for req, amount := range mine {
		if assert.Len(t, byReq[req], 1, "the survivor's %s is in the ledger", req) {
			assert.Equal(t, amount, byReq[req][0].Amount)
		}
	}
	for req, d := range helper {
		e := byReq[req]
		if len(e) == 0 {
			lost++
			lostCredits += d.amount
			oldest = max(oldest, killedAt-d.at)
			continue
		}
		assert.Equal(t, d.amount, e[0].Amount)
	}
	for req := range byReq {
		if _, ok := mine[req]; !ok && strings.HasPrefix(req, "s-") {
			t.Errorf("%s in the ledger was never committed", req)
		}
	}
	t.Logf("survivor %d calls, killed instance %d calls reported, %d of them (%d credits) unwritten at the kill, "+
		"the oldest committed %v before it; spent %d of %d", len(mine), len(helper), lost, lostCredits,
		time.Duration(oldest), b.Spent, allocation)
	assert.Positive(t, len(helper), "the killed instance charged")
	// The bound: what was committed within one flush interval plus the
	// flush's own transaction before the kill (50 ms + a few ms here when
	// the machine is quiet; the margin is for a machine that is not).
	assert.Less(t, time.Duration(oldest), killOpts.Lease.FlushInterval+time.Second,
		"only the calls of the last flush go unwritten")
}

// TestHelperProcessLeasedCharge is not a test: it is the instance that
// TestLeasedInstanceKilledMidRun kills. It charges with leases from 16
// workers and prints each commit: "committed REQUEST AMOUNT UNIXNANO".
func TestHelperProcessLeasedCharge(t *testing.T) {
	dsn, orgID := os.Getenv("KEYWARD_HELPER_DSN"), os.Getenv("KEYWARD_HELPER_ORG")
	if dsn == "" || orgID == "" {
		t.Skip("helper process only")
	}
	ctx := context.Background()
	s, err := sqlstore.Open(ctx, dsn, killOpts)
	require.NoError(t, err)
	acct := credit.Account{OrgID: orgID, Allocation: 25_000}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	fmt.Fprintln(out, "charging")
	_ = out.Flush()
	_ = chargeLoop(ctx, s, acct, "h", make(chan struct{}), func(req string, amount int64) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, "committed %s %d %d\n", req, amount, time.Now().UnixNano())
		_ = out.Flush()
	})
}

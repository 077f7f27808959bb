package redislimit_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/ids"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/rate"
	"github.com/keyward/keyward/redislimit"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slotTTL is the lease of the slot tests: short, so that they are quick.
const slotTTL = time.Second

// TestSIGKILLFreesSlotsWithinSlotTTL: a process takes every in-flight slot
// of an organization and is killed (SIGKILL) while it holds them. While it
// lives, its slots outlast SlotTTL (its Store renews them); right after
// the kill the organization is still at its cap; within SlotTTL of the
// kill (plus the time to notice) a request of it is served again.
func TestSIGKILLFreesSlotsWithinSlotTTL(t *testing.T) {
	t.Parallel()
	const slots = 3
	opts := redisOptions(t)
	prefix := testPrefix(t, opts)
	org := "org_" + ids.New("")
	client := newClient(t, opts)
	ctx := context.Background()
	inflight := prefix + ":{" + org + "}:inflight"

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcessHoldSlots$", "-test.v")
	cmd.Env = append(os.Environ(), "KEYWARD_HELPER_REDIS_URL="+testRedisURL(opts), "KEYWARD_HELPER_PREFIX="+prefix,
		"KEYWARD_HELPER_ORG="+org, "KEYWARD_HELPER_SLOTS="+strconv.Itoa(slots))
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = cmd.Stdout
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := bufio.NewScanner(stdout)
	var out []string
	held := false
	for !held && lines.Scan() {
		out = append(out, lines.Text())
		held = lines.Text() == "held="+strconv.Itoa(slots)
	}
	require.True(t, held, "the helper never held its slots: %v\n%s", lines.Err(), strings.Join(out, "\n"))
	go func() { // keep the pipe drained
		for lines.Scan() {
		}
	}()
	require.Eventually(t, func() bool {
		n, err := client.ZCard(ctx, inflight).Result()
		return err == nil && n == slots
	}, 5*time.Second, 10*time.Millisecond, "the slots are in Redis")

	store, err := redislimit.New(ctx, client, redislimit.Options{Prefix: prefix, SlotTTL: slotTTL})
	require.NoError(t, err)
	take := func() rate.Result {
		res, err := store.Take(ctx, rate.Request{Org: org, Key: "key_survivor", PerSecond: 1000, PerMinute: 100_000, Concurrency: slots})
		require.NoError(t, err)
		store.Release(org, res.Slot)
		return res
	}
	assert.Equal(t, rate.InFlight, take().Refused, "the helper holds the cap")

	// A live process keeps its slots past their TTL.
	time.Sleep(2 * slotTTL)
	res := take()
	assert.Equal(t, rate.InFlight, res.Refused, "renewed: still held after twice SlotTTL")
	assert.Equal(t, int64(slots), res.InFlight)

	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	err = cmd.Wait()
	killed := time.Now()
	require.Error(t, err)
	assert.Equal(t, "signal: killed", err.Error())
	assert.Equal(t, rate.InFlight, take().Refused, "right after the kill the slots are still taken")

	var freed time.Duration
	require.Eventually(t, func() bool {
		res := take()
		freed = time.Since(killed)
		return res.Refused == ""
	}, 3*slotTTL, 10*time.Millisecond, "the dead process's slots expire")
	t.Logf("slots freed %v after SIGKILL (SlotTTL %v, renewed every %v)", freed.Round(time.Millisecond), slotTTL, slotTTL/3)
	assert.LessOrEqual(t, freed, slotTTL+250*time.Millisecond, "within SlotTTL of the kill")
	time.Sleep(time.Second)
	take() // the first request of a second purges the expired leases
	require.Eventually(t, func() bool {
		n, err := client.ZCard(ctx, inflight).Result()
		return err == nil && n == 0
	}, time.Second, 10*time.Millisecond, "no lease of the dead process is left (and this one's, given back, removed)")
}

// testRedisURL is the URL of opts's server and database.
func testRedisURL(opts *redis.Options) string {
	return fmt.Sprintf("redis://%s/%d", opts.Addr, opts.DB)
}

// TestHelperProcessHoldSlots is not a test: it is the process that
// TestSIGKILLFreesSlotsWithinSlotTTL kills. It takes the organization's
// slots through a Store of SlotTTL slotTTL, says so, and holds them until
// it is killed.
func TestHelperProcessHoldSlots(t *testing.T) {
	url, prefix, org := os.Getenv("KEYWARD_HELPER_REDIS_URL"), os.Getenv("KEYWARD_HELPER_PREFIX"), os.Getenv("KEYWARD_HELPER_ORG")
	if url == "" || prefix == "" || org == "" {
		t.Skip("helper process only")
	}
	n, err := strconv.Atoi(os.Getenv("KEYWARD_HELPER_SLOTS"))
	require.NoError(t, err)
	opts, err := redislimit.ClientOptions(url, 0)
	require.NoError(t, err)
	store, err := redislimit.New(context.Background(), redis.NewClient(opts), redislimit.Options{Prefix: prefix, SlotTTL: slotTTL})
	require.NoError(t, err)
	for i := range n {
		res, err := store.Take(context.Background(), rate.Request{Org: org, Key: "key_" + strconv.Itoa(i),
			PerSecond: 1000, PerMinute: 100_000, Concurrency: int64(n)})
		require.NoError(t, err)
		require.Equal(t, rate.Scope(""), res.Refused)
	}
	fmt.Printf("held=%d\n", n)
	select {} // killed here, its slots held
}

// TestSlowRequestKeepsItsSlot: a request that runs for several SlotTTLs
// keeps its slot (the Store renews it), so the organization stays at its
// cap; once the request ends its slot is free at once.
func TestSlowRequestKeepsItsSlot(t *testing.T) {
	t.Parallel()
	const ttl = 300 * time.Millisecond
	opts := redisOptions(t)
	keys, _, k := newOrgAndKey(t, manage.OrgSpec{RatePerSecond: 1000, RatePerMinute: 1000, Concurrency: 1})
	release, running := make(chan struct{}), make(chan struct{}, 1)
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("slow") != "" {
			running <- struct{}{}
			<-release
		}
		w.WriteHeader(http.StatusOK)
	})
	in := newInstance(t, keys, newClient(t, opts), testPrefix(t, opts), setup{handler: slow, slotTTL: ttl})
	call := func(query string) int {
		r, _ := http.NewRequest(http.MethodGet, "/v1/enrich"+query, nil)
		r.Header.Set("X-API-Key", k.Key)
		w := httptest.NewRecorder()
		in.h.ServeHTTP(w, r)
		return w.Code
	}
	done := make(chan int)
	go func() { done <- call("?slow=1") }()
	<-running
	time.Sleep(4 * ttl)
	assert.Equal(t, http.StatusTooManyRequests, call(""), "the slow request still holds the one slot after 4 × SlotTTL")
	close(release)
	assert.Equal(t, http.StatusOK, <-done)
	assert.Equal(t, http.StatusOK, call(""), "its slot is free once it ends")
}

// TestSlotTakesTheNameOfOneGivenBack: a slot taken right after another was
// given back takes that one's name in Redis (its lease is moved on for the
// new request). The set holds one lease; the old slot, given back again, is
// still ignored; the new one is held, and renewed, until it is given back.
func TestSlotTakesTheNameOfOneGivenBack(t *testing.T) {
	t.Parallel()
	const ttl = 300 * time.Millisecond
	r := newStoreRig(t, redislimit.Options{SlotTTL: ttl})
	ctx, store, client, prefix, org := context.Background(), r.store, r.client, r.prefix, r.org
	set := prefix + ":{" + org + "}:inflight"
	take := func() rate.Result {
		res, err := store.Take(ctx, rate.Request{Org: org, Key: "key_a", PerSecond: 1000, PerMinute: 100_000, Concurrency: 1})
		require.NoError(t, err)
		return res
	}
	a := take()
	require.Equal(t, rate.Scope(""), a.Refused)
	leaseA := client.ZRange(ctx, set, 0, -1).Val()
	require.Len(t, leaseA, 1)
	store.Release(org, a.Slot)
	b := take()
	require.Equal(t, rate.Scope(""), b.Refused, "a's slot is free")
	assert.NotEqual(t, a.Slot, b.Slot)
	assert.Equal(t, leaseA, client.ZRange(ctx, set, 0, -1).Val(), "one lease, b's, under a's name")
	store.Release(org, a.Slot) // given back already: ignored
	time.Sleep(20 * time.Millisecond)
	assert.Equal(t, rate.InFlight, take().Refused, "b holds the one slot")
	time.Sleep(3 * ttl)
	assert.Equal(t, rate.InFlight, take().Refused, "b's lease is renewed")
	store.Release(org, b.Slot)
	c := take()
	assert.Equal(t, rate.Scope(""), c.Refused)
	store.Release(org, c.Slot)
	assert.Eventually(t, func() bool { return client.ZCard(ctx, set).Val() == 0 }, time.Second, 5*time.Millisecond,
		"every slot given back leaves Redis")
}

// TestExpiredLeasesCountForNothing: a lease past its expiry (its process
// died) is not in flight, even before a purge removes it: the count
// reported (X-RateLimit-Concurrency-Remaining) and the cap see live leases
// only.
func TestExpiredLeasesCountForNothing(t *testing.T) {
	t.Parallel()
	r := newStoreRig(t, redislimit.Options{})
	ctx, store, client, prefix, org := context.Background(), r.store, r.client, r.prefix, r.org
	req := rate.Request{Org: org, Key: "key_a", PerSecond: 1000, PerMinute: 100_000, Concurrency: 10}
	first, err := store.Take(ctx, req) // the organization's upkeep (a purge) runs now, not again this second
	require.NoError(t, err)
	now, err := client.Time(ctx).Result()
	require.NoError(t, err)
	past := float64(now.Add(-time.Second).UnixMilli())
	for i := range 3 {
		require.NoError(t, client.ZAdd(ctx, prefix+":{"+org+"}:inflight", redis.Z{Score: past, Member: "dead:" + strconv.Itoa(i)}).Err())
	}
	second, err := store.Take(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, int64(2), second.InFlight, "in flight: the two live requests, not the three expired leases")
	req.Concurrency = 2
	third, err := store.Take(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, rate.InFlight, third.Refused, "a cap of two: full with the two live ones")
	assert.Equal(t, int64(2), third.InFlight)
	store.Release(org, first.Slot)
	store.Release(org, second.Slot)
}

// TestFailedTakeReusesNoName: the slots given back that a failed Take
// carried are removed by a later round trip but their names are never
// taken again (the failed one may yet run in Redis, and its script would
// remove a lease of that name).
func TestFailedTakeReusesNoName(t *testing.T) {
	t.Parallel()
	r := newStoreRig(t, redislimit.Options{})
	ctx, store, client, prefix, org := context.Background(), r.store, r.client, r.prefix, r.org
	set := prefix + ":{" + org + "}:inflight"
	req := rate.Request{Org: org, Key: "key_a", PerSecond: 1000, PerMinute: 100_000, Concurrency: 5}
	a, err := store.Take(ctx, req)
	require.NoError(t, err)
	leaseA := client.ZRange(ctx, set, 0, -1).Val()
	require.Len(t, leaseA, 1)
	store.Release(org, a.Slot)
	failed, cancel := context.WithCancel(ctx)
	cancel()
	_, err = store.Take(failed, req) // carries a's name, and fails
	require.Error(t, err)
	b, err := store.Take(ctx, req)
	require.NoError(t, err)
	assert.Eventually(t, func() bool {
		leases := client.ZRange(ctx, set, 0, -1).Val()
		return len(leases) == 1 && leases[0] != leaseA[0]
	}, time.Second, 5*time.Millisecond, "a's lease removed; b's under a name of its own")
	store.Release(org, b.Slot)
}

// commands records the commands a client sends (or tries to).
type commands struct {
	mu   sync.Mutex
	args [][]any
}

func (c *commands) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.add(cmd)
		return next(ctx, cmd)
	}
}
func (c *commands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.add(cmd)
		}
		return next(ctx, cmds)
	}
}
func (c *commands) add(cmd redis.Cmder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.args = append(c.args, cmd.Args())
}
func (c *commands) find(name string) [][]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	var found [][]any
	for _, a := range c.args {
		if len(a) > 0 && strings.EqualFold(fmt.Sprint(a[0]), name) {
			found = append(found, a)
		}
	}
	return found
}

// TestFailedTakeLeavesNoLease: a Take whose round trip failed on the
// client's side may still have run in Redis and taken a lease under its
// new slot's name; that name is removed soon after, not left to expire.
func TestFailedTakeLeavesNoLease(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	client := newClient(t, opts)
	sent := &commands{}
	client.AddHook(sent)
	ctx := context.Background()
	store, err := redislimit.New(ctx, client, redislimit.Options{Prefix: testPrefix(t, opts)})
	require.NoError(t, err)
	failed, cancel := context.WithCancel(ctx)
	cancel()
	_, err = store.Take(failed, rate.Request{Org: "org_" + ids.New(""), Key: "key_a", PerSecond: 10, PerMinute: 600, Concurrency: 5})
	require.Error(t, err)
	evals := sent.find("evalsha")
	require.Len(t, evals, 1)
	lease := fmt.Sprint(evals[0][9]) + ":" + fmt.Sprint(evals[0][10]) // the Store's name and the slot's (take.lua's ARGV[5] and ARGV[6])
	assert.Eventually(t, func() bool {
		for _, zrem := range sent.find("zrem") {
			for _, m := range zrem[2:] {
				if m == lease {
					return true
				}
			}
		}
		return false
	}, time.Second, 5*time.Millisecond, "the failed Take's lease, %s, is removed", lease)
}

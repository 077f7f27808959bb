package redislimit_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/internal/ids"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
	"github.com/keyward/keyward/rate"
	"github.com/keyward/keyward/redislimit"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// redisOptions returns options for the test server, failing in CI and
// skipping elsewhere when it does not answer.
func redisOptions(t testing.TB) *redis.Options {
	t.Helper()
	opts, err := redis.ParseURL(testenv.RedisURL(t))
	require.NoError(t, err)
	c := redis.NewClient(opts)
	defer c.Close()
	if err := c.Ping(context.Background()).Err(); err != nil {
		testenv.Unreachable(t, "Redis at "+opts.Addr, err)
	}
	return opts
}

// newClient returns a client of opts, closed when the test ends.
func newClient(t testing.TB, opts *redis.Options) *redis.Client {
	t.Helper()
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// testPrefix is a key prefix of one test's own; its keys are deleted when
// the test ends.
func testPrefix(t testing.TB, opts *redis.Options) string {
	t.Helper()
	prefix := "keyward-test-" + ids.New("")
	t.Cleanup(func() { cleanKeys(opts, prefix) })
	return prefix
}

// storeRig is a Store on a client and key prefix of one test's own, and
// an organization id of its own.
type storeRig struct {
	store       *redislimit.Store
	client      *redis.Client
	prefix, org string
}

func newStoreRig(t *testing.T, o redislimit.Options) storeRig {
	t.Helper()
	opts := redisOptions(t)
	client := newClient(t, opts)
	o.Prefix = testPrefix(t, opts)
	s, err := redislimit.New(context.Background(), client, o)
	require.NoError(t, err)
	return storeRig{store: s, client: client, prefix: o.Prefix, org: "org_" + ids.New("")}
}

// cleanKeys deletes a test's keys with a client of its own (the test's
// client may be closed or cut off by then).
func cleanKeys(opts *redis.Options, prefix string) {
	c := redis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if ks, err := c.Keys(ctx, prefix+":*").Result(); err == nil && len(ks) > 0 {
		c.Del(ctx, ks...)
	}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// setup is what an API process is made of, for newInstance. Zero fields
// take the defaults said beside them.
type setup struct {
	failClosed bool
	logger     *slog.Logger  // nil: discarded
	handler    http.Handler  // nil: 200 at once
	slotTTL    time.Duration // zero: redislimit's default
	timeout    time.Duration // zero: redislimit's default
}

// instance is one API process: its own key cache, authenticator, Redis
// Store and rate limiter, over a client and a key store it is given.
type instance struct {
	h      http.Handler
	store  *redislimit.Store
	prefix string
}

func newInstance(t testing.TB, keys keyward.KeyStore, client *redis.Client, prefix string, s setup) instance {
	t.Helper()
	cache, err := keyward.NewCache(keys, keyward.CacheConfig{})
	require.NoError(t, err)
	t.Cleanup(cache.Close)
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_"})
	require.NoError(t, err)
	store, err := redislimit.New(context.Background(), client, redislimit.Options{Prefix: prefix, SlotTTL: s.slotTTL, Timeout: s.timeout})
	require.NoError(t, err)
	if s.logger == nil {
		s.logger = quiet
	}
	rl, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{Store: store, FailClosed: s.failClosed,
		Logger: s.logger, Errors: &keyward.ErrorWriter{Logger: quiet}})
	require.NoError(t, err)
	if s.handler == nil {
		s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	}
	return instance{h: auth.Middleware(rl.Middleware(s.handler)), store: store, prefix: prefix}
}

func (in instance) call(key string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/v1/transactions", nil)
	r.Header.Set("X-API-Key", key)
	w := httptest.NewRecorder()
	in.h.ServeHTTP(w, r)
	return w
}

// newOrgAndKey returns a key store holding one organization of spec (a
// free one when spec has no name) and a key of it.
func newOrgAndKey(t testing.TB, spec manage.OrgSpec) (*memstore.Store, keyward.Organization, manage.CreatedKey) {
	t.Helper()
	if spec.Name == "" {
		spec.Name = "acme"
	}
	store, err := memstore.New(memstore.Options{Prefix: "triq_"})
	require.NoError(t, err)
	org, err := store.CreateOrg(context.Background(), spec)
	require.NoError(t, err)
	k, err := store.CreateKey(context.Background(), manage.KeySpec{OrgID: org.ID, Name: "production"})
	require.NoError(t, err)
	return store, org, k
}

// tally counts the answers of a burst: served, and refused by scope.
type tally struct {
	answered atomic.Int64
	mu       sync.Mutex
	served   int
	refused  map[string]int
}

func (c *tally) add(t testing.TB, w *httptest.ResponseRecorder) {
	defer c.answered.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case w.Code == http.StatusOK && w.Header().Get("X-RateLimit-Limit") == "":
		t.Error("served without a limit: the store failed")
	case w.Code == http.StatusOK:
		c.served++
	case w.Code == http.StatusTooManyRequests:
		if c.refused == nil {
			c.refused = make(map[string]int)
		}
		c.refused[w.Header().Get("X-RateLimit-Scope")]++
	default:
		t.Errorf("status %d: %s", w.Code, w.Body)
	}
}

// burst sends n requests with key at once, spread over the instances,
// counts their answers in c, and returns how long the burst took.
func burst(t testing.TB, c *tally, instances []instance, key string, n int) time.Duration {
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			c.add(t, instances[i%len(instances)].call(key))
		}()
	}
	ready.Wait()
	began := time.Now()
	close(start)
	done.Wait()
	return time.Since(began)
}

// twoInstances returns two API processes over one key store: each with a
// Redis client (its pool filled) and a Store of its own, on one prefix.
// They fail closed, with a timeout long enough for a loaded machine: a
// store failure is a 503, which fails the counts, never a request served
// without a limit.
func twoInstances(t *testing.T, opts *redis.Options, keys keyward.KeyStore, s setup) []instance {
	t.Helper()
	prefix := testPrefix(t, opts)
	s.failClosed = true
	s.timeout = 5 * time.Second
	var out []instance
	for range 2 {
		client := newClient(t, opts)
		var wg sync.WaitGroup
		for range opts.PoolSize {
			wg.Go(func() { assert.NoError(t, client.Ping(context.Background()).Err()) })
		}
		wg.Wait()
		out = append(out, newInstance(t, keys, client, prefix, s))
	}
	return out
}

// TestTwoInstancesShareOneLimit: two instances (two clients, two Stores,
// two rate limiters) over one organization, 200 requests at once; each
// subtest sets the organization's limits so that one of them binds.
func TestTwoInstancesShareOneLimit(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	opts.PoolSize = 100 // a connection for each request in flight

	t.Run("per second", func(t *testing.T) {
		t.Parallel()
		// A token comes back every 500 ms: the burst normally ends before
		// one does, and then exactly the bucket's 3 (its capacity, not its
		// rate) are served.
		const rps, capacity, interval = 2, 3, 500 * time.Millisecond
		keys, _, k := newOrgAndKey(t, manage.OrgSpec{RatePerSecond: rps, Burst: capacity, RatePerMinute: 1000, Concurrency: 1000})
		var c tally
		took := burst(t, &c, twoInstances(t, opts, keys, setup{}), k.Key, 200)
		t.Logf("200 requests in %v: %d served, refused %v", took.Round(time.Millisecond), c.served, c.refused)
		// On a machine so slow that the burst outlasts a token, each token
		// back may serve one more; an instance counting alone would serve
		// its own burst (twice as many) at once.
		want := capacity
		if took >= interval {
			want += int(took / interval)
			assert.GreaterOrEqual(t, c.served, capacity)
			assert.LessOrEqual(t, c.served, want, "at most the burst and the tokens back since")
		} else {
			assert.Equal(t, capacity, c.served, "exactly the bucket's burst, across both instances")
		}
		assert.Equal(t, map[string]int{"rps": 200 - c.served}, c.refused)
	})

	t.Run("per minute", func(t *testing.T) {
		t.Parallel()
		const rpm = 120
		keys, org, k := newOrgAndKey(t, manage.OrgSpec{RatePerSecond: 1000, RatePerMinute: rpm, Concurrency: 1000})
		instances := twoInstances(t, opts, keys, setup{})
		var first, second tally
		burst(t, &first, instances, k.Key, 100)
		assert.Equal(t, 100, first.served, "within the quota and the bucket")
		time.Sleep(1100 * time.Millisecond) // the next second of Redis's clock
		burst(t, &second, instances, k.Key, 100)
		assert.Equal(t, rpm-100, second.served, "the quota counts the previous second")
		assert.Equal(t, map[string]int{"rpm": 200 - rpm}, second.refused)

		// The quota is kept per second: the seconds of both bursts hold
		// the 120.
		client := newClient(t, opts)
		h, err := client.HGetAll(context.Background(), orgKey(instances, org.ID)).Result()
		require.NoError(t, err)
		var seconds, sum int
		for f, v := range h {
			if _, err := strconv.ParseInt(f, 10, 64); err == nil {
				n, _ := strconv.Atoi(v)
				seconds, sum = seconds+1, sum+n
			}
		}
		assert.GreaterOrEqual(t, seconds, 2)
		assert.Equal(t, rpm, sum)
	})

	t.Run("in flight", func(t *testing.T) {
		t.Parallel()
		const limit = 5
		keys, org, k := newOrgAndKey(t, manage.OrgSpec{RatePerSecond: 1000, RatePerMinute: 1000, Concurrency: limit})
		var running, peak, entered atomic.Int64
		var gate atomic.Pointer[chan struct{}]
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n := running.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			entered.Add(1)
			if g := gate.Load(); g != nil {
				<-*g
			} else {
				time.Sleep(5 * time.Millisecond)
			}
			running.Add(-1)
			w.WriteHeader(http.StatusOK)
		})
		instances := twoInstances(t, opts, keys, setup{handler: h})
		client := newClient(t, opts)
		inflight := orgKey(instances, org.ID) + ":inflight"

		// The requests served hold their slots until every other one is
		// answered: exactly the cap is served.
		g := make(chan struct{})
		gate.Store(&g)
		open := sync.OnceFunc(func() { close(g) })
		defer open() // never leave a request hanging, even on a failure
		var c tally
		var answered sync.WaitGroup
		answered.Go(func() { burst(t, &c, instances, k.Key, 200) })
		require.Eventually(t, func() bool {
			n, err := client.ZCard(context.Background(), inflight).Result()
			return err == nil && n == limit && entered.Load() == limit && c.answered.Load() == 200-limit
		}, 20*time.Second, 5*time.Millisecond, "the cap's requests run, every other one is answered")
		open()
		answered.Wait()
		assert.Equal(t, limit, c.served)
		assert.Equal(t, map[string]int{"concurrency": 200 - limit}, c.refused)
		assert.Equal(t, int64(limit), peak.Load())

		// Short requests from 20 clients: slots are given back and taken
		// again, never more than the cap at once.
		gate.Store(nil)
		peak.Store(0)
		var churn tally
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				for range 10 {
					churn.add(t, instances[i%2].call(k.Key))
					time.Sleep(time.Millisecond)
				}
			})
		}
		wg.Wait()
		t.Logf("churn: %d served, refused %v, peak %d", churn.served, churn.refused, peak.Load())
		assert.LessOrEqual(t, peak.Load(), int64(limit), "never more in flight than the cap")
		assert.Greater(t, churn.served, limit, "slots are given back")
		assert.Equal(t, 200, churn.served+churn.refused["concurrency"], "refused for the cap alone")
		// A slot given back leaves Redis with the organization's next
		// request or a few milliseconds later (Release).
		assert.Eventually(t, func() bool {
			n, err := client.ZCard(context.Background(), inflight).Result()
			return err == nil && n == 0
		}, time.Second, 5*time.Millisecond, "every slot given back once its request ended")
	})
}

// orgKey is the organization's hash in Redis, as the package documents it.
func orgKey(instances []instance, org string) string {
	return instances[0].prefix + ":{" + org + "}"
}

// redisAndMemory returns a Redis Store of a prefix of its own and
// rate.Memory, the reference, by name.
func redisAndMemory(t *testing.T) map[string]rate.Store {
	opts := redisOptions(t)
	store, err := redislimit.New(context.Background(), newClient(t, opts), redislimit.Options{Prefix: testPrefix(t, opts)})
	require.NoError(t, err)
	return map[string]rate.Store{"redis": store, "memory": new(rate.Memory)}
}

// TestTakeAsMemory runs one sequence of requests on the Redis Store and on
// rate.Memory, the reference: each decision and each count agree, and are
// the expected ones. The sequence takes well under the bucket's 333 ms per
// token, so both see one instant.
func TestTakeAsMemory(t *testing.T) {
	t.Parallel()
	for name, s := range redisAndMemory(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			org := "org_" + ids.New("")
			req := func(key string, keyLimit int64) rate.Request {
				return rate.Request{Org: org, Key: key, PerSecond: 3, PerMinute: 100, Concurrency: 2, KeyPerMinute: keyLimit, Now: time.Now()}
			}
			take := func(r rate.Request) rate.Result {
				res, err := s.Take(context.Background(), r)
				require.NoError(t, err)
				return res
			}
			a := take(req("key_a", 1))
			require.Equal(t, rate.Scope(""), a.Refused)
			assert.NotZero(t, a.Slot)
			assert.Equal(t, int64(2), a.Second.Remaining)
			assert.InDelta(t, float64(333*time.Millisecond), float64(a.Second.Reset), float64(5*time.Millisecond))
			assert.Equal(t, int64(99), a.Minute.Remaining)
			assert.Equal(t, int64(0), a.Key.Remaining)
			assert.Equal(t, int64(1), a.InFlight)

			k := take(req("key_a", 1))
			assert.Equal(t, rate.KeyPerMinute, k.Refused, "the key's own quota")
			assert.Zero(t, k.Slot)
			assert.InDelta(t, float64(time.Minute), float64(k.Wait), float64(2*time.Second), "until its request leaves the minute")
			if name == "redis" {
				// The bucket as it is, this request not counted in it.
				// rate.Memory answers here as if it were counted: one
				// token less and one interval more.
				assert.Equal(t, int64(2), k.Second.Remaining, "X-RateLimit-Remaining of a 429 of another limit")
				assert.LessOrEqual(t, k.Second.Reset, a.Second.Reset, "full again when the first token is back")
				assert.Positive(t, k.Second.Reset)
			}

			b := take(req("key_b", 0))
			require.Equal(t, rate.Scope(""), b.Refused)
			assert.Equal(t, int64(2), b.InFlight)
			assert.Equal(t, int64(1), b.Second.Remaining, "the refused request took no token")

			f := take(req("key_b", 0))
			assert.Equal(t, rate.InFlight, f.Refused, "two in flight")
			assert.Equal(t, time.Second, f.Wait)
			assert.Equal(t, int64(2), f.InFlight)
			assert.Equal(t, int64(98), f.Minute.Remaining)
			if name == "redis" {
				assert.Equal(t, int64(1), f.Second.Remaining)
			}

			s.Release(org, b.Slot)
			s.Release(org, b.Slot) // given back already: ignored
			s.Release(org, 1<<60)  // never held: ignored
			c := take(req("key_b", 0))
			require.Equal(t, rate.Scope(""), c.Refused, "a slot given back is free at once")
			assert.Equal(t, int64(0), c.Second.Remaining)

			s.Release(org, a.Slot)
			r := take(req("key_b", 0))
			assert.Equal(t, rate.PerSecond, r.Refused, "the bucket's three are spent")
			assert.Greater(t, r.Wait, time.Duration(0))
			assert.LessOrEqual(t, r.Wait, 334*time.Millisecond)
			assert.Equal(t, int64(1), r.InFlight)
			s.Release(org, c.Slot)
		})
	}
}

// TestQuotaWithoutExpiryHeals is ulule issue #233 for the new keys: the
// organization's hash lost its expiry and holds a second far over the
// quota. The stuck second still leaves the window on time and is deleted,
// the quota slides on, and the next request counted gives the hash an
// expiry again.
func TestQuotaWithoutExpiryHeals(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	keys, org, k := newOrgAndKey(t, manage.OrgSpec{RatePerSecond: 1000, RatePerMinute: 5, Concurrency: 100})
	client := newClient(t, opts)
	in := newInstance(t, keys, client, testPrefix(t, opts), setup{})
	ctx := context.Background()
	require.Equal(t, http.StatusOK, in.call(k.Key).Code)
	hash := in.prefix + ":{" + org.ID + "}"

	// Early in a second of Redis's clock, so that the call below comes
	// within the same one.
	var now time.Time
	require.Eventually(t, func() bool {
		var err error
		now, err = client.Time(ctx).Result()
		return err == nil && now.Nanosecond() < 300*int(time.Millisecond)
	}, 2*time.Second, 10*time.Millisecond)
	stuck := strconv.FormatInt(now.Unix()-59, 10) // leaves the window at the next second
	require.NoError(t, client.HSet(ctx, hash, stuck, 1000).Err())
	require.NoError(t, client.HIncrBy(ctx, hash, "sum", 1000).Err()) // the quota's running count
	require.NoError(t, client.Persist(ctx, hash).Err())
	ttl, err := client.PTTL(ctx, hash).Result()
	require.NoError(t, err)
	require.Equal(t, time.Duration(-1), ttl, "the hash has no expiry")

	w := in.call(k.Key)
	require.Equal(t, http.StatusTooManyRequests, w.Code)
	assert.Equal(t, "rpm", w.Header().Get("X-RateLimit-Scope"))
	assert.Equal(t, "1", w.Header().Get("Retry-After"), "the stuck second leaves within a second")

	var healed time.Time
	require.Eventually(t, func() bool {
		healed = time.Now()
		return in.call(k.Key).Code == http.StatusOK
	}, 3*time.Second, 20*time.Millisecond, "the quota slides past the stuck second")
	t.Logf("served again %v after the stuck second was written", healed.Sub(now).Round(time.Millisecond))
	exists, err := client.HExists(ctx, hash, stuck).Result()
	require.NoError(t, err)
	assert.False(t, exists, "the stale second is deleted")
	ttl, err = client.PTTL(ctx, hash).Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, time.Duration(0), "the hash expires again")
	assert.LessOrEqual(t, ttl, 61*time.Second)
}

func TestRedisOutage(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	for _, failClosed := range []bool{false, true} {
		t.Run(fmt.Sprintf("failClosed=%v", failClosed), func(t *testing.T) {
			t.Parallel()
			keys, _, k := newOrgAndKey(t, manage.OrgSpec{})
			proxy := testenv.NewProxy(t, opts.Addr)
			po := *opts
			po.Addr = proxy.Addr()
			po.MaxRetries = -1
			po.DialTimeout = 200 * time.Millisecond
			client := newClient(t, &po)
			logs := &countingHandler{}
			in := newInstance(t, keys, client, testPrefix(t, opts), setup{failClosed: failClosed, logger: slog.New(logs)})

			require.Eventually(t, func() bool { return in.call(k.Key).Header().Get("X-RateLimit-Limit") != "" },
				5*time.Second, 20*time.Millisecond, "counting before the outage")
			proxy.Cut()
			cut := time.Now()
			for range 20 {
				w := in.call(k.Key)
				if failClosed {
					require.Equal(t, http.StatusServiceUnavailable, w.Code)
					assert.Contains(t, w.Body.String(), `"service_unavailable"`)
				} else {
					// The free plan's one request a second would refuse
					// these, were Redis counting.
					require.Equal(t, http.StatusOK, w.Code)
					assert.Empty(t, w.Header().Get("X-RateLimit-Remaining"))
					assert.Empty(t, w.Header().Get("X-RateLimit-Concurrency-Limit"))
				}
			}
			if failClosed {
				assert.Zero(t, logs.n.Load(), "a 503 is the answer, not a fail-open log record")
			} else {
				// At most once a second: once, unless the 20 calls took
				// over a second.
				assert.Positive(t, logs.n.Load(), "the outage is logged")
				assert.LessOrEqual(t, logs.n.Load(), 1+int64(time.Since(cut)/time.Second), "20 failures flood the log")
			}
			proxy.Restore()
			require.Eventually(t, func() bool {
				w := in.call(k.Key)
				return w.Header().Get("X-RateLimit-Limit") == "1"
			}, 5*time.Second, 50*time.Millisecond, "recovers without a restart")
		})
	}
}

func TestNewRejectsAnUnreachableRedis(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer client.Close()
	_, err := redislimit.New(context.Background(), client, redislimit.Options{})
	assert.ErrorContains(t, err, "Redis does not answer")
	_, err = redislimit.New(context.Background(), nil, redislimit.Options{})
	var ce *keyward.ConfigError
	assert.ErrorAs(t, err, &ce)
	var none *redis.Client // a typed nil: refused, not a panic in Ping
	_, err = redislimit.New(context.Background(), none, redislimit.Options{})
	assert.ErrorAs(t, err, &ce)
	var cluster *redis.ClusterClient // any client type's typed nil
	_, err = redislimit.New(context.Background(), cluster, redislimit.Options{})
	assert.ErrorAs(t, err, &ce)
	_, err = redislimit.New(context.Background(), client, redislimit.Options{SlotTTL: 50 * time.Millisecond})
	assert.ErrorContains(t, err, "SlotTTL is below 100ms")
	_, err = redislimit.New(context.Background(), client, redislimit.Options{SlotTTL: -time.Second})
	assert.ErrorAs(t, err, &ce)
}

// TestRefusalLeavesNoKeyWithoutExpiry: a request refused while its
// organization's hash has expired (its one slot held by a request running
// for over a minute) writes the hash again; that hash expires like the
// others, or an organization that stops calling leaves it forever.
func TestRefusalLeavesNoKeyWithoutExpiry(t *testing.T) {
	t.Parallel()
	r := newStoreRig(t, redislimit.Options{})
	ctx, store, client, prefix, org := context.Background(), r.store, r.client, r.prefix, r.org
	req := rate.Request{Org: org, Key: "key_a", PerSecond: 10, PerMinute: 600, Concurrency: 1}
	held, err := store.Take(ctx, req)
	require.NoError(t, err)
	require.Equal(t, rate.Scope(""), held.Refused)
	defer store.Release(org, held.Slot)
	hash := prefix + ":{" + org + "}"
	require.NoError(t, client.Del(ctx, hash).Err(), "a minute later, the hash has expired")

	res, err := store.Take(ctx, req)
	require.NoError(t, err)
	require.Equal(t, rate.InFlight, res.Refused)
	ttl, err := client.PTTL(ctx, hash).Result()
	require.NoError(t, err)
	if ttl != -2 { // written again: then with an expiry
		assert.Greater(t, ttl, time.Duration(0), "the organization's hash has no expiry")
	}
}

// TestPlanChangeAsMemory: an organization moves from 10 requests a second
// to 2 and back, on the Redis Store and on rate.Memory. Down, the tokens
// it lacks stay lacking, each at the new rate's interval (unscaled, the
// bucket would let the request through); up, the bucket is the new size at
// once.
func TestPlanChangeAsMemory(t *testing.T) {
	t.Parallel()
	for name, s := range redisAndMemory(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			org := "org_" + ids.New("")
			take := func(perSecond int64) rate.Result {
				res, err := s.Take(context.Background(), rate.Request{Org: org, Key: "key_a", PerSecond: perSecond,
					PerMinute: 1000, Concurrency: 100, Now: time.Now()})
				require.NoError(t, err)
				s.Release(org, res.Slot)
				return res
			}
			for range 8 {
				require.Equal(t, rate.Scope(""), take(10).Refused)
			}
			down := take(2)
			require.Equal(t, rate.PerSecond, down.Refused, "the tokens lacking at 10/s, each 500 ms at 2/s")
			// 8 lacking, fewer if some came back meanwhile on a slow machine.
			const interval = 500 * time.Millisecond
			lacking := (down.Second.Reset + interval/2) / interval
			assert.InDelta(t, float64(lacking*interval), float64(down.Second.Reset), float64(time.Millisecond), "whole intervals of the new rate")
			assert.GreaterOrEqual(t, lacking, time.Duration(2))
			assert.LessOrEqual(t, lacking, time.Duration(8))
			assert.InDelta(t, float64(down.Second.Reset-interval), float64(down.Wait), float64(time.Millisecond), "until one token is back")
			up := take(10)
			require.Equal(t, rate.Scope(""), up.Refused, "back at 10/s")
			assert.Equal(t, int64(9-lacking), up.Second.Remaining, "as many lacking of 10, this request one more")
		})
	}
}

// TestTakeAfterScriptFlush: Redis forgot the script (restarted, or SCRIPT
// FLUSH): the next Take sends it again and decides as usual.
func TestTakeAfterScriptFlush(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	client := newClient(t, opts)
	ctx := context.Background()
	store, err := redislimit.New(ctx, client, redislimit.Options{Prefix: testPrefix(t, opts)})
	require.NoError(t, err)
	require.NoError(t, client.ScriptFlush(ctx).Err())
	org := "org_" + ids.New("")
	res, err := store.Take(ctx, rate.Request{Org: org, Key: "key_a", PerSecond: 1, PerMinute: 10, Concurrency: 1})
	require.NoError(t, err)
	assert.Equal(t, rate.Scope(""), res.Refused)
	assert.Equal(t, int64(9), res.Minute.Remaining)
	store.Release(org, res.Slot)
}

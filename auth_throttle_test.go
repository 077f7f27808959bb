package keyward_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/rate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func (f *fixture) serve(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, r)
	return w
}

func fromClient(addr, key string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v1/transactions", nil)
	r.RemoteAddr = addr
	if key != "" {
		r.Header.Set("X-API-Key", key)
	}
	return r
}

// 10,000 invented keys from one client cost at most its budget in store
// lookups; a valid key, from another client or (cached) from the same one,
// is never slowed.
func TestFailedAuthThrottle(t *testing.T) {
	t.Parallel()
	throttle := &rate.FailedAuth{PerMinute: 60, Burst: 10}
	f := newFixture(t, func(c *keyward.AuthConfig) { c.FailedAuth = throttle })
	valid := f.newKey(t)
	format, err := keyward.NewKeyFormat("triq_")
	require.NoError(t, err)

	// The valid key is used once from the attacker's address, so the
	// cache holds it.
	w := f.serve(fromClient("198.51.100.7:1000", valid.Key))
	require.Equal(t, http.StatusOK, w.Code)
	lookups := f.probe.calls.Load()

	codes := map[int]int{}
	for i := range 10_000 {
		if i%1000 == 999 {
			f.now.Advance(time.Second) // ten seconds in all: ten more tries
		}
		invented, err := format.Generate()
		require.NoError(t, err)
		codes[f.serve(fromClient("198.51.100.7:1000", invented)).Code]++
	}
	spent := f.probe.calls.Load() - lookups
	assert.LessOrEqual(t, spent, int64(10+10), "store lookups: the burst, then one a second")
	assert.GreaterOrEqual(t, spent, int64(10))
	assert.Equal(t, int(spent), codes[http.StatusUnauthorized])
	assert.Equal(t, 10_000-int(spent), codes[http.StatusTooManyRequests])

	w = f.serve(fromClient("198.51.100.7:1000", "nonsense"))
	require.Equal(t, http.StatusTooManyRequests, w.Code, "a malformed key too, before anything")
	env := decodeEnvelope(t, w)
	assert.Equal(t, "rate_limited", env.Error.Code)
	assert.Equal(t, "auth", env.Error.Details["scope"])
	assert.Equal(t, "auth", w.Header().Get("X-RateLimit-Scope"))
	assert.Equal(t, "1", w.Header().Get("Retry-After"))
	assert.Contains(t, env.Error.Message, "Too many requests with a missing or invalid API key")
	assert.Equal(t, http.StatusTooManyRequests, f.serve(fromClient("198.51.100.7:1000", "")).Code, "and a missing one")

	assert.Equal(t, http.StatusOK, f.serve(fromClient("203.0.113.9:5", valid.Key)).Code, "another client is not affected")
	assert.Equal(t, http.StatusOK, f.serve(fromClient("198.51.100.7:1000", valid.Key)).Code, "a valid key the cache holds is never slowed")
	f.cache.InvalidateAll()
	assert.Equal(t, http.StatusOK, f.serve(fromClient("198.51.100.7:1000", valid.Key)).Code,
		"a key the cache no longer holds, found recently, is looked up")
	fresh := f.newKey(t)
	assert.Equal(t, http.StatusTooManyRequests, f.serve(fromClient("198.51.100.7:1000", fresh.Key)).Code,
		"a key never found would cost a lookup like an invented one: over budget, the client waits (documented)")

	f.now.Advance(time.Minute)
	assert.Equal(t, http.StatusOK, f.serve(fromClient("198.51.100.7:1000", fresh.Key)).Code, "the budget refills")
}

func TestFailedAuthOutOfRangeIsAConfigError(t *testing.T) {
	t.Parallel()
	for _, f := range []*rate.FailedAuth{{PerMinute: -5}, {ForwardedHeader: "X-Real-IP"}, {IPv6Prefix: 129}, {IPv6Prefix: -1}} {
		_, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: keyStoreFunc(nil), Prefix: "triq_", FailedAuth: f})
		var ce *keyward.ConfigError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, "AuthConfig.FailedAuth", ce.Field)
	}
}

func TestFailedAuthClientBehindTrustedProxies(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	xff := &rate.FailedAuth{TrustedProxies: trusted}
	rfc := &rate.FailedAuth{TrustedProxies: trusted, ForwardedHeader: "forwarded"} // any case
	for _, tc := range []struct {
		f      *rate.FailedAuth
		remote string
		header map[string]string
		want   string
	}{
		{xff, "198.51.100.7:1000", nil, "198.51.100.7"},
		{xff, "198.51.100.7:1000", map[string]string{"X-Forwarded-For": "1.2.3.4"}, "198.51.100.7"}, // not a trusted proxy: never read
		{xff, "10.0.0.2:80", map[string]string{"X-Forwarded-For": "6.6.6.6, 203.0.113.9"}, "203.0.113.9"},
		{xff, "10.0.0.2:80", map[string]string{"X-Forwarded-For": "203.0.113.9, 10.1.1.1"}, "203.0.113.9"}, // two proxies
		{rfc, "10.0.0.2:80", map[string]string{"Forwarded": `for=6.6.6.6, for="[2001:db8::1]:4711";proto=https, for=192.0.2.60`}, "192.0.2.60"},
		{rfc, "[2001:db8::5]:443", map[string]string{"Forwarded": `for="[2001:db9::1]:4711"`}, "2001:db9::/64"},
		// IPv6 clients by network: a /64, or IPv6Prefix bits; an IPv4
		// address mapped to IPv6 is that IPv4 address.
		{xff, "[2001:db9:0:7:abcd::1]:443", nil, "2001:db9:0:7::/64"},
		{&rate.FailedAuth{IPv6Prefix: 128}, "[2001:db9:0:7:abcd::1]:443", nil, "2001:db9:0:7:abcd::1/128"},
		{&rate.FailedAuth{IPv6Prefix: 48}, "[2001:db9:0:7:abcd::1]:443", nil, "2001:db9::/48"},
		{xff, "[::ffff:198.51.100.7]:443", nil, "198.51.100.7"},
		{xff, "10.0.0.2:80", nil, "10.0.0.2"},
		{xff, "10.0.0.2:80", map[string]string{"X-Forwarded-For": "x" + string(make([]byte, 500))}, ("x" + string(make([]byte, 500)))[:64]},
		// A proxy appends to its header and passes the other on as the
		// client sent it: only the configured one is read.
		{xff, "10.0.0.2:80", map[string]string{"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=198.51.100.99"}, "203.0.113.9"},
		{rfc, "10.0.0.2:80", map[string]string{"Forwarded": "for=203.0.113.9", "X-Forwarded-For": "198.51.100.99"}, "203.0.113.9"},
		{rfc, "10.0.0.2:80", map[string]string{"X-Forwarded-For": "198.51.100.99"}, "10.0.0.2"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tc.remote
		for k, v := range tc.header {
			r.Header.Set(k, v)
		}
		assert.Equal(t, tc.want, tc.f.Client(r), "%s %s %v", tc.f.ForwardedHeader, tc.remote, tc.header)
	}
}

// shortLivedChain is RequireAPIKey with a FailedAuth throttle over a Cache
// whose entries live a few milliseconds, so that a test sees every cached
// answer age out without waiting for the default TTLs.
func shortLivedChain(t *testing.T, mutate ...func(*keyward.AuthConfig)) *fixture {
	t.Helper()
	f := newFixture(t)
	cache, err := keyward.NewCache(f.probe, keyward.CacheConfig{TTL: 2 * time.Millisecond, NegativeTTL: time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(cache.Close)
	f.store.Watch(cache)
	f.cache = cache
	cfg := keyward.AuthConfig{Keys: cache, Prefix: "triq_", Errors: f.errors, Now: f.now.Now,
		FailedAuth: &rate.FailedAuth{}}
	for _, m := range mutate {
		m(&cfg)
	}
	f.auth, err = keyward.RequireAPIKey(cfg)
	require.NoError(t, err)
	f.handler = f.auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok"))
	}))
	return f
}

// A victim sharing its address with an attacker (behind a proxy that is
// not trusted, every client shares one) is never refused by the throttle:
// its key, found valid recently, is looked up even while the address is
// over budget, long after the cache forgot it. Invented keys still wait.
func TestFailedAuthNeverRefusesAValidKey(t *testing.T) {
	t.Parallel()
	for _, attackPerSecond := range []int{5, 50} {
		t.Run(strconv.Itoa(attackPerSecond)+" invented keys a second", func(t *testing.T) {
			t.Parallel()
			f := shortLivedChain(t)
			victim := f.newKey(t)
			format, err := keyward.NewKeyFormat("triq_")
			require.NoError(t, err)
			const addr = "198.51.100.7:"
			// The victim's key is in use: found by the store once, a while ago.
			require.Equal(t, http.StatusOK, f.serve(fromClient(addr+"1", victim.Key)).Code)
			f.now.Advance(time.Hour)

			victimCodes, attackCodes := map[int]int{}, map[int]int{}
			victimLookups := int64(0)
			for range 60 { // a minute: the cache forgets every answer each second
				time.Sleep(15 * time.Millisecond) // longer than both of the cache's TTLs
				for i := range attackPerSecond {
					invented, err := format.Generate()
					require.NoError(t, err)
					attackCodes[f.serve(fromClient(addr+"3", invented)).Code]++
					if i == 0 { // the victim's second begins with the one try the budget gained
						before := f.probe.calls.Load()
						victimCodes[f.serve(fromClient(addr+"2", victim.Key)).Code]++
						victimLookups += f.probe.calls.Load() - before
					}
					f.now.Advance(time.Second / time.Duration(attackPerSecond))
				}
			}
			assert.Equal(t, map[int]int{http.StatusOK: 60}, victimCodes, "the victim: never 429 auth")
			assert.Greater(t, victimLookups, int64(30), "the victim's key was not served from the cache: the store was asked")
			assert.Greater(t, attackCodes[http.StatusTooManyRequests], attackPerSecond*60*2/3, "the attacker is throttled: %v", attackCodes)
			assert.LessOrEqual(t, attackCodes[http.StatusUnauthorized], 10+60, "the burst, then one a second")
		})
	}
}

// With Bearer on, a throttled client's key is read from where it was
// sent, as on every other path: a key that would pass in X-API-Key passes
// as Authorization: Bearer.
func TestFailedAuthReadsBearerKeys(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *keyward.AuthConfig) { c.Bearer = true; c.FailedAuth = &rate.FailedAuth{} })
	k := f.newKey(t)
	const addr = "198.51.100.7:1"
	require.Equal(t, http.StatusOK, f.serve(fromClient(addr, k.Key)).Code)
	for range 20 {
		f.serve(fromClient(addr, "triq_nonsense"))
	}
	require.Equal(t, http.StatusTooManyRequests, f.serve(fromClient(addr, "triq_nonsense")).Code, "over budget")
	bearer := fromClient(addr, "")
	bearer.Header.Set("Authorization", "Bearer "+k.Key)
	assert.Equal(t, http.StatusOK, f.serve(bearer).Code, "Authorization: Bearer")
	assert.Equal(t, http.StatusOK, f.serve(fromClient(addr, k.Key)).Code, "X-API-Key")
	both := fromClient(addr, k.Key)
	both.Header.Set("Authorization", "Bearer "+k.Key)
	assert.Equal(t, http.StatusTooManyRequests, f.serve(both).Code, "two keys are no key: over budget, it waits")
}

// The addresses of one IPv6 /64, which one subscriber typically holds,
// share one budget: 60 of them sending invented keys are throttled as one
// client. Another /64 is another client.
func TestFailedAuthGroupsIPv6By64(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *keyward.AuthConfig) { c.FailedAuth = &rate.FailedAuth{} })
	format, err := keyward.NewKeyFormat("triq_")
	require.NoError(t, err)
	codes := map[int]int{}
	for i := range 60 {
		invented, err := format.Generate()
		require.NoError(t, err)
		codes[f.serve(fromClient(fmt.Sprintf("[2001:db8:1:2:%x::%x]:443", i, i+1), invented)).Code]++
	}
	assert.Equal(t, map[int]int{http.StatusUnauthorized: 10, http.StatusTooManyRequests: 50}, codes)
	invented, err := format.Generate()
	require.NoError(t, err)
	assert.Equal(t, http.StatusUnauthorized, f.serve(fromClient("[2001:db8:1:3::1]:443", invented)).Code, "the next /64")
}

// A key is known for a week after the store last found it: then, over
// budget, its client waits as for any key.
func TestFailedAuthKnowsKeysForAWeek(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *keyward.AuthConfig) { c.FailedAuth = &rate.FailedAuth{} })
	k := f.newKey(t)
	const addr = "198.51.100.7:1"
	overBudget := func() {
		t.Helper()
		f.cache.InvalidateAll() // the cache forgot the key
		for range 20 {
			f.serve(fromClient(addr, "triq_nonsense"))
		}
		require.Equal(t, http.StatusTooManyRequests, f.serve(fromClient(addr, "triq_nonsense")).Code)
	}
	require.Equal(t, http.StatusOK, f.serve(fromClient(addr, k.Key)).Code)
	f.now.Advance(7*24*time.Hour - time.Minute)
	overBudget()
	assert.Equal(t, http.StatusOK, f.serve(fromClient(addr, k.Key)).Code, "found within the week: looked up, and found again")
	f.now.Advance(7*24*time.Hour + time.Minute)
	overBudget()
	assert.Equal(t, http.StatusTooManyRequests, f.serve(fromClient(addr, k.Key)).Code, "not found for over a week: it waits")
}

// restarted stands for a process started anew over the same store, with
// a FailedAuth throttle of its own: the attacker sends 20 invented keys
// from addr, so that it is over budget before any key is presented there.
func (f *fixture) restarted(t *testing.T, store keyward.KeyStore, addr string) func(key string) int {
	t.Helper()
	cache, err := keyward.NewCache(store, keyward.CacheConfig{})
	require.NoError(t, err)
	t.Cleanup(cache.Close)
	a, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_", Now: f.now.Now, FailedAuth: &rate.FailedAuth{}})
	require.NoError(t, err)
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	serve := func(key string) int {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, fromClient(addr, key))
		return w.Code
	}
	for range 20 {
		serve("triq_nonsense")
	}
	require.Equal(t, http.StatusTooManyRequests, serve("triq_nonsense"), "the address is over budget")
	return serve
}

// A process started while an attacker keeps the address over budget (a
// deploy, a crash, a new instance) knows from its store which keys are in
// use, and looks them up: the victim gets through every time. A key never
// used, and one revoked since, still wait. A store that cannot list the
// keys in use leaves the new process knowing none (documented).
func TestFailedAuthKnowsKeysInUseAfterARestart(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *keyward.AuthConfig) { c.FailedAuth = &rate.FailedAuth{} })
	victim, unused, revoked := f.newKey(t), f.newKey(t), f.newKey(t)
	const addr = "198.51.100.7:1"
	require.Equal(t, http.StatusOK, f.serve(fromClient(addr, victim.Key)).Code)
	require.Equal(t, http.StatusOK, f.serve(fromClient(addr, revoked.Key)).Code)
	f.now.Advance(6 * 24 * time.Hour)
	require.NoError(t, f.store.RevokeKey(context.Background(), revoked.Record.ID))

	serve := f.restarted(t, f.store, addr)
	codes := map[int]int{}
	for range 10 {
		codes[serve(victim.Key)]++
		serve("triq_nonsense") // the attacker keeps going
	}
	assert.Equal(t, map[int]int{http.StatusOK: 10}, codes, "the victim, after the restart")
	assert.Equal(t, http.StatusTooManyRequests, serve(unused.Key), "a key never used waits")
	assert.Equal(t, http.StatusTooManyRequests, serve(revoked.Key), "a revoked key waits")

	hidden := f.restarted(t, f.probe, addr) // a KeyStore that is not a RecentKeyLister
	assert.Equal(t, http.StatusTooManyRequests, hidden(victim.Key), "without a RecentKeyLister, a new process knows no key")
}

// A key found revoked leaves the set of keys known: once the cache has
// forgotten it, its client, over budget, waits as for any key.
func TestFailedAuthForgetsARevokedKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *keyward.AuthConfig) { c.FailedAuth = &rate.FailedAuth{} })
	k := f.newKey(t)
	const addr = "198.51.100.7:1"
	require.Equal(t, http.StatusOK, f.serve(fromClient(addr, k.Key)).Code)
	for range 20 {
		f.serve(fromClient(addr, "triq_nonsense"))
	}
	require.NoError(t, f.store.RevokeKey(context.Background(), k.Record.ID))
	assert.Equal(t, http.StatusUnauthorized, f.serve(fromClient(addr, k.Key)).Code, "known: looked up, and found revoked")
	f.cache.InvalidateAll()
	assert.Equal(t, http.StatusTooManyRequests, f.serve(fromClient(addr, k.Key)).Code, "no longer known")
}

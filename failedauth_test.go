package keyward_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
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
	assert.Equal(t, http.StatusTooManyRequests, f.serve(fromClient("198.51.100.7:1000", valid.Key)).Code,
		"a key the cache does not hold would cost a lookup: over budget, the client waits (documented)")

	f.now.Advance(time.Minute)
	assert.Equal(t, http.StatusOK, f.serve(fromClient("198.51.100.7:1000", valid.Key)).Code, "the budget refills")
}

func TestFailedAuthOutOfRangeIsAConfigError(t *testing.T) {
	t.Parallel()
	for _, f := range []*rate.FailedAuth{{PerMinute: -5}, {ForwardedHeader: "X-Real-IP"}} {
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
		{rfc, "[2001:db8::5]:443", map[string]string{"Forwarded": `for="[2001:db9::1]:4711"`}, "2001:db9::1"},
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

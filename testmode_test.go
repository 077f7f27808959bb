package keyward_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/rate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Test keys look different (triq_test_…), are valid only as test keys,
// and neither count against the organization's live limits nor spend its
// live credits: they have a budget of their own, with the same limits.
func TestTestKeysHaveTheirOwnBudget(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 3, false) // 3 live credits, 60 requests a minute
	test := f.newKey(t, func(k *manage.KeySpec) { k.Environment = keyward.EnvTest })
	require.True(t, strings.HasPrefix(test.Key, "triq_test_"), test.Key)
	format, err := keyward.NewKeyFormat("triq_")
	require.NoError(t, err)
	assert.True(t, format.Valid(test.Key))
	assert.True(t, format.Valid(f.key.Key))
	assert.False(t, format.Valid("triq_"+test.Key[len("triq_test_"):]), "a test key's body is no live key")
	assert.Equal(t, "triq_test_"+test.Key[10:14]+"…"+test.Key[len(test.Key)-4:], format.Hint(test.Key))

	limiter, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{Store: new(rate.Memory), Now: f.now.Now})
	require.NoError(t, err)
	h := f.auth.Middleware(limiter.Middleware(f.charger.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))))
	call := func(key string) int {
		f.now.Advance(time.Second) // the free plan's one request a second
		r := f.request(context.Background(), "", nil)
		r.Header.Set("X-API-Key", key)
		w, _ := serve(h, r)
		return w.Code
	}
	for range 3 {
		require.Equal(t, http.StatusOK, call(f.key.Key))
	}
	require.Equal(t, http.StatusPaymentRequired, call(f.key.Key), "the live credits are spent")
	for range 3 {
		require.Equal(t, http.StatusOK, call(test.Key), "the test budget is untouched by live calls")
	}
	require.Equal(t, http.StatusPaymentRequired, call(test.Key), "and has the same allocation")
	live := f.balance(t)
	assert.Equal(t, int64(3), live.Spent, "test calls spent no live credit")
	testKey, err := f.store.LookupKey(context.Background(), keyward.Hash(test.Key))
	require.NoError(t, err)
	tb, err := f.ledger.Balance(context.Background(), testKey.Account())
	require.NoError(t, err)
	assert.Equal(t, int64(3), tb.Spent)
	assert.Equal(t, f.org.ID+":test", testKey.Account().OrgID)
}

// Rate limits count test keys apart too: a live request leaves the test
// budget whole.
func TestTestKeysCountApart(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	live := f.newKey(t)
	test := f.newKey(t, func(k *manage.KeySpec) { k.Environment = keyward.EnvTest })
	limiter, err := keyward.RateLimitByOrg(keyward.RateLimitConfig{Store: new(rate.Memory), Now: f.now.Now})
	require.NoError(t, err)
	h := f.auth.Middleware(limiter.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	f.handler = h
	require.Equal(t, http.StatusOK, f.do(withKey(live.Key)).Code)
	require.Equal(t, http.StatusOK, f.do(withKey(live.Key)).Code)
	require.Equal(t, http.StatusTooManyRequests, f.do(withKey(live.Key)).Code, "free: a burst of 2")
	w := f.do(withKey(test.Key))
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, `"rps";r=1;t=1, "rpm";r=59;t=60, "concurrency";r=1`, w.Header().Get("RateLimit"), "a whole budget of its own")
}

// A test key made before test keys had their own prefix (live prefix, test
// record) keeps working, in the test budget; a test-prefixed key whose
// record says live is refused.
func TestTestKeysAndTheirRecords(t *testing.T) {
	t.Parallel()
	format, err := keyward.NewKeyFormat("triq_")
	require.NoError(t, err)
	legacy, err := format.Generate()
	require.NoError(t, err)
	test, err := format.GenerateFor(keyward.EnvTest)
	require.NoError(t, err)
	records := map[keyward.KeyHash]*keyward.KeyRecord{
		keyward.Hash(legacy): {ID: "key_legacy", Hash: keyward.Hash(legacy), Environment: keyward.EnvTest, Org: keyward.Organization{ID: "org_l"}},
		keyward.Hash(test):   {ID: "key_wrong", Hash: keyward.Hash(test), Environment: keyward.EnvLive, Org: keyward.Organization{ID: "org_w"}},
	}
	a, err := keyward.RequireAPIKey(keyward.AuthConfig{Prefix: "triq_", Keys: keyStoreFunc(func(_ context.Context, h keyward.KeyHash) (*keyward.KeyRecord, error) {
		return records[h], nil
	})})
	require.NoError(t, err)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-API-Key", legacy)
	rec, err := a.Authenticate(r)
	require.NoError(t, err)
	assert.Equal(t, "org_l:test", rec.Account().OrgID)
	r.Header.Set("X-API-Key", test)
	_, err = a.Authenticate(r)
	assert.ErrorIs(t, err, &keyward.Error{Code: keyward.CodeAuthentication, Reason: keyward.ReasonInvalidAPIKey})
}

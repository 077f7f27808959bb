package keyward_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/credit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A call whose deadline passed while its handler ran still has its client
// waiting: a handler that wrote nothing answered 200, and is charged (only
// a cancelled request, whose client went away, is released).
func TestDeadlinePassedCallIsCharged(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 10, false)
	h := f.chain(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // the deadline passes; nothing is written
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	w, _ := serve(h, f.request(ctx, "", nil))
	assert.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, int64(1), f.balance(t).Spent, "a call that answered 200 is charged")
}

// recordingLedger is a real ledger that notes the idempotency keys it is
// given.
type recordingLedger struct {
	credit.Ledger
	mu   sync.Mutex
	keys []string
}

func (l *recordingLedger) Reserve(ctx context.Context, req credit.ReserveRequest) (credit.Reservation, error) {
	l.mu.Lock()
	l.keys = append(l.keys, req.IdempotencyKey)
	l.mu.Unlock()
	return l.Ledger.Reserve(ctx, req)
}

// An idempotency key reaches the ledger as its SHA-256: a client that
// sends its API key as one never has it stored. Retries still match.
func TestIdempotencyKeyIsStoredHashed(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 10, false)
	rec := &recordingLedger{Ledger: f.ledger}
	c, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: rec})
	require.NoError(t, err)
	h := f.auth.Middleware(c.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	secret := f.key.Key[:41] // a whole key, as an idempotency key
	for range 2 {
		w, _ := serve(h, f.request(context.Background(), "", http.Header{"Idempotency-Key": {secret}}))
		require.Equal(t, http.StatusOK, w.Code)
	}
	assert.Equal(t, int64(1), f.balance(t).Spent, "the retry was not charged again")
	require.Len(t, rec.keys, 2)
	for _, k := range rec.keys {
		assert.NotContains(t, k, secret[5:20])
		assert.Len(t, k, 64)
	}
}

// A cost out of credit's range is the server's mistake (500), not an
// outage (503) that clients would retry forever.
func TestCostOutOfRangeIsAMisconfiguration(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 10, true)
	for _, cost := range []int64{-1, credit.MaxCredits + 1} {
		c, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: f.ledger,
			CostFunc: func(*http.Request) (int64, error) { return cost, nil }})
		require.NoError(t, err)
		w, _ := serve(f.auth.Middleware(c.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			t.Error("served")
		}))), f.request(context.Background(), "", nil))
		assert.Equal(t, http.StatusInternalServerError, w.Code, "cost %d", cost)
	}
	h := f.chain(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.ErrorIs(t, keyward.SetCost(r.Context(), credit.MaxCredits+1), credit.ErrInvalidAmount)
	}))
	w, _ := serve(h, f.request(context.Background(), "", nil))
	assert.Equal(t, http.StatusOK, w.Code)
}

// Zero values of the exported decisions answer 500; none lets a request
// through or panics.
func TestZeroDecisionsAnswer500(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.newKey(t)
	rec, err := f.store.LookupKey(context.Background(), keyward.Hash(k.Key))
	require.NoError(t, err)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-API-Key", k.Key)
	r = keyward.AttachKey(r, rec)
	for name, mw := range map[string]func(http.Handler) http.Handler{
		"Authenticator":     new(keyward.Authenticator).Middleware,
		"PermissionChecker": new(keyward.PermissionChecker).Middleware,
		"Charger":           new(keyward.Charger).Middleware,
	} {
		w := httptest.NewRecorder()
		require.NotPanics(t, func() {
			mw(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Errorf("%s let a request through", name) })).ServeHTTP(w, r)
		}, name)
		assert.Equal(t, http.StatusInternalServerError, w.Code, name)
	}
	w := httptest.NewRecorder()
	new(keyward.RateLimiter).Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(w, r)
	assert.Equal(t, http.StatusOK, w.Code, "a zero RateLimiter counts in the process's counters")
	var ch keyward.Charge
	assert.ErrorIs(t, ch.Settle(200), keyward.ErrNoCharge)
	assert.ErrorIs(t, ch.SetCost(1), keyward.ErrNoCharge)
	_, err = new(keyward.RateLimiter).Allow(context.Background(), nil, time.Now())
	assert.Error(t, err)

	// A zero Charge runs next and settles nothing; a panic in next goes on.
	ran := false
	require.NotPanics(t, func() { ch.Run(func() { ran = true }, nil) })
	assert.True(t, ran)
	assert.PanicsWithValue(t, "boom", func() { ch.Run(func() { panic("boom") }, nil) })

	// A zero Cache answers a misconfiguration, directly and behind
	// RequireAPIKey, instead of crashing the process from the lookup's
	// goroutine.
	_, err = new(keyward.Cache).LookupKey(context.Background(), keyward.Hash(k.Key))
	var ke *keyward.Error
	require.ErrorAs(t, err, &ke)
	assert.Equal(t, http.StatusInternalServerError, ke.Status)
	a, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: new(keyward.Cache), Prefix: "triq_"})
	require.NoError(t, err)
	w = httptest.NewRecorder()
	a.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("served") })).ServeHTTP(w, r)
	assert.Equal(t, http.StatusServiceUnavailable, w.Code, "the key store's failure, as for any store")

	// An error with no status an error can have is written as a 500, not a
	// panic (0) or a success (200); a typed nil *Error too.
	var nilErr *keyward.Error
	for name, err := range map[string]error{"status 0": keyward.Validation(0, "x", nil),
		"status 200": keyward.Validation(http.StatusOK, "x", nil), "typed nil": nilErr} {
		w := httptest.NewRecorder()
		require.NotPanics(t, func() { new(keyward.ErrorWriter).WriteError(w, httptest.NewRequest(http.MethodGet, "/", nil), err) }, name)
		assert.Equal(t, http.StatusInternalServerError, w.Code, name)
		assert.Contains(t, w.Body.String(), `"code":"internal_error"`, name)
	}
}

// Requests that share one WithKey context share nothing else: each
// ChargeCredits call gets its own Charge, which its SetCost reaches.
func TestWithKeyContextIsNotShared(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 100, false)
	rec, err := f.store.LookupKey(context.Background(), keyward.Hash(f.key.Key))
	require.NoError(t, err)
	ctx := keyward.WithKey(context.Background(), rec)
	h := f.chargerFor(t, 1).Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int64(len(r.Header.Get("X-Batch")))
		require.NoError(t, keyward.SetCost(r.Context(), n))
		ch, ok := keyward.ChargeFromContext(r.Context())
		require.True(t, ok)
		assert.Equal(t, n, ch.Cost())
	}))
	var wg sync.WaitGroup
	for _, batch := range []string{"a", "bbb", "cc", "dddd"} {
		wg.Go(func() {
			r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/", nil)
			r.Header.Set("X-Batch", batch)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			assert.Equal(t, http.StatusOK, w.Code)
		})
	}
	wg.Wait()
	assert.Equal(t, int64(1+3+2+4), f.balance(t).Spent)
}

// A store that answers with the record of another key is a failing store
// (503), not an authentication.
func TestStoreAnsweringAnotherKeyIsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.newKey(t)
	other := f.newKey(t)
	wrong, err := f.store.LookupKey(context.Background(), keyward.Hash(other.Key))
	require.NoError(t, err)
	a, err := keyward.RequireAPIKey(keyward.AuthConfig{Prefix: "triq_",
		Keys: keyStoreFunc(func(context.Context, keyward.KeyHash) (*keyward.KeyRecord, error) { return wrong, nil })})
	require.NoError(t, err)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-API-Key", k.Key)
	_, err = a.Authenticate(r)
	assert.ErrorIs(t, err, &keyward.Error{Code: keyward.CodeServiceUnavailable})
	assert.False(t, strings.Contains(err.Error(), k.Key))
}

type keyStoreFunc func(context.Context, keyward.KeyHash) (*keyward.KeyRecord, error)

func (f keyStoreFunc) LookupKey(ctx context.Context, h keyward.KeyHash) (*keyward.KeyRecord, error) {
	return f(ctx, h)
}

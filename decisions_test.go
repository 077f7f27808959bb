package keyward_test

import (
	"context"
	"github.com/keyward/keyward/rate"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// RateLimiter.Check is the whole decision an adapter needs: what to set,
// and whether to serve or write an error.
func TestRateLimiterCheck(t *testing.T) {
	t.Parallel()
	keyed := func(l *limited, key string) *http.Request {
		t.Helper()
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("X-API-Key", key)
		k, err := l.auth.Authenticate(r)
		require.NoError(t, err)
		return keyward.AttachKey(r, k)
	}
	t.Run("allowed", func(t *testing.T) {
		t.Parallel()
		l := newLimited(t)
		r := keyed(l, l.newKey(t).Key)
		d, err := l.limiter.Check(r)
		require.NoError(t, err)
		assert.True(t, d.Allowed)
		h := http.Header{}
		d.WriteHeaders(h)
		assert.Equal(t, "1", h.Get("X-RateLimit-Remaining"), "free: a burst of 2")
		assert.Equal(t, "1", h.Get("X-RateLimit-Concurrency-Remaining"))
		d.Done()
		d.Done() // twice: nothing more
		d, err = l.limiter.Allow(context.Background(), mustKey(r), l.now.Now().Add(time.Minute))
		require.NoError(t, err)
		assert.Equal(t, int64(1), d.InFlight, "the slot came back, once")
		d.Done()
	})
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		l := newLimited(t)
		r := keyed(l, l.newKey(t).Key)
		for range 2 { // free: a burst of 2
			ok, err := l.limiter.Check(r)
			require.NoError(t, err)
			defer ok.Done()
		}
		d, err := l.limiter.Check(r)
		assert.ErrorIs(t, err, &keyward.Error{Code: keyward.CodeRateLimited})
		assert.False(t, d.Allowed)
		assert.Equal(t, rate.PerSecond, d.Scope)
		d.Done() // a refused decision holds nothing
		h := http.Header{}
		d.WriteHeaders(h)
		assert.Equal(t, "0", h.Get("X-RateLimit-Remaining"), "a 429 carries the headers too")
	})
	t.Run("fail open serves without headers", func(t *testing.T) {
		t.Parallel()
		l := newLimited(t)
		r := keyed(l, l.newKey(t).Key)
		l.counters.fail.Store(true)
		d, err := l.limiter.Check(r)
		require.NoError(t, err)
		assert.True(t, d.Allowed)
		h := http.Header{}
		d.WriteHeaders(h)
		assert.Empty(t, h)
	})
	t.Run("fail closed", func(t *testing.T) {
		t.Parallel()
		l := newLimited(t, func(c *keyward.RateLimitConfig) { c.FailClosed = true })
		r := keyed(l, l.newKey(t).Key)
		l.counters.fail.Store(true)
		_, err := l.limiter.Check(r)
		assert.ErrorIs(t, err, &keyward.Error{Code: keyward.CodeServiceUnavailable})
	})
	t.Run("no key", func(t *testing.T) {
		t.Parallel()
		l := newLimited(t)
		_, err := l.limiter.Check(httptest.NewRequest(http.MethodGet, "/", nil))
		assert.ErrorIs(t, err, &keyward.Error{Code: keyward.CodeInternal})
	})
}

func mustKey(r *http.Request) *keyward.KeyRecord {
	k, _ := keyward.FromContext(r.Context())
	return k
}

// Charger.WriteError answers a request whose context was cancelled too:
// net/http cancels it when its body could not be read, and would send an
// empty 200 for a handler that wrote nothing.
func TestChargerWriteErrorAnswersACancelledRequest(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 0, false)
	paymentRequired := &keyward.Error{Status: http.StatusPaymentRequired, Code: keyward.CodeInsufficientCredits, Message: "Insufficient credits."}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := httptest.NewRecorder()
	f.charger.WriteError(w, httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil), paymentRequired)
	assert.Equal(t, http.StatusPaymentRequired, w.Code)

	w = httptest.NewRecorder()
	f.charger.WriteError(w, httptest.NewRequest(http.MethodGet, "/", nil), paymentRequired)
	assert.Equal(t, http.StatusPaymentRequired, w.Code)
}

// Charge.Run with ObserveStatus, as an adapter for a router that sends
// the status late uses it: the call settles on the observed status, and
// commit answers a handler that wrote nothing.
func TestChargeRunForAdapters(t *testing.T) {
	t.Parallel()
	begin := func(t *testing.T, f *creditFixture) *keyward.Charge {
		t.Helper()
		r := f.request(context.Background(), "", nil)
		k, err := f.auth.Authenticate(r)
		require.NoError(t, err)
		ch, err := f.chargerFor(t, 2).Begin(keyward.AttachKey(r, k))
		require.NoError(t, err)
		return ch
	}
	t.Run("observed 2xx is committed, headers set", func(t *testing.T) {
		t.Parallel()
		f := newCreditFixture(t, 0, false)
		ch := begin(t, f)
		h := http.Header{}
		ch.Run(func() { ch.ObserveStatus(h, http.StatusCreated); ch.ObserveStatus(h, http.StatusInternalServerError) }, nil)
		assert.Equal(t, int64(2), f.balance(t).Spent)
		assert.Equal(t, "98", h.Get(keyward.HeaderCreditsRemaining))
	})
	t.Run("observed 4xx is released", func(t *testing.T) {
		t.Parallel()
		f := newCreditFixture(t, 0, false)
		ch := begin(t, f)
		h := http.Header{}
		ch.Run(func() { ch.ObserveStatus(h, http.StatusEarlyHints); ch.ObserveStatus(h, http.StatusBadRequest) }, nil)
		assert.Zero(t, f.balance(t).Spent)
		assert.Zero(t, f.balance(t).Reserved)
		assert.Empty(t, h)
	})
	t.Run("nothing written: commit answers", func(t *testing.T) {
		t.Parallel()
		f := newCreditFixture(t, 0, false)
		ch := begin(t, f)
		h := http.Header{}
		committed := false
		ch.Run(func() {}, func() { committed = true; ch.ObserveStatus(h, http.StatusAccepted) })
		assert.True(t, committed)
		assert.Equal(t, int64(2), f.balance(t).Spent)
		assert.Equal(t, "98", h.Get(keyward.HeaderCreditsRemaining))
	})
	t.Run("hijacked is released", func(t *testing.T) {
		t.Parallel()
		f := newCreditFixture(t, 0, false)
		ch := begin(t, f)
		ch.Run(func() { ch.ObserveHijack() }, func() { t.Error("commit after a hijack") })
		assert.Zero(t, f.balance(t).Spent)
		assert.Zero(t, f.balance(t).Reserved)
	})
	t.Run("panic is released and goes on", func(t *testing.T) {
		t.Parallel()
		f := newCreditFixture(t, 0, false)
		ch := begin(t, f)
		assert.PanicsWithValue(t, "boom", func() {
			ch.Run(func() { panic("boom") }, func() { t.Error("commit after a panic") })
		})
		assert.Zero(t, f.balance(t).Spent)
		assert.Zero(t, f.balance(t).Reserved)
	})
}

package keyward_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/credit"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// creditFixture is the core fixture plus a memory ledger and a Charger,
// all on the fixture's clock.
type creditFixture struct {
	*fixture
	ledger  *memstore.Ledger
	faulty  *faultyLedger
	charger *keyward.Charger
	key     manage.CreatedKey
}

// newCreditFixture gives the fixture's organization monthlyCredits (0:
// its plan's) and overage as asked.
func newCreditFixture(t testing.TB, monthlyCredits int64, overage bool) *creditFixture {
	t.Helper()
	return newCreditFixtureWithPlans(t, nil, monthlyCredits, overage)
}

// newCreditFixtureWithPlans is newCreditFixture over a store with the plan
// table plans (nil: the defaults).
func newCreditFixtureWithPlans(t testing.TB, plans *keyward.Plans, monthlyCredits int64, overage bool) *creditFixture {
	t.Helper()
	f := &creditFixture{fixture: newFixtureWithPlans(t, plans)}
	var err error
	f.ledger, err = memstore.NewLedger(memstore.LedgerOptions{Now: f.now.Now})
	require.NoError(t, err)
	f.faulty = &faultyLedger{Ledger: f.ledger}
	f.charger = f.chargerFor(t, 1)
	f.org.MonthlyCredits, f.org.AllowOverage = monthlyCredits, overage
	require.NoError(t, f.store.UpdateOrg(context.Background(), f.org))
	f.org, err = f.store.Org(context.Background(), f.org.ID) // with its Limits
	require.NoError(t, err)
	f.key = f.newKey(t)
	return f
}

// chargerFor is a Charger of the fixture's ledger whose calls cost cost.
func (f *creditFixture) chargerFor(t testing.TB, cost int64) *keyward.Charger {
	t.Helper()
	cfg := keyward.CreditConfig{Ledger: f.faulty, Errors: f.errors, Cost: cost}
	if cost == 0 {
		cfg.CostFunc = func(*http.Request) (int64, error) { return 0, nil }
	}
	c, err := keyward.ChargeCredits(cfg)
	require.NoError(t, err)
	return c
}

func (f *creditFixture) account(t testing.TB) credit.Account {
	t.Helper()
	return f.org.Account()
}

func (f *creditFixture) balance(t testing.TB) credit.Balance {
	t.Helper()
	b, err := f.ledger.Balance(context.Background(), f.account(t))
	require.NoError(t, err)
	return b
}

// chain is RequireAPIKey → ChargeCredits(cost) → h.
func (f *creditFixture) chain(t testing.TB, cost int64, h http.Handler) http.Handler {
	t.Helper()
	return f.auth.Middleware(f.chargerFor(t, cost).Middleware(h))
}

// request builds a keyed request; header may add more.
func (f *creditFixture) request(ctx context.Context, body string, header http.Header) *http.Request {
	var r *http.Request
	if body == "" {
		r = httptest.NewRequestWithContext(ctx, http.MethodGet, "/v1/transactions", nil)
	} else {
		r = httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/transactions", strings.NewReader(body))
	}
	r.Header.Set("X-API-Key", f.key.Key)
	for k, v := range header {
		r.Header[k] = v
	}
	return r
}

// serve runs h, returning the response and what the handler panicked
// with, if it did.
func serve(h http.Handler, r *http.Request) (w *httptest.ResponseRecorder, panicked any) {
	w = httptest.NewRecorder()
	defer func() { panicked = recover() }()
	h.ServeHTTP(w, r)
	return w, nil
}

// faultyLedger fails on demand.
type faultyLedger struct {
	credit.Ledger
	failReserve, failCommit atomic.Bool
}

var errLedgerDown = errors.New("ledger: connection refused")

func (l *faultyLedger) Reserve(ctx context.Context, req credit.ReserveRequest) (credit.Reservation, error) {
	if l.failReserve.Load() {
		return credit.Reservation{}, errLedgerDown
	}
	return l.Ledger.Reserve(ctx, req)
}

func (l *faultyLedger) Commit(ctx context.Context, a credit.Account, id, amount int64) error {
	if l.failCommit.Load() {
		return errLedgerDown
	}
	return l.Ledger.Commit(ctx, a, id, amount)
}

func ok(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }

func TestChargeCreditsCommitsOnSuccess(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		status  int
	}{
		{"write", ok, http.StatusOK},
		{"201", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) }, http.StatusCreated},
		{"204", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }, http.StatusNoContent},
		{"nothing written", func(w http.ResponseWriter, r *http.Request) {}, http.StatusOK},
		{"io.Copy", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(w, strings.NewReader("streamed"))
		}, http.StatusOK},
		{"flush first", func(w http.ResponseWriter, r *http.Request) {
			w.(http.Flusher).Flush()
			ok(w, r)
		}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newCreditFixture(t, 0, false) // free plan: 100
			h := f.chain(t, 3, tc.handler)
			w, _ := serve(h, f.request(context.Background(), "", nil))
			require.Equal(t, tc.status, w.Code, w.Body.String())
			assert.Equal(t, "97", w.Header().Get(keyward.HeaderCreditsRemaining))
			assert.Empty(t, w.Header().Get(keyward.HeaderIdempotentReplayed))
			b := f.balance(t)
			assert.Equal(t, int64(3), b.Spent)
			assert.Equal(t, int64(97), b.Available)
			assert.Zero(t, b.OpenReservations)
		})
	}
}

func TestChargeCreditsChargesNothingOnFailure(t *testing.T) {
	t.Parallel()
	type result struct {
		status   int
		panicked any
	}
	panicValue := errors.New("handler bug")
	for _, tc := range []struct {
		name    string
		handler func(cancel context.CancelFunc) http.HandlerFunc
		want    result
	}{
		{"500", func(context.CancelFunc) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) }
		}, result{status: 500}},
		{"422", func(context.CancelFunc) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				f := &keyward.ErrorWriter{}
				f.WriteError(w, r, keyward.Validation(http.StatusUnprocessableEntity, "Bad transaction.", nil))
			}
		}, result{status: 422}},
		{"404", func(context.CancelFunc) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }
		}, result{status: 404}},
		{"304", func(context.CancelFunc) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotModified) }
		}, result{status: 304}},
		{"panic", func(context.CancelFunc) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { panic(panicValue) }
		}, result{status: 200, panicked: panicValue}}, // the recorder's default: nothing was written
		{"panic after 200", func(context.CancelFunc) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusOK)
				panic(http.ErrAbortHandler)
			}
		}, result{status: 200, panicked: http.ErrAbortHandler}},
		{"client gone", func(cancel context.CancelFunc) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				cancel() // the client disconnects while the handler works
				<-r.Context().Done()
			}
		}, result{status: 200}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newCreditFixture(t, 0, false)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			h := f.chain(t, 3, tc.handler(cancel))
			w, panicked := serve(h, f.request(ctx, "", nil))
			assert.Equal(t, tc.want.status, w.Code)
			assert.Equal(t, tc.want.panicked, panicked, "the handler's panic goes on, unchanged")
			if tc.name != "panic after 200" {
				assert.Empty(t, w.Header().Get(keyward.HeaderCreditsRemaining))
			}
			b := f.balance(t)
			assert.Zero(t, b.Spent, "charged")
			assert.Equal(t, int64(100), b.Available)
			assert.Zero(t, b.OpenReservations)
		})
	}
}

func TestChargeCreditsExactBoundary(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 3, false)
	const n = 5
	var entered, refused atomic.Int32
	gate := make(chan struct{})
	h := f.chain(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered.Add(1)
		<-gate // hold every reservation until all five calls are decided
		ok(w, r)
	}))
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, _ := serve(h, f.request(context.Background(), "", nil))
			codes[i] = w.Code
			if w.Code == http.StatusPaymentRequired {
				refused.Add(1)
			}
		}()
	}
	require.Eventually(t, func() bool { return entered.Load()+refused.Load() == n }, 5*time.Second, time.Millisecond)
	close(gate)
	wg.Wait()
	count := map[int]int{}
	for _, c := range codes {
		count[c]++
	}
	assert.Equal(t, map[int]int{200: 3, 402: 2}, count)
	b := f.balance(t)
	assert.Equal(t, int64(3), b.Spent)
	assert.Zero(t, b.Available)
}

func TestChargeCreditsInsufficient(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 5, false)
	var ran atomic.Int32
	h := f.chain(t, 3, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran.Add(1); ok(w, r) }))
	w, _ := serve(h, f.request(context.Background(), "", nil))
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "2", w.Header().Get(keyward.HeaderCreditsRemaining))

	w, _ = serve(h, f.request(context.Background(), "", nil))
	require.Equal(t, http.StatusPaymentRequired, w.Code)
	env := decodeEnvelope(t, w)
	assert.Equal(t, "insufficient_credits", env.Error.Code)
	assert.Equal(t, "Insufficient credits. Enable overages or upgrade your plan.", env.Error.Message)
	assert.Equal(t, map[string]any{"creditsRequired": 3.0, "creditsRemaining": 2.0}, env.Error.Details)
	assert.Empty(t, w.Header().Get(keyward.HeaderCreditsRemaining))
	assert.Equal(t, int32(1), ran.Load(), "the handler does not run without a reservation")
	assertNotEchoed(t, f.key.Key, w, f.logs.String())
}

func TestChargeCreditsOverage(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 2, true)
	h := f.chain(t, 3, http.HandlerFunc(ok))
	for range 3 {
		w, _ := serve(h, f.request(context.Background(), "", nil))
		require.Equal(t, http.StatusOK, w.Code)
		assert.Equal(t, "0", w.Header().Get(keyward.HeaderCreditsRemaining), "never below zero on the wire")
	}
	assert.Equal(t, int64(-7), f.balance(t).Available)
}

func TestChargeCreditsSetCost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		reserved   int64
		set        int64
		wantStatus int
		wantSpent  int64
		wantHeader string
	}{
		{"lower", 5, 2, 200, 2, "8"},
		{"zero", 5, 0, 200, 0, "10"},
		{"higher, within the balance", 1, 7, 200, 7, "3"},
		{"higher, the whole balance", 1, 10, 200, 10, "0"},
		{"higher than the balance", 1, 11, 402, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newCreditFixture(t, 10, false)
			h := f.chain(t, tc.reserved, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if err := keyward.SetCost(r.Context(), tc.set); err != nil {
					f.errors.WriteError(w, r, err)
					return
				}
				ok(w, r)
			}))
			w, _ := serve(h, f.request(context.Background(), "", nil))
			require.Equal(t, tc.wantStatus, w.Code, w.Body.String())
			assert.Equal(t, tc.wantHeader, w.Header().Get(keyward.HeaderCreditsRemaining))
			b := f.balance(t)
			assert.Equal(t, tc.wantSpent, b.Spent)
			assert.Zero(t, b.OpenReservations)
			if tc.wantStatus == 402 {
				env := decodeEnvelope(t, w)
				assert.Equal(t, map[string]any{"creditsRequired": 10.0, "creditsRemaining": 9.0}, env.Error.Details)
			}
		})
	}
}

func TestSetCostMisuse(t *testing.T) {
	t.Parallel()
	assert.ErrorIs(t, keyward.SetCost(context.Background(), 1), keyward.ErrNoCharge)
	f := newCreditFixture(t, 10, false)
	var kept context.Context
	h := f.chain(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.ErrorIs(t, keyward.SetCost(r.Context(), -1), credit.ErrInvalidAmount)
		ch, ok := keyward.ChargeFromContext(r.Context())
		require.True(t, ok)
		assert.Equal(t, int64(1), ch.Cost())
		assert.Equal(t, int64(9), ch.Remaining())
		kept = r.Context()
	}))
	w, _ := serve(h, f.request(context.Background(), "", nil))
	require.Equal(t, http.StatusOK, w.Code)
	assert.ErrorIs(t, keyward.SetCost(kept, 5), keyward.ErrChargeSettled)
	assert.Equal(t, int64(1), f.balance(t).Spent)
}

func TestChargeCreditsCostFunc(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 100, false)
	cost := func(r *http.Request) (int64, error) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil {
			return 0, keyward.Validation(http.StatusBadRequest, "n must be a number.", nil)
		}
		return n, nil
	}
	charge, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: f.faulty, Errors: f.errors, CostFunc: cost})
	require.NoError(t, err)
	h := f.auth.Middleware(charge.Middleware(http.HandlerFunc(ok)))
	for _, tc := range []struct {
		query     string
		status    int
		remaining string
	}{
		{"n=4", 200, "96"},
		{"n=0", 200, "96"},
		{"n=x", 400, ""},
		{"n=-1", 500, ""},
	} {
		r := f.request(context.Background(), "", nil)
		r.URL.RawQuery = tc.query
		w, _ := serve(h, r)
		assert.Equal(t, tc.status, w.Code, tc.query)
		assert.Equal(t, tc.remaining, w.Header().Get(keyward.HeaderCreditsRemaining), tc.query)
	}
	assert.Equal(t, int64(4), f.balance(t).Spent)
}

func TestChargeCreditsIdempotentRetry(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 100, false)
	var runs atomic.Int32
	h := f.chain(t, 5, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		body, _ := io.ReadAll(r.Body)
		_, _ = w.Write(body) // the handler still sees the whole body
	}))
	key := http.Header{"Idempotency-Key": {"order-42_a"}}
	w, _ := serve(h, f.request(context.Background(), `{"amount":12}`, key))
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, `{"amount":12}`, w.Body.String())
	assert.Equal(t, "95", w.Header().Get(keyward.HeaderCreditsRemaining))

	for _, h2 := range []http.Header{key, {"X-Idempotency-Key": {"order-42_a"}}} {
		w, _ = serve(h, f.request(context.Background(), `{"amount":12}`, h2))
		require.Equal(t, http.StatusOK, w.Code)
		assert.Equal(t, `{"amount":12}`, w.Body.String())
		assert.Equal(t, "true", w.Header().Get(keyward.HeaderIdempotentReplayed))
		assert.Equal(t, "95", w.Header().Get(keyward.HeaderCreditsRemaining))
	}
	assert.Equal(t, int32(3), runs.Load(), "a replay runs the handler")
	assert.Equal(t, int64(5), f.balance(t).Spent, "charged once")

	// The same key for another request is refused.
	w, _ = serve(h, f.request(context.Background(), `{"amount":13}`, key))
	require.Equal(t, http.StatusUnprocessableEntity, w.Code)
	env := decodeEnvelope(t, w)
	assert.Equal(t, "validation_error", env.Error.Code)
	assert.Equal(t, "idempotency_key_reused", env.Error.Details["reason"])
	assert.Equal(t, int64(5), f.balance(t).Spent)
}

func TestChargeCreditsIdempotencyInFlight(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 100, false)
	entered, release := make(chan struct{}), make(chan struct{})
	var fail atomic.Bool
	h := f.chain(t, 5, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Hold") != "" {
			close(entered)
			<-release
		}
		if fail.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		ok(w, r)
	}))
	key := http.Header{"Idempotency-Key": {"k1"}}
	first := make(chan *httptest.ResponseRecorder)
	fail.Store(true)
	go func() {
		w, _ := serve(h, f.request(context.Background(), "", http.Header{"Idempotency-Key": {"k1"}, "X-Hold": {"1"}}))
		first <- w
	}()
	<-entered
	w, _ := serve(h, f.request(context.Background(), "", key))
	require.Equal(t, http.StatusConflict, w.Code)
	env := decodeEnvelope(t, w)
	assert.Equal(t, "idempotency_key_in_use", env.Error.Details["reason"])
	assert.Equal(t, "1", w.Header().Get("Retry-After"))
	close(release)
	require.Equal(t, http.StatusInternalServerError, (<-first).Code)
	assert.Zero(t, f.balance(t).Spent)

	// The first call failed: the retry runs and is charged, once.
	fail.Store(false)
	w, _ = serve(h, f.request(context.Background(), "", key))
	require.Equal(t, http.StatusOK, w.Code)
	assert.Empty(t, w.Header().Get(keyward.HeaderIdempotentReplayed))
	w, _ = serve(h, f.request(context.Background(), "", key))
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "true", w.Header().Get(keyward.HeaderIdempotentReplayed))
	assert.Equal(t, int64(5), f.balance(t).Spent)
}

func TestChargeCreditsIdempotencyKeyValidation(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 100, false)
	var ran atomic.Int32
	h := f.chain(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran.Add(1); ok(w, r) }))
	for _, tc := range []struct {
		name   string
		header http.Header
		status int
		reason string
	}{
		{"64 chars", http.Header{"Idempotency-Key": {strings.Repeat("a", 64)}}, 200, ""},
		{"both, equal", http.Header{"Idempotency-Key": {"abc"}, "X-Idempotency-Key": {"abc"}}, 200, ""},
		{"empty", http.Header{"Idempotency-Key": {""}}, 400, "invalid_idempotency_key"},
		{"65 chars", http.Header{"Idempotency-Key": {strings.Repeat("a", 65)}}, 400, "invalid_idempotency_key"},
		{"space", http.Header{"Idempotency-Key": {"a b"}}, 400, "invalid_idempotency_key"},
		{"dot", http.Header{"Idempotency-Key": {"a.b"}}, 400, "invalid_idempotency_key"},
		{"unicode", http.Header{"Idempotency-Key": {"ключ"}}, 400, "invalid_idempotency_key"},
		{"NUL", http.Header{"X-Idempotency-Key": {"a\x00b"}}, 400, "invalid_idempotency_key"},
		{"CRLF", http.Header{"Idempotency-Key": {"a\r\nSet-Cookie: x=y"}}, 400, "invalid_idempotency_key"},
		{"both, different", http.Header{"Idempotency-Key": {"abc"}, "X-Idempotency-Key": {"abd"}}, 400, "conflicting_idempotency_keys"},
		{"twice", http.Header{"Idempotency-Key": {"abc", "abc"}}, 400, "conflicting_idempotency_keys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := ran.Load()
			w, _ := serve(h, f.request(context.Background(), "", tc.header))
			require.Equal(t, tc.status, w.Code, w.Body.String())
			if tc.status == 200 {
				return
			}
			env := decodeEnvelope(t, w)
			assert.Equal(t, "validation_error", env.Error.Code)
			assert.Equal(t, tc.reason, env.Error.Details["reason"])
			assert.Equal(t, before, ran.Load())
			for _, vs := range tc.header {
				for _, v := range vs {
					assertNotEchoed(t, v, w, f.logs.String())
				}
			}
		})
	}
	assert.Equal(t, int64(2), f.balance(t).Spent)
}

func TestChargeCreditsIdempotentBodyLimit(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 100, false)
	charge, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: f.ledger, MaxIdempotentBody: 8})
	require.NoError(t, err)
	h := f.auth.Middleware(charge.Middleware(http.HandlerFunc(ok)))
	key := http.Header{"Idempotency-Key": {"k"}}
	w, _ := serve(h, f.request(context.Background(), "12345678", key))
	assert.Equal(t, http.StatusOK, w.Code)
	w, _ = serve(h, f.request(context.Background(), "123456789", key))
	require.Equal(t, http.StatusRequestEntityTooLarge, w.Code)
	assert.Equal(t, "idempotent_body_too_large", decodeEnvelope(t, w).Error.Details["reason"])
	// Without a key the body is not read: no limit.
	w, _ = serve(h, f.request(context.Background(), strings.Repeat("x", 100), nil))
	assert.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, int64(2), f.balance(t).Spent)
}

func TestChargeCreditsPeriodRollover(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 0, false) // free: 100 a month
	h := f.chain(t, 40, http.HandlerFunc(ok))
	for _, want := range []string{"60", "20"} {
		w, _ := serve(h, f.request(context.Background(), "", nil))
		require.Equal(t, http.StatusOK, w.Code)
		assert.Equal(t, want, w.Header().Get(keyward.HeaderCreditsRemaining))
	}
	w, _ := serve(h, f.request(context.Background(), "", nil))
	require.Equal(t, http.StatusPaymentRequired, w.Code)

	f.now.Set(time.Date(2036, 2, 1, 0, 0, 0, 0, time.UTC))
	w, _ = serve(h, f.request(context.Background(), "", nil))
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "60", w.Header().Get(keyward.HeaderCreditsRemaining), "a fresh 100, nothing rolled over")
}

func TestChargeCreditsWithoutRequireAPIKey(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 10, false)
	w, _ := serve(f.charger.Middleware(http.HandlerFunc(ok)), httptest.NewRequest(http.MethodGet, "/", nil))
	require.Equal(t, http.StatusInternalServerError, w.Code)
	assert.Contains(t, logLine(t, f.logs.String(), decodeEnvelope(t, w).Meta.RequestID), "RequireAPIKey")
}

func TestChargeCreditsConfigErrors(t *testing.T) {
	t.Parallel()
	_, err := keyward.ChargeCredits(keyward.CreditConfig{
		Cost:              -1,
		CostFunc:          func(*http.Request) (int64, error) { return 1, nil },
		MaxIdempotentBody: -1,
	})
	require.Error(t, err)
	for _, field := range []string{"CreditConfig.Ledger", "CreditConfig.Cost", "CreditConfig.CostFunc", "MaxIdempotentBody"} {
		assert.Contains(t, err.Error(), field)
	}
	var ce *keyward.ConfigError
	assert.ErrorAs(t, err, &ce)

	_, err = keyward.ChargeCredits(keyward.CreditConfig{Ledger: &faultyLedger{}, Cost: -1})
	assert.ErrorContains(t, err, "CreditConfig.Cost")
	_, err = keyward.ChargeCredits(keyward.CreditConfig{Ledger: &faultyLedger{}, Cost: 2,
		CostFunc: func(*http.Request) (int64, error) { return 1, nil }})
	assert.ErrorContains(t, err, "CreditConfig.CostFunc")
	for _, cfg := range []keyward.CreditConfig{
		{Ledger: &faultyLedger{}},
		{Ledger: &faultyLedger{}, Cost: 5},
		{Ledger: &faultyLedger{}, CostFunc: func(*http.Request) (int64, error) { return 0, nil }},
	} {
		c, err := keyward.ChargeCredits(cfg)
		assert.NoError(t, err)
		assert.NotNil(t, c)
	}
}

// A zero Cost is 1; a Cost is reserved and committed as set.
func TestChargeCreditsCostDefault(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 10, false)
	for _, tc := range []struct {
		cost      int64
		remaining string
	}{{0, "9"}, {1, "8"}, {3, "5"}} {
		c, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: f.ledger, Cost: tc.cost})
		require.NoError(t, err)
		w, _ := serve(f.auth.Middleware(c.Middleware(http.HandlerFunc(ok))), f.request(context.Background(), "", nil))
		require.Equal(t, http.StatusOK, w.Code)
		assert.Equal(t, tc.remaining, w.Header().Get(keyward.HeaderCreditsRemaining), "Cost %d", tc.cost)
	}
	assert.Equal(t, int64(5), f.balance(t).Spent)
}

// Organization.Account is the org's credit policy from its resolved Limits.
func TestOrganizationAccount(t *testing.T) {
	t.Parallel()
	plans := keyward.DefaultPlans()
	for _, tc := range []struct {
		org  keyward.Organization
		want int64
	}{
		{keyward.Organization{ID: "o", Plan: "free"}, 100},
		{keyward.Organization{ID: "o", Plan: "starter"}, 4_000},
		{keyward.Organization{ID: "o", Plan: "growth"}, 25_000},
		{keyward.Organization{ID: "o", Plan: "business"}, 100_000},
		{keyward.Organization{ID: "o", Plan: "enterprise"}, 0},
		{keyward.Organization{ID: "o", Plan: "enterprise", MonthlyCredits: 1_000_000}, 1_000_000},
		{keyward.Organization{ID: "o", Plan: "free", MonthlyCredits: 3, AllowOverage: true}, 3},
	} {
		org := tc.org
		if org.Plan == "enterprise" && org.RatePerMinute == 0 {
			org.RatePerMinute = 10_000 // an enterprise org sets its own rate
		}
		var err error
		org.Limits, err = plans.Resolve(org)
		require.NoError(t, err)
		assert.Equal(t, credit.Account{OrgID: "o", Allocation: tc.want, AllowOverage: tc.org.AllowOverage}, org.Account(), tc.org.Plan)
	}
	// The account reads the effective limits only.
	org := keyward.Organization{ID: "o", Plan: "free", MonthlyCredits: 7, Limits: keyward.Limits{MonthlyCredits: 42}}
	assert.Equal(t, int64(42), org.Account().Allocation)
	_, err := plans.Resolve(keyward.Organization{ID: "o", Plan: "platinum"})
	assert.Error(t, err)
}

func TestChargeWriterKeepsOptionalInterfaces(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 100, false)
	var got struct {
		flusher, hijacker, readerFrom, unwraps bool
		deadlineErr                            error
	}
	h := f.chain(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, got.flusher = w.(http.Flusher)
		_, got.hijacker = w.(http.Hijacker)
		_, got.readerFrom = w.(io.ReaderFrom)
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		got.unwraps = ok && u.Unwrap() != nil
		// Reached through Unwrap.
		got.deadlineErr = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Minute))
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "part 1;")
		require.NoError(t, http.NewResponseController(w).Flush())
		_, _ = io.Copy(w, strings.NewReader("part 2"))
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("X-API-Key", f.key.Key)
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	assert.Equal(t, "part 1;part 2", string(body))
	assert.Equal(t, "99", resp.Header.Get(keyward.HeaderCreditsRemaining))
	assert.True(t, got.flusher && got.hijacker && got.readerFrom && got.unwraps, "%+v", got)
	assert.NoError(t, got.deadlineErr)
	assert.Equal(t, int64(1), f.balance(t).Spent)
}

func TestChargeCreditsIgnoresInformationalStatus(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 100, false)
	h := f.chain(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		ok(w, r)
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("X-API-Key", f.key.Key)
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "99", resp.Header.Get(keyward.HeaderCreditsRemaining))
	assert.Equal(t, int64(1), f.balance(t).Spent)
}

type cancelKey struct{}

// TestSetCostWhateverSitsBetween: the Charge is found by SetCost whether
// ChargeCredits sits right behind RequireAPIKey (the Charge goes into
// RequireAPIKey's request state) or behind a middleware that wrapped the
// context, or twice in one chain (each gets its own context).
func TestSetCostWhateverSitsBetween(t *testing.T) {
	t.Parallel()
	type ctxKey struct{}
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, "v")))
		})
	}
	for _, tc := range []struct {
		name      string
		between   func(http.Handler) http.Handler
		twice     bool
		wantSpent int64
	}{
		{"directly behind RequireAPIKey", func(h http.Handler) http.Handler { return h }, false, 3},
		{"behind a context-wrapping middleware", wrap, false, 3},
		{"two ChargeCredits in one chain", func(h http.Handler) http.Handler { return h }, true, 3 + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newCreditFixture(t, 10, false)
			charge := f.charger.Middleware // cost 1
			h := http.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				require.NoError(t, keyward.SetCost(r.Context(), 3))
				k, ok := keyward.FromContext(r.Context())
				require.True(t, ok)
				assert.Equal(t, f.org.ID, k.Org.ID)
				ok2(w)
			}))
			h = charge(h)
			if tc.twice {
				h = charge(h) // the outer one keeps its cost of 1
			}
			h = f.auth.Middleware(tc.between(h))
			w, _ := serve(h, f.request(context.Background(), "", nil))
			require.Equal(t, http.StatusOK, w.Code, w.Body.String())
			b := f.balance(t)
			assert.Equal(t, tc.wantSpent, b.Spent)
			assert.Zero(t, b.OpenReservations)
		})
	}
}

func ok2(w http.ResponseWriter) { w.WriteHeader(http.StatusOK) }

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

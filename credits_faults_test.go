package keyward_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/internal/testenv"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serveCharged starts a real HTTP server for h, with the server's own
// panic logging silenced.
func serveCharged(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// TestClientDisconnectsUnderLoad: 32 clients call a charged route whose
// handler takes 0–40 ms and give up after 0–40 ms, so that some are
// served and some leave mid-request; some leave while still sending an
// idempotent call's body. Every call the handler answered 2xx is charged
// once; every call whose client left before an answer, and every call
// that never got its body, is not; nothing is left reserved.
//
// Not parallel: it counts goroutines.
func TestClientDisconnectsUnderLoad(t *testing.T) {
	f := newCreditFixture(t, 100_000, false)
	var answered, abandoned atomic.Int64
	h := f.chain(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(time.Duration(rand.IntN(40)) * time.Millisecond):
			answered.Add(1)
			_, _ = io.WriteString(w, "done")
		case <-r.Context().Done():
			abandoned.Add(1) // the client left: nothing written
		}
	}))
	before := runtime.NumGoroutine()
	srv := serveCharged(t, h)

	var got200, gaveUp, bodyCut atomic.Int64
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(40))*time.Millisecond)
				var req *http.Request
				if (g+i)%5 == 0 {
					// An idempotent call whose body never finishes.
					pr, pw := io.Pipe()
					go func() {
						_, _ = pw.Write([]byte(`{"items":[`))
						<-ctx.Done()
						_ = pw.CloseWithError(errors.New("client gone"))
					}()
					req, _ = http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, pr)
					req.Header.Set(keyward.HeaderIdempotencyKey, "order-"+string(rune('a'+g))+string(rune('a'+i)))
					bodyCut.Add(1)
				} else {
					req, _ = http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, nil)
				}
				req.Header.Set("X-API-Key", f.key.Key)
				resp, err := srv.Client().Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						got200.Add(1)
					}
				} else {
					gaveUp.Add(1)
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	srv.Close() // waits for every handler
	srv.Client().CloseIdleConnections()
	b := f.balance(t)
	t.Logf("%d answered (%d seen by the client), %d abandoned in the handler, %d clients gave up (%d of them mid-body); charged %d",
		answered.Load(), got200.Load(), abandoned.Load(), gaveUp.Load(), bodyCut.Load(), b.Spent)
	assert.Equal(t, answered.Load(), b.Spent, "charged exactly the calls answered 2xx")
	assert.LessOrEqual(t, got200.Load(), b.Spent)
	assert.Positive(t, abandoned.Load(), "some clients left mid-request")
	assert.Positive(t, got200.Load())
	assert.Zero(t, b.Reserved)
	assert.Zero(t, b.OpenReservations, "no reservation left behind")
	assert.Equal(t, int64(100_000)-answered.Load(), b.Available)
	settleGoroutines(t, before+2)
}

// TestHandlerPanicsUnderLoad: 16 clients × 25 calls to a charged route
// whose handler panics one time in three (with http.ErrAbortHandler, with
// an error, after writing a 200 header, after a SetCost). No panicking
// call is charged; the others are, once; nothing stays reserved; the
// server keeps serving.
func TestHandlerPanicsUnderLoad(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 100_000, false)
	var answered, panicked atomic.Int64
	h := f.chain(t, 2, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("X-Behave") {
		case "abort":
			panicked.Add(1)
			panic(http.ErrAbortHandler)
		case "error":
			panicked.Add(1)
			panic(errors.New("boom"))
		case "after-header":
			panicked.Add(1)
			w.WriteHeader(http.StatusOK)
			panic("boom after the header")
		case "after-setcost":
			panicked.Add(1)
			_ = keyward.SetCost(r.Context(), 5)
			panic("boom after SetCost")
		}
		answered.Add(1)
		_, _ = io.WriteString(w, "ok")
	}))
	srv := serveCharged(t, h)
	behaviours := []string{"ok", "ok", "ok", "ok", "ok", "ok", "abort", "error", "after-header", "after-setcost"}
	var wg sync.WaitGroup
	var got200 atomic.Int64
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				req, _ := http.NewRequest(http.MethodPost, srv.URL, nil)
				req.Header.Set("X-API-Key", f.key.Key)
				req.Header.Set("X-Behave", behaviours[(g*25+i)%len(behaviours)])
				resp, err := srv.Client().Do(req)
				if err != nil {
					continue // the panic broke the connection
				}
				body, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if err == nil && resp.StatusCode == http.StatusOK && string(body) == "ok" {
					got200.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	srv.Close()
	b := f.balance(t)
	t.Logf("%d answered, %d panicked; charged %d", answered.Load(), panicked.Load(), b.Spent)
	assert.Equal(t, int64(400), answered.Load()+panicked.Load())
	assert.Equal(t, 2*answered.Load(), b.Spent, "only the calls that did not panic, at their cost")
	assert.Equal(t, answered.Load(), got200.Load())
	assert.Zero(t, b.OpenReservations)
	assert.Zero(t, b.Reserved)
}

// slowLedger makes Reserve take delay, or end with ctx: a ledger whose
// database is slow but honours cancellation.
type slowLedger struct {
	credit.Ledger
	delay time.Duration
}

func (l *slowLedger) Reserve(ctx context.Context, req credit.ReserveRequest) (credit.Reservation, error) {
	select {
	case <-time.After(l.delay):
		return l.Ledger.Reserve(ctx, req)
	case <-ctx.Done():
		return credit.Reservation{}, ctx.Err()
	}
}

// TestSlowLedgerAnswers503WithinTheDeadline: the server gives each
// request 100 ms (a timeout middleware) and the ledger takes 2 s. The
// caller, still connected, gets a 503 service_unavailable when the
// deadline passes — not an empty 200 — and the handler never runs.
func TestSlowLedgerAnswers503WithinTheDeadline(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 100, false)
	charger, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: &slowLedger{f.ledger, 2 * time.Second}, Errors: f.errors})
	require.NoError(t, err)
	var ran atomic.Int64
	chain := f.auth.Middleware(charger.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ran.Add(1)
		_, _ = io.WriteString(w, "ok")
	})))
	srv := serveCharged(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 100*time.Millisecond)
		defer cancel()
		chain.ServeHTTP(w, r.WithContext(ctx))
	}))
	req, _ := http.NewRequest(http.MethodPost, srv.URL, nil)
	req.Header.Set("X-API-Key", f.key.Key)
	start := time.Now()
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	assert.Less(t, time.Since(start), time.Second)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "body: %q", body)
	assert.Contains(t, string(body), `"service_unavailable"`)
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	assert.Zero(t, ran.Load(), "the handler does not run unreserved")
	assert.Zero(t, f.balance(t).Spent)
}

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

// chargedServer is a real HTTP server: RequireAPIKey → ChargeCredits
// (cost 1) → handler, on a memory ledger whose reservations expire after
// ttl. It returns the server, a key and the organization's account.
func chargedServer(t *testing.T, ttl time.Duration, handler http.HandlerFunc) (*httptest.Server, string, *memstore.Ledger, credit.Account) {
	t.Helper()
	ctx := context.Background()
	store, err := memstore.New(memstore.Options{Prefix: "triq_"})
	require.NoError(t, err)
	org, err := store.CreateOrg(ctx, manage.OrgSpec{Name: "slow", Plan: "free", MonthlyCredits: 10})
	require.NoError(t, err)
	k, err := store.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "k"})
	require.NoError(t, err)
	ledger, err := memstore.NewLedger(memstore.LedgerOptions{ReservationTTL: ttl})
	require.NoError(t, err)
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: store, Prefix: "triq_"})
	require.NoError(t, err)
	charger, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: ledger})
	require.NoError(t, err)
	srv := httptest.NewServer(auth.Middleware(charger.Middleware(handler)))
	t.Cleanup(srv.Close)
	return srv, k.Key, ledger, org.Account()
}

// A call whose handler runs for several reservation TTLs is charged: its
// reservation is renewed while it runs (slow calls used to be free).
func TestSlowHandlerIsCharged(t *testing.T) {
	t.Parallel()
	// The TTL leaves a renewal 400 ms of slack: enough for a loaded 2-core
	// machine running the race detector.
	srv, key, ledger, acct := chargedServer(t, 600*time.Millisecond, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Second) // more than three TTLs
		w.WriteHeader(http.StatusOK)
	})
	for range 2 {
		req, err := http.NewRequest(http.MethodPost, srv.URL, nil)
		require.NoError(t, err)
		req.Header.Set("X-API-Key", key)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = res.Body.Close()
		require.Equal(t, http.StatusOK, res.StatusCode)
	}
	b, err := ledger.Balance(context.Background(), acct)
	require.NoError(t, err)
	require.Equal(t, int64(2), b.Spent, "every slow call is charged")
	require.Equal(t, int64(8), b.Available)
	require.Zero(t, b.Reserved)
}

// slowBody sends n bytes, one every pause.
type slowBody struct {
	n     int
	pause time.Duration
}

func (s *slowBody) Read(p []byte) (int, error) {
	if s.n == 0 {
		return 0, io.EOF
	}
	time.Sleep(s.pause)
	s.n--
	p[0] = 'x'
	return 1, nil
}

// A client that sends its body slowly, for longer than the TTL, is
// charged once the handler has read it and answered.
func TestSlowClientBodyIsCharged(t *testing.T) {
	t.Parallel()
	srv, key, ledger, acct := chargedServer(t, 300*time.Millisecond, func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil || n != 8 {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	req, err := http.NewRequest(http.MethodPost, srv.URL, &slowBody{n: 8, pause: 130 * time.Millisecond})
	require.NoError(t, err)
	req.Header.Set("X-API-Key", key)
	req.ContentLength = 8
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	b, err := ledger.Balance(context.Background(), acct)
	require.NoError(t, err)
	require.Equal(t, int64(1), b.Spent)
	require.Zero(t, b.Reserved)
}

// A charged call whose body stalls (the server's ReadTimeout passes with
// part of it sent) is answered 400, or not at all, and not charged; never
// the empty 200 net/http sends for a handler that wrote nothing. Whether
// keyward reads the body (an Idempotency-Key binds it) or the handler
// does and answers with the Charger's writer.
func TestStalledBodyOfAChargedCall(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 10, false)
	charger := f.chargerFor(t, 1)
	ran := make(chan struct{}, 10)
	h := f.auth.Middleware(charger.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			charger.WriteError(w, r, keyward.Validation(http.StatusBadRequest, "The request body could not be read.", nil))
			return
		}
		ran <- struct{}{}
		_, _ = w.Write([]byte(`{"ok":true}`))
	})))
	addr := testenv.ServeReadTimeout(t, h, 300*time.Millisecond)
	for name, extra := range map[string]string{"the handler reads the body": "", "keyward reads it": "Idempotency-Key: retry-1\r\n"} {
		head := fmt.Sprintf("POST /v1/transactions HTTP/1.1\r\nHost: api.example\r\nX-API-Key: %s\r\n%sContent-Type: application/json\r\nContent-Length: 20\r\n", f.key.Key, extra)
		s := testenv.Stall(t, addr, head, `{"description":`, 3*time.Second)
		if s.Response != nil {
			require.Equal(t, http.StatusBadRequest, s.Response.StatusCode, "%s: %q", name, s.Raw)
			assert.Contains(t, s.Body, `"code":"validation_error"`, name)
			assert.Empty(t, s.Response.Header.Get(keyward.HeaderCreditsRemaining), name)
		}
	}
	assert.Empty(t, ran, "no call ran")
	b := f.balance(t)
	assert.Zero(t, b.Spent, "charged")
	assert.Zero(t, b.OpenReservations)
}

func TestChargeCreditsAbandonedReservationExpires(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 10, false)
	// An adapter that began a charge and then died before settling it.
	r := f.request(context.Background(), "", nil)
	k, err := f.auth.Authenticate(r)
	require.NoError(t, err)
	ch, err := f.chargerFor(t, 4).Begin(keyward.AttachKey(r, k))
	require.NoError(t, err)
	assert.Equal(t, int64(6), f.balance(t).Available)
	assert.Equal(t, f.now.Now().Add(credit.DefaultReservationTTL), ch.Reservation().ExpiresAt)

	f.now.Advance(credit.DefaultReservationTTL - time.Second)
	assert.Equal(t, int64(4), f.balance(t).Reserved)
	f.now.Advance(time.Second)
	b := f.balance(t)
	assert.Equal(t, int64(10), b.Available)
	assert.Zero(t, b.OpenReservations)
	// Settling now charges nothing.
	assert.ErrorIs(t, ch.Settle(http.StatusOK), credit.ErrReservationExpired)
	assert.Zero(t, f.balance(t).Spent)
}

func TestChargeCreditsSlowHandlerIsNotCharged(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 10, false)
	h := f.chain(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.now.Advance(credit.DefaultReservationTTL) // outlives its reservation
		ok(w, r)
	}))
	w, _ := serve(h, f.request(context.Background(), "", nil))
	require.Equal(t, http.StatusOK, w.Code)
	assert.Zero(t, f.balance(t).Spent)
	assert.Contains(t, f.logs.String(), "level=WARN")
	assert.Contains(t, f.logs.String(), "reservation expired")
}

func TestChargeCreditsLedgerFailure(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 10, false)
	var ran atomic.Int32
	h := f.chain(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran.Add(1); ok(w, r) }))
	f.faulty.failReserve.Store(true)
	w, _ := serve(h, f.request(context.Background(), "", nil))
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	env := decodeEnvelope(t, w)
	assert.Equal(t, "service_unavailable", env.Error.Code)
	assert.Contains(t, env.Error.Message, "credit ledger")
	assert.Equal(t, "1", w.Header().Get("Retry-After"))
	assert.Zero(t, ran.Load(), "the handler never runs unreserved")
	assert.Contains(t, f.logs.String(), "connection refused")
	assertNotEchoed(t, f.key.Key, w, f.logs.String())

	// A failed commit is logged; the reservation expires uncharged.
	f.faulty.failReserve.Store(false)
	f.faulty.failCommit.Store(true)
	w, _ = serve(h, f.request(context.Background(), "", nil))
	require.Equal(t, http.StatusOK, w.Code)
	assert.Contains(t, f.logs.String(), "settling credits failed")
	f.now.Advance(credit.DefaultReservationTTL)
	b := f.balance(t)
	assert.Zero(t, b.Spent)
	assert.Zero(t, b.OpenReservations)
}

func TestChargeCreditsHijackIsNotCharged(t *testing.T) {
	t.Parallel()
	f := newCreditFixture(t, 100, false)
	h := f.chain(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: demo\r\nConnection: Upgrade\r\n\r\nhello")
		_ = brw.Flush()
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("X-API-Key", f.key.Key)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "demo")
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	assert.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
		line, _ := bufio.NewReader(rwc).ReadString('o')
		assert.Equal(t, "hello", line)
		_ = rwc.Close()
	}
	require.Eventually(t, func() bool { return f.balance(t).OpenReservations == 0 }, 5*time.Second, 5*time.Millisecond)
	assert.Zero(t, f.balance(t).Spent)
}

// TestChargeCreditsConcurrencyInvariant: 64 goroutines × 1,000 calls, cost
// 1–3, against 10,000 credits, with handlers that fail at random in every
// way. Afterwards what the 2xx answers cost is exactly what the balance
// lost, never more than it had, and nothing is left reserved: every
// failed call was charged 0. It is not parallel: it saturates the
// machine, so it runs while the parallel tests wait, not starving their
// timing.
func TestChargeCreditsConcurrencyInvariant(t *testing.T) {
	f := newCreditFixture(t, 10_000, false)
	cost := func(r *http.Request) (int64, error) {
		return strconv.ParseInt(r.Header.Get("X-Cost"), 10, 64)
	}
	charge, err := keyward.ChargeCredits(keyward.CreditConfig{Ledger: f.faulty, Errors: f.errors, CostFunc: cost})
	require.NoError(t, err)
	h := f.auth.Middleware(charge.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ch, _ := keyward.ChargeFromContext(r.Context())
		switch r.Header.Get("X-Behave") {
		case "500":
			w.WriteHeader(http.StatusInternalServerError)
			return
		case "422":
			w.WriteHeader(http.StatusUnprocessableEntity)
			return
		case "panic":
			panic(http.ErrAbortHandler)
		case "gone":
			r.Context().Value(cancelKey{}).(context.CancelFunc)()
			return
		case "cheaper":
			_ = keyward.SetCost(r.Context(), ch.Cost()-1)
		case "dearer":
			if err := keyward.SetCost(r.Context(), ch.Cost()+2); err != nil {
				f.errors.WriteError(w, r, err) // 402: not charged
				return
			}
		}
		w.Header().Set("X-Final-Cost", strconv.FormatInt(ch.Cost(), 10))
		w.WriteHeader(http.StatusOK)
	})))
	behaviours := []string{"ok", "ok", "ok", "500", "422", "panic", "gone", "cheaper", "dearer"}
	const workers, calls = 64, 1000
	var committed, succeeded, refused atomic.Int64
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range calls {
				ctx, cancel := context.WithCancel(context.Background())
				ctx = context.WithValue(ctx, cancelKey{}, cancel)
				r := f.request(ctx, "", http.Header{
					"X-Cost":   {strconv.Itoa(1 + rng.IntN(3))},
					"X-Behave": {behaviours[rng.IntN(len(behaviours))]},
				})
				w, _ := serve(h, r)
				cancel()
				switch {
				case w.Code == http.StatusOK && w.Header().Get("X-Final-Cost") != "":
					n, _ := strconv.ParseInt(w.Header().Get("X-Final-Cost"), 10, 64)
					committed.Add(n)
					succeeded.Add(1)
				case w.Code == http.StatusPaymentRequired:
					refused.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	b := f.balance(t)
	assert.Equal(t, committed.Load(), b.Spent, "committed total = initial − final balance")
	assert.Equal(t, 10_000-committed.Load(), b.Available)
	assert.LessOrEqual(t, b.Spent, int64(10_000))
	assert.Zero(t, b.Reserved)
	assert.Zero(t, b.OpenReservations)
	assert.Positive(t, succeeded.Load())
	assert.Positive(t, refused.Load(), "the balance never ran out; the test proves less")
	t.Logf("%d succeeded, %d refused, %d credits committed", succeeded.Load(), refused.Load(), committed.Load())
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

package keyward_test

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
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

// settleGoroutines waits for the goroutine count to fall back to at most
// want, and fails with every stack if it does not.
func settleGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines: %d, want ≤ %d\n%s", runtime.NumGoroutine(), want, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// slowStore answers after delay, or when ctx ends: a database that takes
// seconds per lookup but honours cancellation, as the KeyStore contract
// asks.
type slowStore struct {
	keyward.KeyStore
	delay    time.Duration
	calls    atomic.Int64
	inFlight atomic.Int64
}

func (s *slowStore) LookupKey(ctx context.Context, h keyward.KeyHash) (*keyward.KeyRecord, error) {
	s.calls.Add(1)
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	select {
	case <-time.After(s.delay):
		return s.KeyStore.LookupKey(ctx, h)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestSlowStore: every lookup takes 3 s. Requests end with their own
// deadline (200 ms) with a 503, never a 401; concurrent requests for one
// key share one store call; requests for many keys make one store call
// each, which ends at the cache's LookupTimeout, not the store's 3 s; and
// no goroutine is left once they have.
//
// Not parallel: it counts goroutines.
func TestSlowStore(t *testing.T) {
	ctx := context.Background()
	store, err := memstore.New(memstore.Options{Prefix: "triq_"})
	require.NoError(t, err)
	org, err := store.CreateOrg(ctx, manage.OrgSpec{Name: "acme"})
	require.NoError(t, err)
	slow := &slowStore{KeyStore: store, delay: 3 * time.Second}
	const lookupTimeout = 500 * time.Millisecond
	cache, err := keyward.NewCache(slow, keyward.CacheConfig{LookupTimeout: lookupTimeout})
	require.NoError(t, err)
	defer cache.Close()
	logs := &syncBuffer{}
	auth, err := keyward.RequireAPIKey(keyward.AuthConfig{Keys: cache, Prefix: "triq_",
		Errors: &keyward.ErrorWriter{Logger: slog.New(slog.NewTextHandler(logs, nil))}})
	require.NoError(t, err)
	h := auth.Middleware(okHandler)
	keys := make([]string, 40)
	for i := range keys {
		k, err := store.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "k"})
		require.NoError(t, err)
		keys[i] = k.Key
	}

	run := func(pick func(i int) string) (codes map[int]int, slowest time.Duration) {
		codes = map[int]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				defer cancel()
				r := httptest.NewRequestWithContext(rctx, http.MethodGet, "/", nil)
				r.Header.Set("X-API-Key", pick(i))
				w := httptest.NewRecorder()
				start := time.Now()
				h.ServeHTTP(w, r)
				d := time.Since(start)
				mu.Lock()
				defer mu.Unlock()
				codes[w.Code]++
				slowest = max(slowest, d)
			}()
		}
		wg.Wait()
		return codes, slowest
	}

	before := runtime.NumGoroutine()
	codes, slowest := run(func(int) string { return keys[0] })
	t.Logf("one key: %v, slowest %v, %d store call(s), %d goroutines over the baseline",
		codes, slowest.Round(time.Millisecond), slow.calls.Load(), runtime.NumGoroutine()-before)
	assert.Equal(t, map[int]int{http.StatusServiceUnavailable: 40}, codes, "503, never 401")
	assert.Less(t, slowest, time.Second, "a request ends with its own deadline")
	assert.Equal(t, int64(1), slow.calls.Load(), "one store call for one key (singleflight)")
	// Every request has returned; only the shared lookup is left.
	assert.LessOrEqual(t, runtime.NumGoroutine(), before+2, "no pile-up beyond the singleflight")
	require.Eventually(t, func() bool { return slow.inFlight.Load() == 0 }, 2*lookupTimeout, 5*time.Millisecond,
		"the shared lookup ends at LookupTimeout")
	settleGoroutines(t, before)

	calls := slow.calls.Load()
	codes, slowest = run(func(i int) string { return keys[i] })
	t.Logf("40 keys: %v, slowest %v, %d store calls", codes, slowest.Round(time.Millisecond), slow.calls.Load()-calls)
	assert.Equal(t, map[int]int{http.StatusServiceUnavailable: 40}, codes)
	assert.Less(t, slowest, time.Second)
	assert.Equal(t, int64(40), slow.calls.Load()-calls, "one store call per key")
	require.Eventually(t, func() bool { return slow.inFlight.Load() == 0 }, 2*lookupTimeout, 5*time.Millisecond,
		"every lookup ends at LookupTimeout, not the store's 3 s")
	settleGoroutines(t, before)
	for _, k := range keys {
		assert.NotContains(t, logs.String(), k[5:])
	}

	// Once the store is fast again, the same process serves.
	slow.delay = 0
	codes, _ = run(func(i int) string { return keys[i] })
	assert.Equal(t, map[int]int{http.StatusOK: 40}, codes)
}

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

package keyward_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/memstore"
	"github.com/stretchr/testify/require"
)

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
	srv, key, ledger, acct := chargedServer(t, 300*time.Millisecond, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(1100 * time.Millisecond) // more than three TTLs
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

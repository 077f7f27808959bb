package keyward_test

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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

package keyward

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/rate"

	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/internal/perm"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestErrorWriterPinsMeta(t *testing.T) {
	t.Parallel()
	ew := &ErrorWriter{
		Version:   "2.0.0",
		Now:       func() time.Time { return time.Date(2026, 1, 19, 10, 30, 0, 0, time.FixedZone("X", 3600)) },
		RequestID: func(*http.Request) string { return "fixed" },
	}
	w := httptest.NewRecorder()
	ew.WriteError(w, httptest.NewRequest(http.MethodGet, "/", nil), insufficientCredits(3, 1, credit.ErrInsufficientCredits))
	assert.Equal(t, http.StatusPaymentRequired, w.Code)
	assert.JSONEq(t, `{"success":false,"error":{"code":"insufficient_credits",
		"message":"Insufficient credits. Enable overages or upgrade your plan.",
		"details":{"creditsRequired":3,"creditsRemaining":1}},
		"meta":{"generatedAt":"2026-01-19T09:30:00Z","requestId":"fixed","version":"2.0.0"}}`, w.Body.String())
	// A plain error becomes a 500 that reveals nothing of it.
	w = httptest.NewRecorder()
	ew.Logger = slog.New(slog.DiscardHandler)
	ew.WriteError(w, httptest.NewRequest(http.MethodGet, "/", nil), errors.New("secret detail"))
	assert.Equal(t, http.StatusInternalServerError, w.Code)
	assert.NotContains(t, w.Body.String(), "secret detail")
}

// errors.Is matches an *Error by code, and by reason when the target names
// one: the templates that replaced the sentinels.
func TestErrorIsMatchesCodeAndReason(t *testing.T) {
	t.Parallel()
	limited := rateLimited(rate.PerMinute, 60, time.Now(), time.Second)
	assert.ErrorIs(t, limited, &Error{Code: CodeRateLimited})
	assert.NotErrorIs(t, limited, &Error{Code: CodeInsufficientCredits})
	f := newAuthFailures("X-API-Key", "triq_", false)
	revoked := &Error{Code: CodeAuthentication, Reason: ReasonRevokedAPIKey}
	expired := &Error{Code: CodeAuthentication, Reason: ReasonExpiredAPIKey}
	assert.ErrorIs(t, f.revoked, revoked)
	assert.NotErrorIs(t, f.revoked, expired)
	assert.NotErrorIs(t, revoked, expired)
	assert.ErrorIs(t, f.expired, &Error{Code: CodeAuthentication}, "no reason: any reason")
	// Wrapped, and with a cause of its own.
	wrapped := errors.Join(errors.New("context"), insufficientCredits(1, 0, credit.ErrInsufficientCredits))
	assert.ErrorIs(t, wrapped, &Error{Code: CodeInsufficientCredits})
	assert.ErrorIs(t, wrapped, credit.ErrInsufficientCredits)
	assert.NotErrorIs(t, errors.New("plain"), &Error{Code: CodeInternal})
}

// ErrorWriter.Message replaces a failure's message; "" keeps keyward's.
func TestErrorWriterMessage(t *testing.T) {
	t.Parallel()
	ew := &ErrorWriter{Message: func(e *Error) string {
		if e.Reason == ReasonMissingAPIKey {
			return "Sign in at https://example.com/keys to get a key."
		}
		return ""
	}}
	f := newAuthFailures("X-API-Key", "triq_", false)
	w := httptest.NewRecorder()
	ew.WriteError(w, httptest.NewRequest(http.MethodGet, "/", nil), f.missing)
	assert.Contains(t, w.Body.String(), `"message":"Sign in at https://example.com/keys to get a key."`)
	assert.Contains(t, w.Body.String(), `"reason":"missing_api_key"`)
	assert.Equal(t, "API key is missing. Send your key in the X-API-Key header.", f.missing.Message, "the template is untouched")
	w = httptest.NewRecorder()
	ew.WriteError(w, httptest.NewRequest(http.MethodGet, "/", nil), f.revoked)
	assert.Contains(t, w.Body.String(), f.revoked.Message)
}

// WriteError answers a request whose context was cancelled (net/http
// cancels it when the body could not be read, too: then a handler that
// wrote nothing would be answered an empty 200) without logging its 5xx,
// and answers one whose deadline passed.
func TestErrorWriterAnswersACancelledRequest(t *testing.T) {
	t.Parallel()
	var logs strings.Builder
	ew := &ErrorWriter{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := httptest.NewRecorder()
	ew.WriteError(w, httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil), ServiceUnavailable("key store", errors.New("x")))
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Contains(t, w.Body.String(), `"code":"service_unavailable"`)
	assert.Empty(t, logs.String(), "a departed client is not an outage")

	ctx, cancel = context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	w = httptest.NewRecorder()
	ew.WriteError(w, httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil), ServiceUnavailable("key store", errors.New("x")))
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
}

func TestMissingPermissions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		held, req   []string
		wantMissing []string
	}{
		{"exact", []string{"transactions:enrich"}, []string{"transactions:enrich"}, nil},
		{"one of several held", []string{"categories:read", "transactions:enrich"}, []string{"transactions:enrich"}, nil},
		{"resource wildcard", []string{"transactions:*"}, []string{"transactions:enrich", "transactions:read"}, nil},
		{"global wildcard", []string{"*"}, []string{"transactions:enrich", "categories:read"}, nil},
		{"other resource", []string{"transactions:*"}, []string{"categories:read"}, []string{"categories:read"}},
		{"other action", []string{"transactions:read"}, []string{"transactions:enrich"}, []string{"transactions:enrich"}},
		{"missing several", []string{"categories:read"}, []string{"transactions:enrich", "categories:read", "transactions:read"}, []string{"transactions:enrich", "transactions:read"}},
		{"none held", nil, []string{"transactions:enrich"}, []string{"transactions:enrich"}},
		{"case sensitive", []string{"Transactions:enrich"}, []string{"transactions:enrich"}, []string{"transactions:enrich"}},
		{"case sensitive wildcard", []string{"Transactions:*"}, []string{"transactions:enrich"}, []string{"transactions:enrich"}},
		{"prefix is not a resource", []string{"trans:*"}, []string{"transactions:enrich"}, []string{"transactions:enrich"}},
		{"resource prefix wildcard", []string{"transactions:*"}, []string{"transactionsx:read"}, []string{"transactionsx:read"}},
		{"action wildcard is not a resource", []string{"*:read"}, []string{"transactions:read"}, []string{"transactions:read"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.wantMissing, perm.Missing(tc.held, tc.req))
		})
	}
}

func TestValidatePermission(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"*", "transactions:enrich", "transactions:*", "a.b:c-d_e"} {
		assert.NoError(t, validatePermission(ok), ok)
	}
	bad := []string{"", "transactions", ":read", "transactions:", "a:b:c", "a b:c", "*:read", "**", "tx:é"}
	for _, p := range bad {
		assert.Error(t, validatePermission(p), p)
	}
	// ValidatePermissions reports every bad one.
	err := ValidatePermissions(append([]string{"ok:read"}, bad...))
	require.Error(t, err)
	assert.NotContains(t, err.Error(), `"ok:read"`)
	assert.Contains(t, err.Error(), `"a b:c"`)
	assert.Contains(t, err.Error(), `"tx:é"`)
	assert.NoError(t, ValidatePermissions(nil))
}

// nopLedger is a credit.Ledger that is never called.
type nopLedger struct{ credit.Ledger }

// Every refusal of package idempotency is the catalogue's failure for it.
func TestIdempotencyFailures(t *testing.T) {
	c, err := ChargeCredits(CreditConfig{Ledger: nopLedger{}})
	require.NoError(t, err)
	for err, reason := range map[error]string{
		errIdemConflict:       ReasonConflictingIdempotencyKeys,
		errIdemMalformed:      ReasonInvalidIdempotencyKey,
		errIdemBodyTooLarge:   ReasonIdempotentBodyTooLarge,
		errIdemBodyUnreadable: ReasonUnreadableBody,
	} {
		assert.Equal(t, reason, c.fail.of(err).Reason, "%v", err)
	}
}

// The two envelopes, byte for byte: one meta, the same headers.
func TestEnvelopesAreSiblings(t *testing.T) {
	t.Parallel()
	ew := &ErrorWriter{
		Version:   "1.0.0",
		Now:       func() time.Time { return time.Date(2026, 1, 19, 10, 30, 0, 0, time.UTC) },
		RequestID: func(*http.Request) string { return "r1" },
		Logger:    slog.New(slog.DiscardHandler),
	}
	meta := `"meta":{"generatedAt":"2026-01-19T10:30:00Z","requestId":"r1","version":"1.0.0"}}` + "\n"
	headers := func(t *testing.T, w *httptest.ResponseRecorder) {
		t.Helper()
		assert.Equal(t, "application/json; charset=utf-8", w.Header().Get("Content-Type"))
		assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
		assert.Equal(t, "nosniff", w.Header().Get("X-Content-Type-Options"))
		assert.Equal(t, "r1", w.Header().Get("X-Request-Id"))
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)

	w := httptest.NewRecorder()
	ew.WriteData(w, r, http.StatusCreated, map[string]any{"id": "org_1", "tags": []string{"<a>"}})
	assert.Equal(t, http.StatusCreated, w.Code)
	assert.Equal(t, `{"success":true,"data":{"id":"org_1","tags":["\u003ca\u003e"]},`+meta, w.Body.String())
	headers(t, w)

	w = httptest.NewRecorder()
	ew.WriteData(w, r, http.StatusOK, nil)
	assert.Equal(t, `{"success":true,"data":null,`+meta, w.Body.String())

	w = httptest.NewRecorder()
	ew.WriteError(w, r, &Error{Status: http.StatusTooManyRequests, Code: "rate_limited", Message: "Slow down.", Details: map[string]any{"limit": 60}})
	assert.Equal(t, `{"success":false,"error":{"code":"rate_limited","message":"Slow down.","details":{"limit":60}},`+meta, w.Body.String())
	headers(t, w)

	w = httptest.NewRecorder()
	ew.WriteError(w, r, &Error{Status: http.StatusBadRequest, Code: "x", Message: "m", Details: map[string]any{"f": func() {}}})
	assert.Equal(t, http.StatusInternalServerError, w.Code, "details that cannot be encoded")
	assert.Equal(t, `{"success":false,"error":{"code":"internal_error","message":"An internal error occurred.","details":{}},`+meta, w.Body.String())

	w = httptest.NewRecorder()
	ew.WriteData(w, r, http.StatusOK, func() {})
	assert.Equal(t, http.StatusInternalServerError, w.Code, "data that cannot be encoded")
	assert.Contains(t, w.Body.String(), `"code":"internal_error"`)

	// A nil *ErrorWriter writes with the defaults.
	w = httptest.NewRecorder()
	(*ErrorWriter)(nil).WriteData(w, r, http.StatusOK, "x")
	assert.Contains(t, w.Body.String(), `"data":"x"`)
	assert.NotEmpty(t, w.Header().Get("X-Request-Id"))

	// Status 0 is 200; a status no success envelope can have is a 500.
	w = httptest.NewRecorder()
	ew.WriteData(w, r, 0, "x")
	assert.Equal(t, http.StatusOK, w.Code)
	for _, status := range []int{http.StatusNoContent, http.StatusFound, http.StatusBadRequest, http.StatusInternalServerError, 1000} {
		w = httptest.NewRecorder()
		ew.WriteData(w, r, status, "x")
		assert.Equal(t, http.StatusInternalServerError, w.Code, "status %d", status)
		assert.Contains(t, w.Body.String(), `"success":false`, "status %d", status)
	}
}

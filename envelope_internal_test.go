package keyward

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

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
}

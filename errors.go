package keyward

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// Error codes: the envelope's error.code.
const (
	CodeAuthentication      = "authentication_error"
	CodeAuthorization       = "authorization_error"
	CodeInsufficientCredits = "insufficient_credits"
	CodeRateLimited         = "rate_limited"
	CodeValidation          = "validation_error"
	CodeServiceUnavailable  = "service_unavailable"
	CodeInternal            = "internal_error"
)

// Reasons: the envelope's error.details.reason.
const (
	ReasonMissingAPIKey         = "missing_api_key"
	ReasonInvalidAPIKey         = "invalid_api_key"
	ReasonInvalidAPIKeyFormat   = "invalid_api_key_format"
	ReasonRevokedAPIKey         = "revoked_api_key"
	ReasonExpiredAPIKey         = "expired_api_key"
	ReasonEnvironmentNotAllowed = "environment_not_allowed"
	ReasonMissingPermissions    = "missing_permissions"
)

// DefaultVersion is meta.version when ErrorWriter.Version is empty.
const DefaultVersion = "1.0.0"

// Error is a request failure, decided once and written by ErrorWriter. It
// carries everything the response needs; nothing in it is ever taken from
// the presented key.
//
// Errors are compared with errors.Is against the sentinels below: two
// errors match when their codes match and, if the target has a reason,
// their reasons match too.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Code is error.code, one of the Code constants.
	Code string
	// Reason is details.reason; empty for none.
	Reason string
	// Message is error.message: what happened and how to fix it.
	Message string
	// Details are further members of error.details. The writer never
	// modifies the map.
	Details map[string]any
	// Header holds response headers to set (not add) with the body, such
	// as Retry-After or WWW-Authenticate. The writer copies the values.
	Header http.Header
	// Cause is the underlying error for a 5xx, logged and never sent.
	Cause error
}

// Error returns "keyward: code (reason): message".
func (e *Error) Error() string {
	s := "keyward: " + e.Code
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// Is reports whether target is an *Error with the same code and, when the
// target names a reason, the same reason.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	return t.Code == e.Code && (t.Reason == "" || t.Reason == e.Reason)
}

// Sentinels for errors.Is. They are templates: the errors a request gets
// carry a specific message and details.
var (
	ErrMissingAPIKey         = &Error{Status: http.StatusUnauthorized, Code: CodeAuthentication, Reason: ReasonMissingAPIKey}
	ErrInvalidAPIKey         = &Error{Status: http.StatusUnauthorized, Code: CodeAuthentication, Reason: ReasonInvalidAPIKey}
	ErrInvalidAPIKeyFormat   = &Error{Status: http.StatusUnauthorized, Code: CodeAuthentication, Reason: ReasonInvalidAPIKeyFormat}
	ErrRevokedAPIKey         = &Error{Status: http.StatusUnauthorized, Code: CodeAuthentication, Reason: ReasonRevokedAPIKey}
	ErrExpiredAPIKey         = &Error{Status: http.StatusUnauthorized, Code: CodeAuthentication, Reason: ReasonExpiredAPIKey}
	ErrEnvironmentNotAllowed = &Error{Status: http.StatusForbidden, Code: CodeAuthorization, Reason: ReasonEnvironmentNotAllowed}
	ErrPermissionDenied      = &Error{Status: http.StatusForbidden, Code: CodeAuthorization, Reason: ReasonMissingPermissions}
	ErrRateLimited           = &Error{Status: http.StatusTooManyRequests, Code: CodeRateLimited}
	ErrPaymentRequired       = &Error{Status: http.StatusPaymentRequired, Code: CodeInsufficientCredits}
	ErrValidation            = &Error{Status: http.StatusBadRequest, Code: CodeValidation}
	ErrServiceUnavailable    = &Error{Status: http.StatusServiceUnavailable, Code: CodeServiceUnavailable}
	ErrInternal              = &Error{Status: http.StatusInternalServerError, Code: CodeInternal}
)

// ServiceUnavailable is the 503 for a key store, ledger or limiter store
// that could not be reached: keyward fails closed. what names the part
// ("key store", "credit ledger", …); cause is logged, never sent.
func ServiceUnavailable(what string, cause error) *Error {
	return &Error{
		Status:  http.StatusServiceUnavailable,
		Code:    CodeServiceUnavailable,
		Message: "The " + what + " is temporarily unavailable. Retry the request shortly.",
		Header:  http.Header{"Retry-After": {"1"}},
		Cause:   cause,
	}
}

// Misconfigured is the 500 for a mistake in how the server wires keyward
// that only shows at request time, such as a handler that needs a
// Principal used without RequireAPIKey in front of it.
func Misconfigured(problem string) *Error {
	return &Error{
		Status:  http.StatusInternalServerError,
		Code:    CodeInternal,
		Message: "The server is misconfigured: " + problem + ".",
		Cause:   errors.New("keyward: misconfigured: " + problem),
	}
}

// PermissionDenied is the 403 for a key that lacks permissions the route
// requires.
func PermissionDenied(required, missing []string) *Error {
	msg := "API key is missing the permission " + quoteList(missing) +
		". Create a key with it in the dashboard."
	if len(missing) > 1 {
		msg = "API key is missing the permissions " + quoteList(missing) +
			". Create a key with them in the dashboard."
	}
	return &Error{
		Status:  http.StatusForbidden,
		Code:    CodeAuthorization,
		Reason:  ReasonMissingPermissions,
		Message: msg,
		Details: map[string]any{"required": required, "missing": missing},
	}
}

func quoteList(ss []string) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += ", "
		}
		out += strconv.Quote(s)
	}
	return out
}

// RateLimited is the 429 for an organization over its rate limit.
// retryAfter is rounded up to whole seconds, at least 1.
func RateLimited(limit, remaining int64, reset time.Time, retryAfter time.Duration) *Error {
	secs := int64((retryAfter + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return &Error{
		Status: http.StatusTooManyRequests,
		Code:   CodeRateLimited,
		Message: fmt.Sprintf("Rate limit exceeded. Maximum %d requests per minute. Retry after %d seconds.",
			limit, secs),
		Details: map[string]any{
			"limit":      limit,
			"remaining":  remaining,
			"resetAt":    reset.UTC().Format(time.RFC3339),
			"retryAfter": secs,
		},
		Header: http.Header{"Retry-After": {strconv.FormatInt(secs, 10)}},
	}
}

// InsufficientCredits is the 402 for an organization whose available
// credits do not cover the cost of a call and that does not allow overage.
func InsufficientCredits(required, remaining int64) *Error {
	return &Error{
		Status:  http.StatusPaymentRequired,
		Code:    CodeInsufficientCredits,
		Message: "Insufficient credits. Enable overages or upgrade your plan.",
		Details: map[string]any{"creditsRequired": required, "creditsRemaining": remaining},
	}
}

// Validation is a 4xx validation_error (400 for bad headers, 422 for a bad
// body) with a message and optional details.
func Validation(status int, message string, details map[string]any) *Error {
	return &Error{Status: status, Code: CodeValidation, Message: message, Details: details}
}

// ErrorWriter writes every failure in one envelope:
//
//	{"success":false,"error":{"code":…,"message":…,"details":{…}},
//	 "meta":{"generatedAt":…,"requestId":…,"version":…}}
//
// with Content-Type application/json; charset=utf-8, Cache-Control
// no-store and X-Request-Id. A nil *ErrorWriter writes with the defaults
// of every field. Set its fields before first use and not after.
type ErrorWriter struct {
	// Version is meta.version. Empty: DefaultVersion.
	Version string
	// Now gives meta.generatedAt. Nil: time.Now.
	Now func() time.Time
	// RequestID gives meta.requestId and the X-Request-Id header. Nil: a
	// sane incoming X-Request-Id (1 to 128 characters of letters, digits
	// and ._-) is echoed, otherwise a random UUID is generated.
	RequestID func(r *http.Request) string
	// Logger receives one record per 5xx, with its cause. Nil:
	// slog.Default(). 4xx failures are the client's and are not logged.
	Logger *slog.Logger
}

type envelope struct {
	Success bool          `json:"success"`
	Error   envelopeError `json:"error"`
	Meta    envelopeMeta  `json:"meta"`
}

type envelopeError struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details"`
}

type envelopeMeta struct {
	GeneratedAt string `json:"generatedAt"`
	RequestID   string `json:"requestId"`
	Version     string `json:"version"`
}

// WriteError writes err as the envelope. An error that is not an *Error
// (nor wraps one) is written as a 500 internal_error whose message reveals
// nothing of it; the error itself is logged.
func (ew *ErrorWriter) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{
			Status:  http.StatusInternalServerError,
			Code:    CodeInternal,
			Message: "An internal error occurred.",
			Cause:   err,
		}
	}
	if e.Status >= 500 && errors.Is(e.Cause, context.Canceled) && r.Context().Err() != nil {
		// The client went away while we waited on its behalf: nobody is
		// there to answer, and it is no outage to log.
		return
	}
	reqID := ew.requestID(r)
	details := make(map[string]any, len(e.Details)+1)
	for k, v := range e.Details {
		details[k] = v
	}
	if e.Reason != "" {
		details["reason"] = e.Reason
	}
	body, merr := json.Marshal(envelope{
		Error: envelopeError{Code: e.Code, Message: e.Message, Details: details},
		Meta: envelopeMeta{
			GeneratedAt: ew.now().UTC().Format(time.RFC3339),
			RequestID:   reqID,
			Version:     ew.version(),
		},
	})
	if merr != nil {
		// Only a Details value that cannot be encoded gets here.
		e = &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Cause: errors.Join(err, merr)}
		body, _ = json.Marshal(envelope{
			Error: envelopeError{Code: CodeInternal, Message: "An internal error occurred.", Details: map[string]any{}},
			Meta:  envelopeMeta{GeneratedAt: ew.now().UTC().Format(time.RFC3339), RequestID: reqID, Version: ew.version()},
		})
	}
	if e.Status >= 500 {
		ew.logger().LogAttrs(r.Context(), slog.LevelError, "keyward: request failed",
			slog.Int("status", e.Status),
			slog.String("code", e.Code),
			slog.String("requestId", reqID),
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Any("error", e.Cause),
		)
	}
	h := w.Header()
	for k, vs := range e.Header {
		h[k] = append([]string(nil), vs...)
	}
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Request-Id", reqID)
	h.Del("Content-Length")
	w.WriteHeader(e.Status)
	_, _ = w.Write(append(body, '\n'))
}

func (ew *ErrorWriter) now() time.Time {
	if ew != nil && ew.Now != nil {
		return ew.Now()
	}
	return time.Now()
}

func (ew *ErrorWriter) version() string {
	if ew != nil && ew.Version != "" {
		return ew.Version
	}
	return DefaultVersion
}

func (ew *ErrorWriter) logger() *slog.Logger {
	if ew != nil && ew.Logger != nil {
		return ew.Logger
	}
	return slog.Default()
}

// RequestIDFor returns the request id WriteError would give r (RequestID,
// else a sane incoming X-Request-Id, else a new random UUID), so that a
// successful answer can carry an id made by the same rule.
func (ew *ErrorWriter) RequestIDFor(r *http.Request) string { return ew.requestID(r) }

func (ew *ErrorWriter) requestID(r *http.Request) string {
	if ew != nil && ew.RequestID != nil {
		return ew.RequestID(r)
	}
	if id := r.Header.Get("X-Request-Id"); saneRequestID(id) {
		return id
	}
	return newUUID()
}

// saneRequestID reports whether an incoming request id may be echoed and
// stored: 1 to 128 letters, digits and ._-, with no run of
// keyRunLen letters and digits. Every keyward key, whatever its prefix,
// ends in such a run (its random body and checksum), so a client that sends
// a key as its request id never gets it echoed, logged or stored; request
// ids in common use (UUIDs, ULIDs, trace ids, prefixed ids) have shorter
// runs.
func saneRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	run := 0
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9':
			if run++; run >= keyRunLen {
				return false
			}
		case c == '.' || c == '_' || c == '-':
			run = 0
		default:
			return false
		}
	}
	return true
}

// keyRunLen is the length of the run of base62 characters that ends every
// key: its random body and its checksum.
const keyRunLen = bodyLen + checksumLen

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// ConfigError is one problem in a configuration, found at construction.
// Constructors return every problem at once, joined with errors.Join.
type ConfigError struct {
	// Field names the configuration field.
	Field string
	// Problem says what is wrong with it.
	Problem string
}

// Error returns "keyward: Field Problem".
func (e *ConfigError) Error() string { return "keyward: " + e.Field + " " + e.Problem }

var errZeroKeyFormat = errors.New("keyward: zero KeyFormat; build one with NewKeyFormat")

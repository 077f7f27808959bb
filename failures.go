package keyward

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/internal/ascii"
	"github.com/keyward/keyward/internal/detach"
	"github.com/keyward/keyward/internal/ids"
	"github.com/keyward/keyward/rate"
)

// This file is the one catalogue of failures: every code, reason, status
// and message a client can get from keyward, and the one writer that sends
// them. Handlers decide which failure applies; nothing else writes one.

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
	ReasonMissingAPIKey         = "missing_api_key"         // 401
	ReasonInvalidAPIKey         = "invalid_api_key"         // 401: unknown, malformed or several keys
	ReasonInvalidAPIKeyFormat   = "invalid_api_key_format"  // 401: not the configured prefix
	ReasonRevokedAPIKey         = "revoked_api_key"         // 401
	ReasonExpiredAPIKey         = "expired_api_key"         // 401
	ReasonEnvironmentNotAllowed = "environment_not_allowed" // 403
	ReasonMissingPermissions    = "missing_permissions"     // 403

	ReasonInvalidIdempotencyKey      = "invalid_idempotency_key"      // 400: not 1 to 64 of [A-Za-z0-9_-]
	ReasonConflictingIdempotencyKeys = "conflicting_idempotency_keys" // 400: two different keys, or one sent twice
	ReasonIdempotencyKeyInUse        = "idempotency_key_in_use"       // 409: a call with the key is in flight
	ReasonIdempotencyKeyReused       = "idempotency_key_reused"       // 422: the key was used for another request
	ReasonIdempotentBodyTooLarge     = "idempotent_body_too_large"    // 413
	ReasonUnreadableBody             = "unreadable_body"              // 400
)

// DefaultVersion is meta.version when ErrorWriter.Version is empty.
const DefaultVersion = "1.0.0"

// Error is a request failure, decided once and written by ErrorWriter. It
// carries everything the response needs; nothing in it is ever taken from
// the presented key.
//
// errors.Is(err, &Error{Code: c, Reason: r}) matches an *Error of code c
// and, when r is not empty, reason r.
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
	// Cause is the underlying error, logged for a 5xx and never sent.
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
	return ok && t.Code == e.Code && (t.Reason == "" || t.Reason == e.Reason)
}

// Validation is a 4xx validation_error with a message and optional
// details, for a CostFunc or a handler that refuses a request: 400 for bad
// headers or parameters, 422 for a bad body.
func Validation(status int, message string, details map[string]any) *Error {
	return &Error{Status: status, Code: CodeValidation, Message: message, Details: details}
}

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

// misconfigured is the 500 for a wiring mistake seen at request time: the
// client learns that, and its request id; the problem goes to the log.
func misconfigured(problem string) *Error {
	return &Error{
		Status:  http.StatusInternalServerError,
		Code:    CodeInternal,
		Message: "The service is misconfigured. Report the request id to its operator.",
		Cause:   errors.New("keyward: misconfigured: " + problem),
	}
}

func unauthenticated(reason, msg, header string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: CodeAuthentication, Reason: reason, Message: msg,
		Header: http.Header{"Www-Authenticate": {`APIKey header="` + header + `"`}}}
}

// authFailures are the 401s of one Authenticator, built once.
type authFailures struct {
	missing, multiple, format, invalid, revoked, expired *Error
}

func newAuthFailures(header, prefix string, bearer bool) authFailures {
	where := "in the " + header + " header"
	if bearer {
		where += " or as Authorization: Bearer"
	}
	return authFailures{
		missing:  unauthenticated(ReasonMissingAPIKey, "API key is missing. Send your key "+where+".", header),
		multiple: unauthenticated(ReasonInvalidAPIKey, "More than one API key was sent. Send exactly one, "+where+".", header),
		format:   unauthenticated(ReasonInvalidAPIKeyFormat, "API key format is invalid. Ensure the key starts with "+prefix+".", header),
		invalid:  unauthenticated(ReasonInvalidAPIKey, "API key is invalid. Check that the whole key was copied, or generate a new key in the dashboard.", header),
		revoked:  unauthenticated(ReasonRevokedAPIKey, "API key has been revoked. Generate a new key in the dashboard.", header),
		expired:  unauthenticated(ReasonExpiredAPIKey, "API key has expired. Generate a new key in the dashboard.", header),
	}
}

func environmentNotAllowed(env Environment, allowed []Environment) *Error {
	return &Error{
		Status:  http.StatusForbidden,
		Code:    CodeAuthorization,
		Reason:  ReasonEnvironmentNotAllowed,
		Message: "This endpoint does not accept " + string(env) + " keys. Use a key of an accepted environment.",
		Details: map[string]any{"environment": env, "allowed": allowed},
	}
}

func permissionDenied(required, missing []string) *Error {
	msg := "API key is missing the permission " + quoteList(missing) + ". Create a key with it in the dashboard."
	if len(missing) > 1 {
		msg = "API key is missing the permissions " + quoteList(missing) + ". Create a key with them in the dashboard."
	}
	return &Error{
		Status:  http.StatusForbidden,
		Code:    CodeAuthorization,
		Reason:  ReasonMissingPermissions,
		Message: msg,
		Details: map[string]any{"required": required, "missing": missing},
	}
}

// plural is n and unit, in the plural unless n is 1: "1 request",
// "2 requests".
func plural(n int64, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return strconv.FormatInt(n, 10) + " " + unit + "s"
}

// rateLimited is the 429 of a request the limit of scope refused, as
// Triqai words it: the limit, and the precise wait in the message and in
// details (retryAfterMs), rounded up to whole seconds (at least 1) in
// Retry-After and details.retryAfter.
func rateLimited(scope rate.Scope, limit int64, reset time.Time, wait time.Duration) *Error {
	secs := max(int64((wait+time.Second-1)/time.Second), 1)
	ms := max(int64((wait+time.Millisecond-1)/time.Millisecond), 1)
	after := plural(secs, "second")
	if ms < 1000 {
		after = plural(ms, "millisecond")
	}
	what := map[rate.Scope]string{
		rate.PerSecond:    "Rate limit exceeded. Maximum " + plural(limit, "request") + " per second.",
		rate.PerMinute:    "Rate limit exceeded. Maximum " + plural(limit, "request") + " per minute.",
		rate.KeyPerMinute: "Rate limit exceeded. Maximum " + plural(limit, "request") + " per minute for this API key.",
		rate.InFlight:     "Too many requests in flight. Maximum " + plural(limit, "concurrent request") + ".",
		rate.FailedAuthScope: "Too many requests with a missing or invalid API key. Maximum " + strconv.FormatInt(limit, 10) +
			" a minute from one client.",
	}[scope]
	return &Error{
		Status:  http.StatusTooManyRequests,
		Code:    CodeRateLimited,
		Message: what + " Retry after " + after + ".",
		Details: map[string]any{
			"scope":        string(scope),
			"limit":        limit,
			"remaining":    0,
			"resetAt":      reset.Add(time.Second - 1).Truncate(time.Second).UTC().Format(time.RFC3339), // rounded up, as the header
			"retryAfter":   secs,
			"retryAfterMs": ms,
		},
		Header: http.Header{"Retry-After": {strconv.FormatInt(secs, 10)}, "X-Ratelimit-Scope": {string(scope)}},
	}
}

// insufficientCredits is the 402 for an organization without overage
// whose available credits do not cover a call. It wraps the ledger's error.
func insufficientCredits(required, remaining int64, cause error) *Error {
	return &Error{
		Status:  http.StatusPaymentRequired,
		Code:    CodeInsufficientCredits,
		Message: "Insufficient credits. Enable overages or upgrade your plan.",
		Details: map[string]any{"creditsRequired": required, "creditsRemaining": max(remaining, 0)},
		Cause:   cause,
	}
}

// creditFailures are the idempotency failures of one Charger, built once.
type creditFailures struct {
	badKey, twoKeys, keyInUse, keyReused, bodyTooLarge, bodyUnreadable *Error
}

func newCreditFailures(maxBody int64) creditFailures {
	v := func(status int, reason, msg string) *Error {
		return &Error{Status: status, Code: CodeValidation, Reason: reason, Message: msg}
	}
	f := creditFailures{
		badKey:         v(http.StatusBadRequest, ReasonInvalidIdempotencyKey, "Idempotency-Key must be 1 to 64 letters, digits, '_' or '-'."),
		twoKeys:        v(http.StatusBadRequest, ReasonConflictingIdempotencyKeys, "Idempotency-Key and X-Idempotency-Key disagree. Send one idempotency key, once."),
		keyInUse:       v(http.StatusConflict, ReasonIdempotencyKeyInUse, "A request with this Idempotency-Key is still in progress. Retry after it completes."),
		keyReused:      v(http.StatusUnprocessableEntity, ReasonIdempotencyKeyReused, "This Idempotency-Key was used for a different request. Use a new key for a new request."),
		bodyTooLarge:   v(http.StatusRequestEntityTooLarge, ReasonIdempotentBodyTooLarge, "The body of a request with an Idempotency-Key may be at most "+strconv.FormatInt(maxBody, 10)+" bytes."),
		bodyUnreadable: v(http.StatusBadRequest, ReasonUnreadableBody, "The request body could not be read."),
	}
	f.keyInUse.Header = http.Header{"Retry-After": {"1"}}
	f.keyInUse.Cause = credit.ErrIdempotencyKeyInUse
	f.keyReused.Cause = credit.ErrIdempotencyKeyReused
	f.bodyTooLarge.Details = map[string]any{"maxBytes": maxBody}
	return f
}

// of is the failure for an error of idemKey or idemFingerprint.
func (f creditFailures) of(err error) *Error {
	switch {
	case errors.Is(err, errIdemConflict):
		return f.twoKeys
	case errors.Is(err, errIdemBodyTooLarge):
		return f.bodyTooLarge
	case errors.Is(err, errIdemBodyUnreadable):
		return f.bodyUnreadable
	}
	return f.badKey
}

func quoteList(ss []string) string { return ascii.QuoteList(ss) }

// ErrorWriter writes every failure in one envelope:
//
//	{"success":false,"error":{"code":…,"message":…,"details":{…}},
//	 "meta":{"generatedAt":…,"requestId":…,"version":…}}
//
// and, for an API that answers in the same shape (keyward's admin API
// does), every success in its sibling (WriteData):
//
//	{"success":true,"data":…,"meta":{…}}
//
// each with Content-Type application/json; charset=utf-8, Cache-Control
// no-store and X-Request-Id. A nil *ErrorWriter writes with the defaults
// of every field. Set its fields before first use and not after.
type ErrorWriter struct {
	// Version is meta.version. Empty: DefaultVersion.
	Version string
	// Now gives meta.generatedAt. Nil: time.Now.
	Now func() time.Time
	// RequestID gives meta.requestId and the X-Request-Id header. Nil: a
	// sane incoming X-Request-Id is echoed (see RequestIDFor), otherwise a
	// random UUID is generated.
	RequestID func(r *http.Request) string
	// Message, when set, gives the message sent for e instead of
	// keyward's (which, like Triqai's, points people to "the dashboard");
	// "" keeps keyward's. e.Code, e.Reason and e.Details say which failure
	// it is.
	Message func(e *Error) string
	// Logger receives one record per 5xx, with its cause. Nil:
	// slog.Default(). 4xx failures are the client's and are not logged.
	Logger *slog.Logger
}

// WriteError writes err as the envelope. An error that is not an *Error
// (nor wraps one) is written as a 500 internal_error whose message reveals
// nothing of it; the error itself is logged. A request whose context was
// cancelled is answered too, and its 5xx is not logged: net/http cancels
// it when the client went away, where the answer goes nowhere, but also
// when the request's body could not be read (ReadTimeout), where a handler
// that wrote nothing would be answered net/http's empty 200.
func (ew *ErrorWriter) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) || e == nil || e.Status < 400 || e.Status > 599 { // a status no error has: a 500, logged
		e = &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "An internal error occurred.", Cause: err}
	}
	reqID := ew.RequestIDFor(r)
	details := make(map[string]any, len(e.Details)+1)
	for k, v := range e.Details {
		details[k] = v
	}
	if e.Reason != "" {
		details["reason"] = e.Reason
	}
	msg := e.Message
	if ew != nil && ew.Message != nil {
		if m := ew.Message(e); m != "" {
			msg = m
		}
	}
	meta := ew.meta(reqID)
	body, ok := encodeEnvelope(errorEnvelope{Error: failure{Code: e.Code, Message: msg, Details: details}, Meta: meta})
	if !ok { // a Details value that cannot be encoded
		e = &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Cause: fmt.Errorf("%w (details not encodable)", err)}
		body, _ = encodeEnvelope(errorEnvelope{Error: failure{Code: CodeInternal, Message: "An internal error occurred.", Details: map[string]any{}}, Meta: meta})
	}
	if e.Status >= 500 && !detach.ClientGone(r.Context()) {
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
	writeEnvelope(w, e.Status, reqID, body)
}

// WriteData answers data (encoded as JSON) with status in the success
// envelope, the failures' sibling. Status 0 is 200. A status that cannot
// carry a success envelope (outside 200–299, or 204) and data that cannot
// be encoded are a 500 internal_error, written (and logged) by WriteError.
func (ew *ErrorWriter) WriteData(w http.ResponseWriter, r *http.Request, status int, data any) {
	if status == 0 {
		status = http.StatusOK
	}
	if status < 200 || status > 299 || status == http.StatusNoContent {
		ew.WriteError(w, r, fmt.Errorf("keyward: WriteData was given status %d, which a success envelope cannot have", status))
		return
	}
	reqID := ew.RequestIDFor(r)
	body, ok := encodeEnvelope(dataEnvelope{Success: true, Data: data, Meta: ew.meta(reqID)})
	if !ok {
		ew.WriteError(w, r, errors.New("keyward: WriteData was given data that cannot be encoded as JSON"))
		return
	}
	writeEnvelope(w, status, reqID, body)
}

// The envelopes, Triqai's wire shape: one meta, a failure or data.
type (
	errorEnvelope struct {
		Success bool         `json:"success"`
		Error   failure      `json:"error"`
		Meta    envelopeMeta `json:"meta"`
	}
	dataEnvelope struct {
		Success bool         `json:"success"`
		Data    any          `json:"data"`
		Meta    envelopeMeta `json:"meta"`
	}
	failure struct {
		Code    string         `json:"code"`
		Message string         `json:"message"`
		Details map[string]any `json:"details"`
	}
	envelopeMeta struct {
		GeneratedAt string `json:"generatedAt"`
		RequestID   string `json:"requestId"`
		Version     string `json:"version"`
	}
)

// meta is the envelopes' meta member of the request reqID.
func (ew *ErrorWriter) meta(reqID string) envelopeMeta {
	return envelopeMeta{GeneratedAt: ew.now().UTC().Format(time.RFC3339), RequestID: reqID, Version: ew.version()}
}

// encodeEnvelope returns v as JSON followed by a newline; it fails only if
// a value inside cannot be encoded.
func encodeEnvelope(v any) ([]byte, bool) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, false
	}
	return append(b, '\n'), true
}

// writeEnvelope sends an envelope's body with status and the headers every
// envelope carries.
func writeEnvelope(w http.ResponseWriter, status int, reqID string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Request-Id", reqID)
	h.Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(body)
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

// RequestIDFor returns the request id WriteError gives r: RequestID's,
// else the incoming X-Request-Id when it is sane, else a new random UUID.
// Successful answers use it too, so that both carry ids of one rule.
func (ew *ErrorWriter) RequestIDFor(r *http.Request) string {
	if ew != nil && ew.RequestID != nil {
		return ew.RequestID(r)
	}
	if id, ok := incomingRequestID(r); ok {
		return id
	}
	return ids.UUID()
}

// mayHoldKey reports whether s has a run of bodyLen letters and digits:
// every keyward key, whatever its prefix, holds such a run (its random
// body, from which the checksum follows), so a string without one cannot
// reveal a key. Ids in common use (UUIDs, ULIDs, prefixed ids) have
// shorter runs; a 32-digit hex trace id has not, and is not echoed.
func mayHoldKey(s string) bool { return ascii.LongestAlnumRun(s) >= bodyLen }

// incomingRequestID returns r's X-Request-Id when there is exactly one and
// it may be echoed and stored: 1 to 128 letters, digits and ._-, and
// mayHoldKey false.
func incomingRequestID(r *http.Request) (string, bool) {
	ids := r.Header["X-Request-Id"]
	if len(ids) != 1 || !ascii.Only(ids[0], 128, "._-") || mayHoldKey(ids[0]) {
		return "", false
	}
	return ids[0], true
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

package keyward

import (
	"errors"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/ascii"
	"github.com/keyward/keyward/rate"
	"github.com/keyward/keyward/telemetry"
)

// DefaultHeader is the request header that carries the key.
const DefaultHeader = "X-API-Key"

// AuthConfig configures RequireAPIKey. Every zero value means the default
// said beside it; every other problem is an error from RequireAPIKey.
type AuthConfig struct {
	// Keys finds keys by hash. Required. Put a *Cache in front of a
	// database-backed store (NewCache): a cached key then costs no store
	// call.
	Keys KeyStore
	// Prefix is the key prefix, such as "triq_". Required; see
	// NewKeyFormat for the rules.
	Prefix string
	// Header is the request header that carries the key. Zero:
	// DefaultHeader (X-API-Key).
	Header string
	// Bearer also accepts the key as "Authorization: Bearer KEY" (what
	// many client SDKs send). A request must still carry exactly one key:
	// one in each place is refused as two.
	Bearer bool
	// Environments lists the environments accepted; a key of another is
	// refused with 403 environment_not_allowed. Nil: every environment.
	Environments []Environment
	// Errors writes every failure. Nil: the defaults of ErrorWriter.
	Errors *ErrorWriter
	// Now is the clock of revocation, expiry and recorded calls. Nil: time.Now.
	Now func() time.Time
	// Usage is told of every request let through (last-used times, usage
	// counters) and, if a CallRecorder (sqlstore.Store is), of what became
	// of it, for the usage chart. Nil: nothing is recorded.
	Usage UsageRecorder
	// FailedAuth throttles each client's requests with a missing,
	// malformed or unknown key; over its budget a client is refused (429,
	// scope "auth") before any store lookup, except with a key the cache
	// already holds as valid, so valid keys are never slowed. Nil: off.
	FailedAuth *rate.FailedAuth
}

// Authenticator decides who a request is from: RequireAPIKey. Its
// Middleware is the net/http handler; adapters for other routers call
// Authenticate, AttachKey and WriteError. It is immutable and safe for
// concurrent use.
type Authenticator struct {
	keys   KeyStore
	format KeyFormat
	header string
	bearer bool
	envs   []Environment
	errors *ErrorWriter
	now    func() time.Time
	usage  UsageRecorder
	calls  CallRecorder // usage, if it records calls
	fail   authFailures
	failed *rate.FailedAuth
}

// RequireAPIKey checks cfg and returns the Authenticator it describes, or
// every problem in cfg joined into one error.
func RequireAPIKey(cfg AuthConfig) (*Authenticator, error) {
	var errs []error
	if cfg.Keys == nil {
		errs = append(errs, &ConfigError{Field: "AuthConfig.Keys", Problem: "is nil; a KeyStore is required"})
	}
	format, err := NewKeyFormat(cfg.Prefix)
	if err != nil {
		errs = append(errs, err)
	}
	header := cfg.Header
	if header == "" {
		header = DefaultHeader
	} else if !ascii.Only(header, 256, "!#$%&'*+-.^_`|~") || cfg.Bearer && strings.EqualFold(header, "Authorization") {
		errs = append(errs, &ConfigError{Field: "AuthConfig.Header", Problem: "is not a valid header name (nor Authorization, with Bearer)"})
	}
	for _, e := range cfg.Environments {
		if !e.Valid() {
			errs = append(errs, &ConfigError{Field: "AuthConfig.Environments", Problem: "has " + quoteList([]string{string(e)}) + "; want \"live\" or \"test\""})
		}
	}
	if err := cfg.FailedAuth.Check(); err != nil {
		errs = append(errs, &ConfigError{Field: "AuthConfig.FailedAuth", Problem: err.Error()})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	a := &Authenticator{keys: cfg.Keys, format: format, header: textproto.CanonicalMIMEHeaderKey(header), bearer: cfg.Bearer,
		envs: slices.Clone(cfg.Environments), errors: cfg.Errors, now: cfg.Now, usage: cfg.Usage,
		fail: newAuthFailures(header, format.Prefix(), cfg.Bearer), failed: cfg.FailedAuth}
	if a.now == nil {
		a.now = time.Now
	}
	a.calls, _ = cfg.Usage.(CallRecorder)
	return a, nil
}

func isSpaceOrTab(r rune) bool { return r == ' ' || r == '\t' }

// maxKeyHeaderLen bounds the key header's value: a key is at most 32 bytes
// of prefix and 36 of body and checksum; the rest is room for spaces.
const maxKeyHeaderLen = 256

// Authenticate decides who r is from. The error, when not nil, is an
// *Error ready for WriteError: 401 for a missing, malformed, unknown,
// revoked or expired key; 403 for a key of a refused environment; 429 for
// a client over its FailedAuth budget; 503 when the key store failed
// (never 401: a store outage does not make keys invalid). A key of the
// wrong prefix, length or alphabet costs no lookup; one whose checksum
// does not match costs a cache lookup and no store lookup.
func (a *Authenticator) Authenticate(r *http.Request) (rec *KeyRecord, err error) {
	defer func() { observe(r.Context(), nil, telemetry.Auth, rec, err) }()
	if a.keys == nil {
		return nil, misconfigured("an Authenticator must be made by RequireAPIKey")
	}
	if a.failed == nil {
		return a.authenticate(r, 0)
	}
	client, now := a.failed.Client(r), a.now()
	rec, err = a.authenticate(r, a.failed.Wait(client, now))
	var e *Error
	if errors.As(err, &e) && e.Status == http.StatusUnauthorized && e.Reason != ReasonRevokedAPIKey && e.Reason != ReasonExpiredAPIKey {
		a.failed.Fail(client, now)
	}
	return rec, err
}

// authenticate is Authenticate for a client that must wait this long
// (> 0: over its FailedAuth budget) before anything but a key the cache
// holds as valid is looked at.
func (a *Authenticator) authenticate(r *http.Request, wait time.Duration) (*KeyRecord, error) {
	if wait > 0 {
		c, _ := a.keys.(*Cache)
		key := strings.TrimFunc(r.Header.Get(a.header), isSpaceOrTab)
		if rec, ok := c.byKey(key); !ok || rec == nil || len(r.Header.Values(a.header)) != 1 {
			return nil, rateLimited(rate.FailedAuthScope, a.failed.Limit(), a.now().Add(wait), wait)
		}
	}
	// 1. Exactly one key, of a sane length, white space trimmed.
	vals, key := r.Header[a.header], ""
	n := len(vals)
	if n == 1 {
		key = vals[0]
	}
	if a.bearer {
		for _, v := range r.Header["Authorization"] {
			if scheme, token, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "Bearer") {
				n, key = n+1, token
			}
		}
	}
	switch {
	case n == 0:
		return nil, a.fail.missing
	case n > 1:
		return nil, a.fail.multiple
	case len(key) > maxKeyHeaderLen:
		return nil, a.fail.invalid
	}
	if key != "" && (isSpaceOrTab(rune(key[0])) || isSpaceOrTab(rune(key[len(key)-1]))) { // most keys come trimmed
		key = strings.TrimFunc(key, isSpaceOrTab)
	}
	if key == "" {
		return nil, a.fail.missing
	}
	// 2. The key's shape, without I/O.
	if !a.format.hasPrefix(key) {
		return nil, a.fail.format
	}
	if !a.format.shaped(key) {
		return nil, a.fail.invalid
	}
	// 3. The stored record of exactly this key: the cache (if Keys is one)
	// answers for keys it holds by their SHA-256; a miss checks the
	// checksum before any store lookup.
	rec, err := a.lookup(r, key)
	if err != nil {
		if errors.Is(err, ErrKeyNotFound) {
			return nil, a.fail.invalid
		}
		return nil, ServiceUnavailable("key store", err)
	}
	// 4. The record's own state.
	if !rec.RevokedAt.IsZero() || !rec.ExpiresAt.IsZero() {
		now := a.now()
		if rec.Revoked(now) {
			return nil, a.fail.revoked
		}
		if rec.Expired(now) {
			return nil, a.fail.expired
		}
	}
	if a.format.keyPrefix(key) == a.format.test && rec.Environment != EnvTest {
		return nil, a.fail.invalid // a test key is never live (test keys made before the test_ prefix still work)
	}
	if a.envs != nil && !slices.Contains(a.envs, rec.Environment) {
		return nil, environmentNotAllowed(rec.Environment, a.envs)
	}
	if a.usage != nil {
		a.usage.RecordUse(rec)
	}
	return rec, nil
}

func (a *Authenticator) lookup(r *http.Request, key string) (*KeyRecord, error) {
	c, _ := a.keys.(*Cache) // nil: a store without a cache in front
	if rec, ok := c.byKey(key); ok {
		telemetry.Looked(r.Context(), telemetry.FrontHit)
		return rec, nil
	}
	if !a.format.checksumOK(key) { // a key that cannot exist: no hash, no lookup
		return nil, ErrKeyNotFound
	}
	h := Hash(key)
	e, ok := c.cached(r.Context(), h)
	switch {
	case ok:
	case c == nil:
		return lookupStore(r.Context(), a.keys, h)
	default:
		var err error
		if e, err = c.miss(r.Context(), h); err != nil {
			return nil, err
		}
	}
	c.remember(key, e)
	return e.answer()
}

// WriteError writes an error of Authenticate with a's ErrorWriter.
func (a *Authenticator) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	a.errors.WriteError(w, r, err)
}

// Middleware runs Authenticate; on success it calls next with the key in
// the request context (FromContext) and tells a CallRecorder in Usage of
// the call, on failure it writes the error and stops.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec, err := a.Authenticate(r)
		if err != nil {
			a.errors.WriteError(w, r, err)
			return
		}
		a.serve(next, w, r, rec)
	})
}

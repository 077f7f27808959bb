package keyward

import (
	"context"
	"errors"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/ascii"
	"github.com/keyward/keyward/internal/hooks"
	"github.com/keyward/keyward/internal/recent"
	"github.com/keyward/keyward/rate"
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
	// scope "auth") before any store lookup, except with a key the store
	// found within the last week, so valid keys in use are never slowed:
	// those this process found, and, read once when a client is first over
	// budget, those its store lists as used (a RecentKeyLister, which
	// memstore and sqlstore are; sqlstore knows the uses it recorded as
	// Usage). Nil: off.
	FailedAuth *rate.FailedAuth
}

// Authenticator decides who a request is from: RequireAPIKey. Its
// Middleware is the net/http handler; adapters for other routers call
// Authenticate, AttachKey and WriteError. It is immutable and safe for
// concurrent use.
type Authenticator struct {
	keys   keyFinder
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
	keys, ok := cfg.Keys.(keyFinder)
	if !ok {
		keys = storeFinder{cfg.Keys, knownKeys(cfg.Keys)}
	}
	a := &Authenticator{keys: keys, format: format, header: textproto.CanonicalMIMEHeaderKey(header), bearer: cfg.Bearer,
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
	defer func() { observe(r.Context(), nil, hooks.Auth, rec, err) }()
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
// (> 0: over its FailedAuth budget) before any key but one found recently
// is looked up.
func (a *Authenticator) authenticate(r *http.Request, wait time.Duration) (*KeyRecord, error) {
	// 1. Exactly one key, of the right shape: no I/O. Over its budget, a
	// client waits unless the key was found recently.
	key, err := a.presentedKey(r)
	if wait > 0 && (err != nil || !a.knownKey(r.Context(), key)) {
		return nil, rateLimited(rate.FailedAuthScope, a.failed.Limit(), a.now().Add(wait), wait)
	}
	if err != nil {
		return nil, err
	}
	// 2. The stored record of exactly this key.
	rec, err := a.lookup(r.Context(), key)
	if errors.Is(err, ErrKeyNotFound) {
		return nil, a.fail.invalid
	} else if err != nil {
		return nil, ServiceUnavailable("key store", err)
	}
	// 3. The record's own state.
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

// presentedKey returns the one key r presents, in the key header or (with
// Bearer) as Authorization: Bearer, white space trimmed and of the right
// shape; or the 401 that says what is wrong with it. Every path reads the
// key here.
func (a *Authenticator) presentedKey(r *http.Request) (string, error) {
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
		return "", a.fail.missing
	case n > 1:
		return "", a.fail.multiple
	case len(key) > maxKeyHeaderLen:
		return "", a.fail.invalid
	}
	if key != "" && (isSpaceOrTab(rune(key[0])) || isSpaceOrTab(rune(key[len(key)-1]))) { // most keys come trimmed
		key = strings.TrimFunc(key, isSpaceOrTab)
	}
	switch {
	case key == "":
		return "", a.fail.missing
	case !a.format.hasPrefix(key):
		return "", a.fail.format
	case !a.format.shaped(key):
		return "", a.fail.invalid
	}
	return key, nil
}

// lookup returns the record of exactly key: a Cache answers for a key it
// found recently by the key itself; any other key is looked up by its
// SHA-256 once its checksum matched (a key that cannot exist costs no
// hash).
func (a *Authenticator) lookup(ctx context.Context, key string) (*KeyRecord, error) {
	if rec, ok := a.keys.byKey(key); ok {
		hooks.Looked(ctx, hooks.FrontHit)
		return rec, nil
	}
	if !a.format.checksumOK(key) {
		return nil, ErrKeyNotFound
	}
	h := Hash(key)
	rec, err := a.keys.find(ctx, key, h)
	if a.failed != nil && (err == nil || errors.Is(err, ErrKeyNotFound)) {
		if now := a.now(); err == nil && !rec.Revoked(now) && !rec.Expired(now) {
			a.keys.known().Add(knownID(h), now)
		} else {
			a.keys.known().Forget(knownID(h)) // revoked, expired or gone
		}
	}
	return rec, err
}

// knownKey reports whether key was found within knownKeysFor.
func (a *Authenticator) knownKey(ctx context.Context, key string) bool {
	if _, ok := a.keys.byKey(key); ok {
		return true
	}
	return a.format.checksumOK(key) && a.keys.known().Known(ctx, knownID(Hash(key)), a.now())
}

// keyFinder is what an Authenticator asks of its KeyStore. A Cache is
// one: it answers for keys it found recently by the key itself. Any other
// KeyStore is asked by hash (storeFinder).
type keyFinder interface {
	// byKey returns the record of exactly key if it is known by the key
	// itself, without I/O.
	byKey(key string) (*KeyRecord, bool)
	// find returns the record of exactly key, whose SHA-256 is h, or an
	// error (ErrKeyNotFound for no such key).
	find(ctx context.Context, key string, h KeyHash) (*KeyRecord, error)
	// known returns the keys its store found recently (knownKeys).
	known() *recent.Set
}

var _ keyFinder = (*Cache)(nil)

// storeFinder is the keyFinder of a KeyStore without a Cache in front.
type storeFinder struct {
	store KeyStore
	keys  *recent.Set
}

func (storeFinder) byKey(string) (*KeyRecord, bool) { return nil, false }

func (s storeFinder) known() *recent.Set { return s.keys }

func (s storeFinder) find(ctx context.Context, _ string, h KeyHash) (*KeyRecord, error) {
	return lookupStore(ctx, s.store, h)
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

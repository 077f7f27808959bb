package keyward

import (
	"context"
	"errors"
	"net/http"
	"net/textproto"
	"strings"
	"sync/atomic"
	"time"
)

// Middleware is the shape of every keyward handler: it wraps the next
// handler of a net/http chain.
type Middleware = func(http.Handler) http.Handler

// Principal is who is calling: the authenticated key and its organization.
// RequireAPIKey attaches it to the request context; FromContext reads it.
// A Principal is shared by every request of one key while its record is
// cached: treat it, its slices and its Key as read-only.
type Principal struct {
	// KeyID identifies the key.
	KeyID string
	// OrgID identifies the organization: the rate-limit and credit account.
	OrgID string
	// Plan is the organization's plan.
	Plan string
	// Permissions are the key's permissions.
	Permissions []string
	// Environment is live or test.
	Environment Environment
	// Key is the whole key record, organization included.
	Key *KeyRecord

	limits *principalLimits
}

func newPrincipal(rec *KeyRecord) *Principal {
	return &Principal{
		KeyID:       rec.ID,
		OrgID:       rec.Org.ID,
		Plan:        rec.Org.Plan,
		Permissions: rec.Permissions,
		Environment: rec.Environment,
		Key:         rec,
		limits:      &principalLimits{},
	}
}

type principalKey struct{}

// requestState is the context WithPrincipal makes: the parent context,
// the Principal, and a slot that ChargeCredits fills with the call's
// Charge, so that it needs no second copy of the request. Behind
// RequireAPIKey it is the request's only allocation by keyward: it also
// holds the request that RequireAPIKey passes on, the Charge of the first
// ChargeCredits and the rate-limit header values of the first
// RateLimitByOrg. Each of those parts is claimed once (an atomic flag) and
// never reused, so strings built in it stay immutable.
type requestState struct {
	context.Context
	principal *Principal
	charge    atomic.Pointer[Charge]

	chargeTaken atomic.Bool
	req         http.Request
	chargeBuf   Charge
	rateBuf     rateHeaderBuf
}

// stateOf returns the request state in ctx when ctx is one.
func stateOf(ctx context.Context) *requestState {
	st, _ := ctx.(*requestState)
	return st
}

// claimCharge returns the state's Charge if no one took it yet, else nil.
func (s *requestState) claimCharge() *Charge {
	if s == nil || !s.chargeTaken.CompareAndSwap(false, true) {
		return nil
	}
	return &s.chargeBuf
}

// rateHeaders returns the state's rate-limit header buffer (nil for no
// state); the first writer claims it (rateHeaderBuf.used).
func (s *requestState) rateHeaders() *rateHeaderBuf {
	if s == nil {
		return nil
	}
	return &s.rateBuf
}

// Value answers the Principal and the Charge from the state and anything
// else from the parent.
func (s *requestState) Value(key any) any {
	switch key.(type) {
	case principalKey:
		return s.principal
	case chargeKey:
		if ch := s.charge.Load(); ch != nil {
			return ch
		}
	}
	return s.Context.Value(key)
}

// String describes the context, for debugging.
func (s *requestState) String() string { return "keyward.Principal context" }

// WithPrincipal returns a copy of ctx carrying p. For a request,
// AttachPrincipal does the same and copies the request in the same
// allocation.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return &requestState{Context: ctx, principal: p}
}

// FromContext returns the Principal that RequireAPIKey attached, if any.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok && p != nil
}

// DefaultHeader is the request header that carries the key.
const DefaultHeader = "X-API-Key"

// AuthConfig configures RequireAPIKey. Every zero value means the default
// said beside it; every other problem is an error from NewAuthenticator.
type AuthConfig struct {
	// Keys finds keys by hash. Required. Put a *Cache in front of a
	// database-backed store (NewCache): with a *Cache the hot path makes no
	// store call and no allocation of its own.
	Keys KeyStore
	// Prefix is the key prefix, such as "triq_". Required; see
	// NewKeyFormat for the rules.
	Prefix string
	// Header is the request header that carries the key. Zero:
	// DefaultHeader (X-API-Key).
	Header string
	// Environments lists the environments accepted; a key of another is
	// refused with 403 environment_not_allowed. Nil: every environment.
	Environments []Environment
	// Errors writes every failure. Nil: the defaults of ErrorWriter.
	Errors *ErrorWriter
	// Now is the clock for revocation and expiry. Nil: time.Now.
	Now func() time.Time
	// Usage is told of every request let through (last-used times, usage
	// counters). Nil: nothing is recorded.
	Usage UsageRecorder
}

// Authenticator decides who a request is from. It is what RequireAPIKey
// runs, exported so that adapters for other routers share the decision.
// It is immutable and safe for concurrent use.
type Authenticator struct {
	keys      KeyStore
	principal func(context.Context, KeyHash) (*Principal, error) // when Keys is not a *Cache
	cache     *Cache                                             // Keys, when it is a *Cache
	format    KeyFormat
	header    string
	envs      []Environment
	errors    *ErrorWriter
	now       func() time.Time
	usage     UsageRecorder

	errMissing, errMultiple, errFormat, errInvalid, errRevoked, errExpired *Error
}

// NewAuthenticator checks cfg and returns the Authenticator it describes,
// or every problem in cfg joined into one error.
func NewAuthenticator(cfg AuthConfig) (*Authenticator, error) {
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
	} else if !validHeaderName(header) {
		errs = append(errs, &ConfigError{Field: "AuthConfig.Header", Problem: "is not a valid header name"})
	}
	for _, e := range cfg.Environments {
		if !e.Valid() {
			errs = append(errs, &ConfigError{Field: "AuthConfig.Environments", Problem: "has " + quoteList([]string{string(e)}) + "; want \"live\" or \"test\""})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	a := &Authenticator{
		keys:   cfg.Keys,
		format: format,
		header: textproto.CanonicalMIMEHeaderKey(header),
		envs:   append([]Environment(nil), cfg.Environments...),
		errors: cfg.Errors,
		now:    cfg.Now,
		usage:  cfg.Usage,
	}
	if a.now == nil {
		a.now = time.Now
	}
	if c, ok := cfg.Keys.(*Cache); ok {
		a.cache = c // its entries carry a Principal built once per fill
	} else {
		a.principal = func(ctx context.Context, h KeyHash) (*Principal, error) {
			rec, err := cfg.Keys.LookupKey(ctx, h)
			if err != nil {
				return nil, err
			}
			if rec == nil {
				return nil, errors.New("keyward: key store returned neither a record nor an error")
			}
			return newPrincipal(rec), nil
		}
	}
	challenge := http.Header{"Www-Authenticate": {`APIKey header="` + header + `"`}}
	auth := func(reason, msg string) *Error {
		return &Error{Status: http.StatusUnauthorized, Code: CodeAuthentication, Reason: reason, Message: msg, Header: challenge}
	}
	p := format.Prefix()
	a.errMissing = auth(ReasonMissingAPIKey, "API key is missing. Send your key in the "+header+" header.")
	a.errMultiple = auth(ReasonInvalidAPIKey, "More than one "+header+" header was sent. Send exactly one API key.")
	a.errFormat = auth(ReasonInvalidAPIKeyFormat, "API key format is invalid. Ensure the key starts with "+p+".")
	a.errInvalid = auth(ReasonInvalidAPIKey, "API key is invalid. Check that the whole key was copied, or generate a new key in the dashboard.")
	a.errRevoked = auth(ReasonRevokedAPIKey, "API key has been revoked. Generate a new key in the dashboard.")
	a.errExpired = auth(ReasonExpiredAPIKey, "API key has expired. Generate a new key in the dashboard.")
	return a, nil
}

func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

// maxKeyHeaderLen bounds the key header's value: a key is at most 32 bytes
// of prefix and 36 of body and checksum; the rest is room for spaces.
const maxKeyHeaderLen = 256

// trimSpaceTab removes spaces and tabs around s (strings.Trim with a
// cutset builds the set on every call).
func trimSpaceTab(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// Authenticate decides who r is from. The error, when not nil, is an
// *Error ready for ErrorWriter: 401 for a missing, malformed, unknown,
// revoked or expired key; 403 for a key of a refused environment; 503 when
// the key store failed (never 401: a store outage does not make keys
// invalid). Malformed keys cost no store lookup and, beyond one probe of
// the cache's front (which only holds keys found before), no cache lookup.
func (a *Authenticator) Authenticate(r *http.Request) (*Principal, error) {
	vals := r.Header[a.header]
	if len(vals) == 0 {
		return nil, a.errMissing
	}
	if len(vals) > 1 {
		return nil, a.errMultiple
	}
	if len(vals[0]) > maxKeyHeaderLen {
		// Far longer than any key: refused before it is trimmed, parsed or
		// hashed (net/http alone would let 1 MiB through).
		return nil, a.errInvalid
	}
	key := trimSpaceTab(vals[0])
	if key == "" {
		return nil, a.errMissing
	}
	var p *Principal
	var tag keyTag
	tagged := a.cache != nil && a.format.shaped(key)
	if tagged {
		// A key RequireAPIKey found before is in the cache's front, by a
		// cheap tag of the key: no SHA-256, cache lookup or checksum check
		// (it passed Parse when it was found). The prefix and length are
		// checked first, so a foreign prefix is still refused as such.
		tag = a.cache.tag(key)
		p = a.cache.frontPrincipal(tag)
	}
	if p == nil {
		switch a.format.Parse(key) {
		case KeyWrongPrefix:
			return nil, a.errFormat
		case KeyMalformed:
			return nil, a.errInvalid
		}
		var err error
		if a.cache != nil {
			var e *cacheEntry
			if e, err = a.cache.lookup(r.Context(), Hash(key)); err == nil {
				p = e.principal
				if tagged {
					a.cache.remember(tag, e)
				}
			}
		} else {
			p, err = a.principal(r.Context(), Hash(key))
		}
		if err != nil {
			if errors.Is(err, ErrKeyNotFound) {
				return nil, a.errInvalid
			}
			return nil, ServiceUnavailable("key store", err)
		}
	}
	if k := p.Key; !k.RevokedAt.IsZero() || !k.ExpiresAt.IsZero() {
		now := a.now()
		if k.Revoked(now) {
			return nil, a.errRevoked
		}
		if k.Expired(now) {
			return nil, a.errExpired
		}
	}
	if a.envs != nil && !envAllowed(a.envs, p.Environment) {
		return nil, &Error{
			Status: http.StatusForbidden,
			Code:   CodeAuthorization,
			Reason: ReasonEnvironmentNotAllowed,
			Message: "This endpoint does not accept " + string(p.Environment) +
				" keys. Use a key of an accepted environment.",
			Details: map[string]any{"environment": p.Environment, "allowed": a.envs},
		}
	}
	if a.usage != nil {
		a.usage.RecordUse(p)
	}
	return p, nil
}

func envAllowed(envs []Environment, e Environment) bool {
	for _, x := range envs {
		if x == e {
			return true
		}
	}
	return false
}

// WriteError writes err (an error of Authenticate) with the
// authenticator's ErrorWriter.
func (a *Authenticator) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	a.errors.WriteError(w, r, err)
}

// Middleware runs Authenticate; on success it calls next with the
// Principal in the request context, on failure it writes the error and
// stops.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return &authHandler{a: a, next: next}
}

// authHandler is Middleware's handler: a method rather than a closure, so
// that the compiler inlines Request.WithContext into it wherever the
// middleware is built (see ServeHTTP).
type authHandler struct {
	a    *Authenticator
	next http.Handler
}

func (h *authHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, err := h.a.Authenticate(r)
	if err != nil {
		h.a.errors.WriteError(w, r, err)
		return
	}
	h.next.ServeHTTP(w, AttachPrincipal(r, p))
}

// AttachPrincipal returns a shallow copy of r whose context carries p
// (FromContext finds it), as RequireAPIKey passes it on, in one allocation
// that also holds room for the Charge of a ChargeCredits or Charger.Begin
// and the rate-limit header values of a RateLimitByOrg or
// RateLimiter.Check behind it. Adapters for other routers call it.
func AttachPrincipal(r *http.Request, p *Principal) *http.Request {
	// The copy lives in the state: WithContext is inlined here and its own
	// copy does not escape, so the state is the only allocation.
	st := &requestState{Context: r.Context(), principal: p}
	st.req = *r.WithContext(st)
	return &st.req
}

// RequireAPIKey returns the middleware that lets through only requests
// with a valid key, attaching its Principal to the request context. It is
// NewAuthenticator(cfg).Middleware.
func RequireAPIKey(cfg AuthConfig) (Middleware, error) {
	a, err := NewAuthenticator(cfg)
	if err != nil {
		return nil, err
	}
	return a.Middleware, nil
}

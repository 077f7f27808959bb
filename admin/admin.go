// Package admin is keyward's admin HTTP API and dashboard: one
// http.Handler that serves a JSON API under /admin/v1/ (described by the
// OpenAPI 3.1 document it serves at /admin/v1/openapi.json) and a
// server-rendered web page under /dashboard/, over any store that
// implements manage.KeyManager and credit.Ledger.
//
// Both let people create, rotate, revoke and change keys, see and grant
// credits, and watch usage by day. There are two ways in:
//
//   - Operator mode (Config.Tokens): the API takes bearer admin tokens
//     (stored hashed in a token file; `keyward admin token create`), the
//     page a session opened with one of them or with a one-time login link
//     (LoginLink). Operators see and manage every organization.
//   - Self-service mode (Config.OrgFor): the host, which has signed its
//     customer in, says which organization a request may manage. Every
//     route is confined to it: another organization's ids are 404, as if
//     they did not exist, operators' routes (creating organizations,
//     changing plans, granting credits) are 403, and a key gets only
//     permissions that Config.Permissions offers.
//
// An organization has at most as many working keys as its store allows
// (manage.DefaultMaxKeys unless configured): past it, creating a key is
// 409 too_many_keys. Key listings come a page at a time (limit, after).
//
// Failures are keyward's error envelope, written by Config.Errors. The
// page is served with a strict Content-Security-Policy (no inline script;
// its assets are embedded), every form carries a CSRF token, and pages
// that show a key are never stored (Cache-Control: no-store).
//
// Mount the handler at both of its paths:
//
//	mux.Handle(h.APIPath(), h)  // "/admin/v1/" after Config.Prefix
//	mux.Handle(h.PagePath(), h) // "/dashboard/" after Config.Prefix
//
// A host gives the page its own look (Config.Brand), mounts it under its
// own prefix (Config.Prefix; every link of the page is relative) and may
// show it in a frame of its own origins (Config.FrameAncestors). In
// self-service mode the page speaks to the host's customer (limits as "1
// request per second", failures with what to do next); operators also
// see ids. Config.ActorFor names the person acting, recorded with each
// change.
package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/internal/ascii"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/usage"
)

// Paths at which the handler serves, after Config.Prefix. Mount it at
// both (Handler.APIPath and Handler.PagePath say where).
const (
	APIPath  = "/admin/v1/"
	PagePath = "/dashboard/"
)

// DefaultMaxBody is the largest request body the API and the page read
// when Config.MaxBody is zero: 64 KiB.
const DefaultMaxBody = 64 << 10

// Config configures New. Exactly one of Tokens and OrgFor is set.
type Config struct {
	// Keys manages organizations and keys. Required.
	Keys manage.KeyManager
	// Ledger holds organizations' credits. Required.
	Ledger credit.Ledger
	// Usage reads usage by key, day and outcome (sqlstore.Store does). The
	// chart fills with the calls of a RequireAPIKey whose AuthConfig.Usage
	// records calls (keyward.CallRecorder) into the same store.
	// Nil: the usage routes answer 404 not_kept and the page shows no chart.
	Usage usage.Reader
	// History pages through the credit ledger (sqlstore.Store does). Nil:
	// the ledger route answers 404 not_kept.
	History credit.History
	// Plans returns the plan table offered when creating or changing an
	// organization (sqlstore.Store.Plans). Nil: keyward.DefaultPlans.
	Plans func() *keyward.Plans
	// Permissions are the permissions offered for keys: the page's
	// checkboxes, and in self-service mode the most a customer may give a
	// key, by the API or the page (each of a key's permissions must be
	// covered by one of these, as a route's are by a key's: an offered
	// "transactions:*" covers "transactions:read"; the others are refused
	// with a 422 naming them). Operators may give any. Nil: just "*",
	// which offers everything.
	Permissions []string

	// Tokens, in operator mode, holds the admin tokens.
	Tokens *TokenFile
	// OrgFor, in self-service mode, returns the organization that r may
	// manage: the host's sign-in decides. An error or an empty id answers
	// 401 not_signed_in.
	OrgFor func(r *http.Request) (orgID string, err error)
	// ActorFor, in self-service mode, names the person acting for r (an
	// e-mail address, a user id: the host's label), recorded with every
	// change they make. Nil, or an empty answer: the change is recorded
	// as the organization's ("org ORG"). Called after OrgFor succeeded.
	ActorFor func(r *http.Request) string

	// Brand is the host's look: the page shows its name and logo in its
	// accent colour. Zero: keyward's.
	Brand Brand
	// Prefix is the path under which the host mounts the handler: the
	// API is served at Prefix + APIPath, the page at Prefix + PagePath
	// (Handler.APIPath, Handler.PagePath). "" or a path starting with
	// "/", without a trailing "/". The page's links are relative, so it
	// also works behind a proxy that strips the prefix.
	Prefix string
	// FrameAncestors are the origins ("https://portal.example.com") that
	// may show the page in a frame (CSP frame-ancestors). Nil: none may.
	FrameAncestors []string

	// Errors writes failures and, with WriteData, successes: the one
	// envelope and its meta. Nil: a keyward.ErrorWriter on Now.
	Errors *keyward.ErrorWriter
	// Logger receives a record of each admin change: the organization,
	// the actor (an operator's token name, or ActorFor's label), the
	// action, its target and the time; never a key or token. Nil:
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
	// MaxBody bounds request bodies, in bytes. Zero: DefaultMaxBody.
	MaxBody int64
	// SessionTTL is how long a dashboard session lasts (operator mode).
	// Zero: 12 hours.
	SessionTTL time.Duration
	// SecureCookies marks the session and CSRF cookies Secure on every
	// request: set it when a proxy in front terminates TLS, so that a
	// browser never sends them over plain HTTP. Zero: Secure on a TLS
	// request only.
	SecureCookies bool
}

// Handler serves the admin API and the dashboard. Make one with New.
type Handler struct {
	cfg      Config
	paths    paths
	mux      *http.ServeMux
	errors   *keyward.ErrorWriter
	logger   *slog.Logger
	sessions *sessions
	csrf     csrfKey
	page     *page
}

// New checks cfg and returns its Handler, or every problem of cfg, joined
// (*keyward.ConfigError).
func New(cfg Config) (*Handler, error) {
	var errs []error
	bad := func(field, problem string) {
		errs = append(errs, &keyward.ConfigError{Field: "admin.Config." + field, Problem: problem})
	}
	if cfg.Keys == nil {
		bad("Keys", "is nil; a manage.KeyManager (memstore, sqlstore) is required")
	}
	if cfg.Ledger == nil {
		bad("Ledger", "is nil; a credit.Ledger (memstore, sqlstore) is required")
	}
	if (cfg.Tokens == nil) == (cfg.OrgFor == nil) {
		bad("Tokens", "and OrgFor: set exactly one (operator mode or self-service mode)")
	}
	if cfg.MaxBody < 0 {
		bad("MaxBody", "is negative")
	}
	if cfg.SessionTTL < 0 {
		bad("SessionTTL", "is negative")
	}
	if err := keyward.ValidatePermissions(cfg.Permissions); err != nil {
		bad("Permissions", err.Error())
	}
	if cfg.ActorFor != nil && cfg.OrgFor == nil {
		bad("ActorFor", "is for self-service mode (OrgFor); operators are named by their tokens")
	}
	errs = append(errs, checkHost(cfg)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Plans == nil {
		cfg.Plans = keyward.DefaultPlans
	}
	if cfg.Permissions == nil {
		cfg.Permissions = []string{"*"}
	}
	h := &Handler{cfg: cfg, errors: cfg.Errors, logger: cfg.Logger, mux: http.NewServeMux(), csrf: newCSRFKey(),
		paths: paths{api: cfg.Prefix + APIPath, page: cfg.Prefix + PagePath}}
	if h.errors == nil {
		h.errors = &keyward.ErrorWriter{Now: cfg.Now}
	}
	if h.logger == nil {
		h.logger = slog.Default()
	}
	h.sessions = newSessions(cfg.Now, cfg.SessionTTL)
	cfg.Tokens.logTo(h.logger)
	var err error
	if h.page, err = newPage(cfg); err != nil {
		return nil, err
	}
	h.routes()
	return h, nil
}

// ServeHTTP serves the API under APIPath and the page under PagePath
// (each after Config.Prefix). A Handler not made by New answers every
// request with a 500.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h == nil || h.mux == nil {
		(&keyward.ErrorWriter{}).WriteError(w, r, errors.New("keyward: admin: a Handler not made by admin.New"))
		return
	}
	if _, pattern := h.mux.Handler(r); pattern == "" {
		h.fail(w, r, strings.HasPrefix(r.URL.Path, h.paths.api), NoRoute(h.mux, r))
		return
	}
	h.mux.ServeHTTP(w, r) // sets the path's values
}

// NoRoute is the answer to a request that mux has no route for: 405
// method_not_allowed, with Allow, when routes of its path take other
// methods; else 404 route_not_found. A match of the pattern "/" (a
// catch-all that answers with NoRoute) counts as none, and a nil mux has
// no routes. The admin API
// answers so; a host's mux beside it can too.
func NoRoute(mux *http.ServeMux, r *http.Request) *keyward.Error {
	if mux == nil {
		return errRouteNotFound
	}
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, p := mux.Handler(probe); p != "" && p != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		return methodNotAllowed(allow)
	}
	return errRouteNotFound
}

// fail answers err: the envelope on the API, a page on the dashboard.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, api bool, err error) {
	if api {
		h.errors.WriteError(w, r, err)
		return
	}
	h.page.fail(h, w, r, err)
}

// caller is who a request acts for.
type caller struct {
	operator bool
	orgID    string // self-service: the one organization
	who      string // the actor, for the log: a token's name, ActorFor's label, or "org ORG"
	// csrfBind is what the dashboard's CSRF tokens of this caller are
	// bound to: the session's id, or "org ORG" (self-service); "" for
	// nobody signed in (the sign-in form).
	csrfBind string
}

// mayManage reports whether c may manage organization id.
func (c caller) mayManage(id string) bool { return c.operator || c.orgID == id }

// saneID reports whether id can be an organization's or a key's id: 1 to
// 64 letters, digits, '_' or '-' and too short a run to hold a key. Any
// other is not found without asking the store, and is never echoed.
func saneID(id string) bool { return ascii.Only(id, 64, "_-") && ascii.LongestAlnumRun(id) < 30 }

// readJSON decodes r's body, which must be application/json of at most
// MaxBody bytes holding one object with known fields only, into v.
func (h *Handler) readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return errMediaType
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return bodyTooLarge(h.cfg.MaxBody)
	}
	if err != nil {
		return errMalformed
	}
	if !exactMembers(body, v) {
		return errMalformed
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errMalformed
	}
	if dec.More() {
		return errMalformed
	}
	if _, err := dec.Token(); err != io.EOF {
		return errMalformed
	}
	return nil
}

// exactMembers reports whether body, if it is an object, names each of
// its members once and in the case of a json tag of *v, a struct:
// encoding/json alone matches names in any case and keeps the last of
// two, and the API's document allows no other members.
func exactMembers(body []byte, v any) bool {
	t := reflect.TypeOf(v)
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return true
	}
	t = t.Elem()
	known := map[string]bool{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		known[name] = true
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return true // not an object: Decode says so
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		name, ok := tok.(string)
		if err != nil || !ok || !known[name] || seen[name] {
			return false
		}
		seen[name] = true
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return false
		}
	}
	return true
}

// audit records one change: the organization, who made it (the actor),
// the action, its target (a key's or the organization's id) and when,
// with attrs; never a key or token.
func (h *Handler) audit(r *http.Request, c caller, action, orgID, target string, attrs ...any) {
	h.logger.InfoContext(r.Context(), "keyward: admin: "+action, append([]any{"org", orgID, "actor", c.who, "action", action,
		"target", target, "at", h.cfg.Now().UTC().Format(time.RFC3339)}, attrs...)...)
}

package admin

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/keyward/keyward"
)

// Dashboard sessions (operator mode) and one-time login codes live in
// memory: a restart signs everyone out. Behind a load balancer, send a
// browser to one instance (sticky sessions).

const (
	sessionCookie = "keyward_session"
	csrfCookie    = "keyward_csrf"
	flashCookie   = "keyward_flash"  // a code of flashes, for the next page
	revealCookie  = "keyward_reveal" // the id of a new key kept to be shown once
	// revealTTL is how long a new key waits to be shown.
	revealTTL = 10 * time.Minute
	// maxSessions and maxCodes bound what the maps hold; past them the
	// oldest go first.
	maxSessions = 10_000
	maxCodes    = 1_000
	// DefaultLoginLinkTTL is how long a login link works when LoginLink is
	// given no lifetime.
	DefaultLoginLinkTTL = 15 * time.Minute
)

type sessions struct {
	now func() time.Time
	ttl time.Duration

	mu      sync.Mutex
	open    map[string]session   // sha256(session id) → session
	codes   map[string]time.Time // sha256(login code) → expiry
	reveals map[string]reveal    // sha256(reveal id) → a new key to show once
}

// reveal is a new key kept for the page that shows it once: create and
// rotate answer with a redirect to that page, so that a reload of it
// shows the key no more and creates nothing.
type reveal struct {
	bind         string // the caller's csrfBind: only they may see it
	orgID, keyID string
	key          string // the plaintext
	grace        string // a rotation's: what becomes of the old key
	expires      time.Time
}

type session struct {
	who     string
	expires time.Time
	// token is the hash of the admin token that opened the session (zero:
	// a login link): the session ends when the token is revoked.
	token keyward.KeyHash
}

func newSessions(now func() time.Time, ttl time.Duration) *sessions {
	return &sessions{now: now, ttl: ttl, open: map[string]session{}, codes: map[string]time.Time{}, reveals: map[string]reveal{}}
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return string(h[:])
}

// start opens a session for who, opened by the admin token of hash token
// (zero: a login link), and returns its id.
func (s *sessions) start(who string, token keyward.KeyHash) string {
	id := randomToken()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	evict(s.open, maxSessions, func(v session) bool { return !now.Before(v.expires) }, func(v session) time.Time { return v.expires })
	s.open[digest(id)] = session{who: who, expires: now.Add(s.ttl), token: token}
	return id
}

// find returns the session of id, if it is open.
func (s *sessions) find(id string) (session, bool) {
	if id == "" {
		return session{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.open[digest(id)]
	if !ok || !s.now().Before(v.expires) {
		return session{}, false
	}
	return v, true
}

func (s *sessions) end(id string) {
	s.mu.Lock()
	delete(s.open, digest(id))
	s.mu.Unlock()
}

// newCode makes a one-time login code valid for ttl.
func (s *sessions) newCode(ttl time.Duration) string {
	code := randomToken()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	evict(s.codes, maxCodes, func(v time.Time) bool { return !now.Before(v) }, func(v time.Time) time.Time { return v })
	s.codes[digest(code)] = now.Add(ttl)
	return code
}

// useCode reports whether code is a login code that has not expired, and
// makes it unusable.
func (s *sessions) useCode(code string) bool {
	if code == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := digest(code)
	exp, ok := s.codes[d]
	delete(s.codes, d)
	return ok && s.now().Before(exp)
}

// keep holds rv for revealTTL and returns the id that takes it.
func (s *sessions) keep(rv reveal) string {
	id := randomToken()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	evict(s.reveals, maxCodes, func(v reveal) bool { return !now.Before(v.expires) }, func(v reveal) time.Time { return v.expires })
	rv.expires = now.Add(revealTTL)
	s.reveals[digest(id)] = rv
	return id
}

// take returns the new key held under id for bind and key keyID, once:
// it is then forgotten.
func (s *sessions) take(id, bind, keyID string) (reveal, bool) {
	if id == "" {
		return reveal{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := digest(id)
	rv, ok := s.reveals[d]
	if !ok || rv.bind != bind || rv.keyID != keyID {
		return reveal{}, false
	}
	delete(s.reveals, d)
	return rv, s.now().Before(rv.expires)
}

// evict makes room for one more entry in m: the expired ones go, then, if
// m is still full, the one that expires first.
func evict[V any](m map[string]V, max int, expired func(V) bool, expiry func(V) time.Time) {
	if len(m) < max {
		return
	}
	for k, v := range m {
		if expired(v) {
			delete(m, k)
		}
	}
	for len(m) >= max {
		var first string
		var at time.Time
		for k, v := range m {
			if first == "" || expiry(v).Before(at) {
				first, at = k, expiry(v)
			}
		}
		delete(m, first)
	}
}

// LoginLink returns the path (under PagePath, with its query) of a
// one-time link that opens a dashboard session, valid for ttl (zero:
// DefaultLoginLinkTTL; at most a day). Give it only to an operator: it is
// a credential until used or expired. Operator mode only.
func (h *Handler) LoginLink(ttl time.Duration) (string, error) {
	if h.cfg.Tokens == nil {
		return "", errors.New("keyward: admin: login links are for operator mode (Config.Tokens)")
	}
	if ttl == 0 {
		ttl = DefaultLoginLinkTTL
	}
	if ttl < 0 || ttl > 24*time.Hour {
		return "", errors.New("keyward: admin: a login link lives more than 0 and at most 24h")
	}
	return h.paths.page + "login?code=" + url.QueryEscape(h.sessions.newCode(ttl)), nil
}

// csrfKey signs CSRF tokens: a form's token is the HMAC of the browser's
// CSRF cookie and of who the form acts for (caller.csrfBind), a value that
// neither the cookie alone nor a pair taken by someone else can forge a
// form with.
type csrfKey [32]byte

func newCSRFKey() csrfKey {
	var k csrfKey
	_, _ = rand.Read(k[:])
	return k
}

func (k csrfKey) sign(cookie, bind string) string {
	m := hmac.New(sha256.New, k[:])
	m.Write([]byte("keyward-dashboard-csrf:" + cookie + "\x00" + bind))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// secure reports whether the cookies set in answer to r are Secure.
func (h *Handler) secure(r *http.Request) bool { return r.TLS != nil || h.cfg.SecureCookies }

// cookie returns the name and path of the dashboard's cookie base for r:
// over TLS "__Host-" + base at "/", a name browsers take only from this
// host over HTTPS (never from a sibling subdomain, never with a Domain),
// so that nobody else can plant it; else base at the page's path.
func (h *Handler) cookie(r *http.Request, base string) (name, path string) {
	if h.secure(r) {
		return "__Host-" + base, "/"
	}
	return base, h.paths.page
}

// setCookie sets the dashboard's cookie base to value, for maxAge seconds
// (0: the browser's session; < 0: delete it).
func (h *Handler) setCookie(w http.ResponseWriter, r *http.Request, base, value string, maxAge int) *http.Cookie {
	name, path := h.cookie(r, base)
	c := &http.Cookie{Name: name, Value: value, Path: path, HttpOnly: true, Secure: h.secure(r),
		SameSite: http.SameSiteStrictMode, MaxAge: maxAge}
	http.SetCookie(w, c)
	return c
}

// readCookie returns the value of r's dashboard cookie base.
func (h *Handler) readCookie(r *http.Request, base string) (string, bool) {
	name, _ := h.cookie(r, base)
	c, err := r.Cookie(name)
	if err != nil {
		return "", false
	}
	return c.Value, true
}

// csrfToken returns the CSRF token of r's forms acting for c, setting the
// CSRF cookie if r has none.
func (h *Handler) csrfToken(w http.ResponseWriter, r *http.Request, c caller) string {
	v, ok := h.readCookie(r, csrfCookie)
	if !ok || len(v) != 43 {
		ck := h.setCookie(w, r, csrfCookie, randomToken(), 0)
		r.AddCookie(ck) // later calls for this request see it
		v = ck.Value
	}
	return h.csrf.sign(v, c.csrfBind)
}

// checkForm parses r's form (at most MaxBody bytes) and returns
// errCrossSite unless it carries the CSRF token of r's CSRF cookie for c
// and, if the browser names one, comes from this origin: this host, over
// the scheme the dashboard is served with (an opaque "null" origin is
// refused).
func (h *Handler) checkForm(w http.ResponseWriter, r *http.Request, c caller) error {
	r.Body = http.MaxBytesReader(w, r.Body, h.cfg.MaxBody)
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return bodyTooLarge(h.cfg.MaxBody)
		}
		return errMalformedForm
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return errCrossSite
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		scheme := "http"
		if h.secure(r) {
			scheme = "https"
		}
		u, err := url.Parse(origin)
		if err != nil || u.Scheme != scheme || u.Host != r.Host || u.Path != "" {
			return errCrossSite
		}
	}
	v, ok := h.readCookie(r, csrfCookie)
	if !ok {
		return errCrossSite
	}
	if !hmac.Equal([]byte(r.PostForm.Get("csrf")), []byte(h.csrf.sign(v, c.csrfBind))) {
		return errCrossSite
	}
	return nil
}

package admin

import (
	"bytes"
	"embed"
	"errors"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// keyPageSize is how many keys a page of the dashboard lists.
const keyPageSize = 25

type page struct {
	views map[string]*template.Template
	csp   string
	brand Brand
}

func newPage(cfg Config) (*page, error) {
	funcs := template.FuncMap{
		"day": func(t time.Time) string { return t.UTC().Format("2 Jan 2006") },
		"dayPtr": func(t *time.Time, none string) string {
			if t == nil {
				return none
			}
			return t.UTC().Format("2 Jan 2006 15:04")
		},
		"count": count,
		"ptr":   func(t time.Time) *time.Time { return &t },
		"has":   func(list []string, v string) bool { return slices.Contains(list, v) },
		"nz": func(n int64) string { // a limit override: empty for none
			if n == 0 {
				return ""
			}
			return strconv.FormatInt(n, 10)
		},
	}
	p := &page{views: map[string]*template.Template{}, csp: contentSecurityPolicy(cfg), brand: cfg.Brand}
	if p.brand.Name == "" {
		p.brand.Name = "keyward"
	}
	for _, name := range []string{"login", "orgs", "org", "newkey", "reveal", "key", "revoke", "error"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/forms.html", "templates/"+name+".html")
		if err != nil {
			return nil, err
		}
		p.views[name] = t
	}
	return p, nil
}

// pageData is what every view may show.
type pageData struct {
	Title    string
	Brand    Brand
	Root     string // the relative reference of the page root from this page: "./", "../", …
	CSRF     string
	Operator bool
	Session  bool
	Flash    string
	Error    string // a failure's message, or a refused form's problems in general
	Next     string // what to do next, after a failure
	// Problems are a refused form's problems by field (fieldOf); Form is
	// what was typed, shown again.
	Problems map[string][]string
	Form     map[string][]string

	Orgs        []orgRow
	LimitLabels []string
	Plans       []planOption

	Org          manage.OrgView
	Limits       []limitField
	Balance      balanceJSON
	CreditsUsed  int64
	CreditsTotal int64
	Entries      []entryJSON
	Usage        *usageView
	Keys         []manage.KeyView
	Search       string
	Status       string
	Statuses     []option
	NextAfter    string // the id after which the next page of keys starts
	Paged        bool   // this is not the first page
	Permissions  []string

	Code   string // a login link's, for the form that uses it
	NewKey manage.KeyView
	Grace  string
	Shown  bool // the reveal page: the key was shown already
	Key    manage.KeyView
	Graces []option
	Expiry []option
}

// option is one choice of a select.
type option struct {
	Value, Label string
	Selected     bool
}

// Value returns what was typed in field, or def.
func (d *pageData) Value(field, def string) string {
	if v, ok := d.Form[field]; ok && len(v) > 0 {
		return v[0]
	}
	return def
}

// Checked reports whether a checkbox of field with value v is ticked:
// as typed, on a refused form; else as def says.
func (d *pageData) Checked(field, v string, def bool) bool {
	if d.Form == nil {
		return def
	}
	return slices.Contains(d.Form[field], v)
}

type orgRow struct {
	Org    manage.OrgView
	Limits []limitField
}

// render writes view with the page's headers: never stored (every view
// may show a key or its organization's figures), framed only by the
// host's origins, and with the Content-Security-Policy.
func (p *page) render(w http.ResponseWriter, status int, view string, d *pageData) {
	var buf bytes.Buffer
	d.Brand = p.brand
	if err := p.views[view].ExecuteTemplate(&buf, "layout", d); err != nil {
		http.Error(w, "keyward: the page could not be drawn", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", p.csp)
	if strings.HasSuffix(p.csp, "frame-ancestors 'none'; base-uri 'none'") {
		h.Set("X-Frame-Options", "DENY") // for browsers without CSP 2
	}
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: under no-referrer a browser sends
	// "Origin: null" with the page's own forms, which checkForm refuses.
	// No URL of the dashboard goes to another site either way.
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail shows err as a page: the failure's heading, message and what to
// do next (a 5xx's cause is logged by the error writer's rules, never
// shown).
func (p *page) fail(h *Handler, w http.ResponseWriter, r *http.Request, err error) {
	var e *keyward.Error
	if !errors.As(err, &e) || e.Status < 400 || e.Status > 599 {
		e = &keyward.Error{Status: http.StatusInternalServerError, Code: keyward.CodeInternal, Message: "An internal error occurred.", Cause: err}
	}
	if e.Status >= 500 {
		h.logger.ErrorContext(r.Context(), "keyward: admin: dashboard request failed", "status", e.Status, "path", r.URL.Path, "error", e.Cause)
	}
	msg := e.Message
	if problems := problemsOf(e); len(problems) > 0 {
		msg = "Nothing was changed: " + strings.Join(problems, "; ") + "."
	}
	c, _ := h.pageSession(r)
	for k, v := range e.Header { // Allow on a 405, Retry-After on a 503
		w.Header()[k] = v
	}
	heading, next := failureWords(e.Status)
	p.render(w, e.Status, "error", &pageData{Title: heading, Error: msg, Next: next, CSRF: h.csrfToken(w, r, c),
		Root: h.root(r), Operator: c.operator, Session: c.operator && h.cfg.OrgFor == nil})
}

// problemsOf returns the problems of a 422 invalid_fields, as the page
// says them.
func problemsOf(e *keyward.Error) []string {
	if e.Reason != ReasonInvalidFields {
		return nil
	}
	problems, _ := e.Details["problems"].([]string)
	out := make([]string, len(problems))
	for i, p := range problems {
		out[i] = pageProblem(p)
	}
	return out
}

// refused shows form view again, with status, err's problems beside
// their fields and what was typed kept in d.Form; an err that is not a
// refusal of the form's fields fails the page as any other.
func (h *Handler) refused(w http.ResponseWriter, r *http.Request, view string, d *pageData, err error) error {
	var e *keyward.Error
	if !errors.As(err, &e) || e.Status != http.StatusUnprocessableEntity {
		return err
	}
	d.Problems, d.Form = map[string][]string{}, r.PostForm
	var general []string
	for _, p := range problemsOf(e) {
		if f := fieldOf(p); f != "" {
			d.Problems[f] = append(d.Problems[f], p)
		} else {
			general = append(general, p)
		}
	}
	d.Error = "Nothing was changed: correct the fields marked below."
	if len(general) > 0 {
		d.Error = "Nothing was changed: " + strings.Join(general, "; ") + "."
	}
	h.page.render(w, e.Status, view, d)
	return nil
}

func (h *Handler) pageRoutes() {
	static, _ := fs.Sub(staticFS, "static")
	P := h.paths.page
	h.mux.HandleFunc("GET "+P+"static/{name}", func(w http.ResponseWriter, r *http.Request) {
		// The page's files only: no directory listing, and a name that is
		// not one of them gets the dashboard's 404.
		name := r.PathValue("name")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if name == "brand.css" { // the brand's colours
			w.Header().Set("Content-Type", "text/css; charset=utf-8")
			w.Header().Set("Cache-Control", "no-cache")
			_, _ = io.WriteString(w, brandCSS(h.cfg.Brand))
			return
		}
		if st, err := fs.Stat(static, name); err != nil || !st.Mode().IsRegular() {
			h.page.fail(h, w, r, errRouteNotFound)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		r.Header.Del("Range") // small files, whole: a bad range would be net/http's plain 416
		http.ServeFileFS(w, r, static, name)
	})
	h.mux.HandleFunc("GET "+P+"login", h.loginPage)
	h.mux.HandleFunc("POST "+P+"login", h.login)
	h.mux.HandleFunc("POST "+P+"logout", h.logout)
	page := func(pattern string, f func(http.ResponseWriter, *http.Request, caller) error) {
		method, path, _ := strings.Cut(pattern, " ")
		h.mux.HandleFunc(method+" "+P+path, func(w http.ResponseWriter, r *http.Request) {
			c, ok := h.pageSession(r)
			if !ok {
				if h.cfg.OrgFor != nil {
					h.page.fail(h, w, r, errNotSignedIn)
					return
				}
				h.seeOther(w, r, "login")
				return
			}
			if r.Method == http.MethodPost {
				if err := h.checkForm(w, r, c); err != nil {
					h.page.fail(h, w, r, err)
					return
				}
			}
			if err := f(w, r, c); err != nil {
				h.page.fail(h, w, r, err)
			}
		})
	}
	page("GET {$}", h.home)
	page("POST orgs", h.pageCreateOrg)
	page("GET orgs/{org}", h.orgPage)
	page("POST orgs/{org}", h.pageUpdateOrg)
	page("GET orgs/{org}/keys/new", h.newKeyPage)
	page("POST orgs/{org}/keys", h.pageCreateKey)
	page("GET orgs/{org}/keys/{key}", h.keyDetail)
	page("POST orgs/{org}/keys/{key}", h.pageUpdateKey)
	page("GET orgs/{org}/keys/{key}/reveal", h.revealPage)
	page("POST orgs/{org}/keys/{key}/rotate", h.pageRotate)
	page("GET orgs/{org}/keys/{key}/revoke", h.revokePage)
	page("POST orgs/{org}/keys/{key}/revoke", h.pageRevoke)
	page("POST orgs/{org}/credits", h.pageGrant)
}

// root returns the relative reference from r's page to the page root
// (PagePath): "./" at the root, "../" one level down, and so on. Every
// link and form of the page starts with it, so the page works under any
// prefix, a proxy's too.
func (h *Handler) root(r *http.Request) string {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), h.paths.page)
	if !ok {
		return h.paths.page
	}
	if n := strings.Count(rest, "/"); n > 0 {
		return strings.Repeat("../", n)
	}
	return "./"
}

// seeOther answers with a 303 to target, a path under the page root
// ("orgs/ORG"), as a relative reference.
func (h *Handler) seeOther(w http.ResponseWriter, r *http.Request, target string) {
	w.Header().Set("Location", h.root(r)+target)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusSeeOther)
}

// done answers an action with a 303 to target and leaves flash, a code
// of flashes, for the page there to confirm the action.
func (h *Handler) done(w http.ResponseWriter, r *http.Request, target, flash string) {
	h.setCookie(w, r, flashCookie, flash, 60)
	h.seeOther(w, r, target)
}

// pageSession returns who a page request acts for: in self-service mode
// the host's organization, in operator mode the session's operator.
func (h *Handler) pageSession(r *http.Request) (caller, bool) {
	if h.cfg.OrgFor != nil {
		c, err := h.selfService(r)
		return c, err == nil
	}
	id, ok := h.readCookie(r, sessionCookie)
	if !ok {
		return caller{}, false
	}
	s, ok := h.sessions.find(id)
	if !ok {
		return caller{}, false
	}
	if s.token != (keyward.KeyHash{}) {
		if _, ok := h.cfg.Tokens.find(s.token); !ok { // the token was revoked since
			h.sessions.end(id)
			return caller{}, false
		}
	}
	return caller{operator: true, who: s.who, csrfBind: "session " + id}, true
}

// data is what every page of c shows: the title, the CSRF token, the
// links' root and the flash message left by the action before (shown
// once).
func (h *Handler) data(w http.ResponseWriter, r *http.Request, c caller, title string) *pageData {
	d := &pageData{Title: title, CSRF: h.csrfToken(w, r, c), Operator: c.operator, Session: c.operator && h.cfg.OrgFor == nil,
		Permissions: h.cfg.Permissions, Root: h.root(r)}
	if code, ok := h.readCookie(r, flashCookie); ok {
		d.Flash = flashes[code]
		h.setCookie(w, r, flashCookie, "", -1)
	}
	return d
}

// loginPage is the sign-in form; with a login link's code, a page whose
// form uses the code (dashboard.js sends it at once). The link is used by
// that form, not by this GET: a link opened from another site is a
// cross-site navigation, on which the browser would not send a
// SameSite=Strict session cookie set now, so the dashboard is reached
// from this page, the same site; and a link preview or prefetch does not
// use the link up.
func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	if h.cfg.OrgFor != nil {
		h.page.fail(h, w, r, errRouteNotFound)
		return
	}
	d := &pageData{Title: "Sign in", CSRF: h.csrfToken(w, r, caller{}), Root: h.root(r)}
	if code := r.URL.Query().Get("code"); code != "" {
		d.Code = code
	}
	h.page.render(w, http.StatusOK, "login", d)
}

// login opens a session with a login link's code or an admin token.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	if h.cfg.OrgFor != nil {
		h.page.fail(h, w, r, errRouteNotFound)
		return
	}
	if err := h.checkForm(w, r, caller{}); err != nil {
		h.page.fail(h, w, r, err)
		return
	}
	refuse := func(msg string) {
		h.page.render(w, http.StatusUnauthorized, "login", &pageData{Title: "Sign in", CSRF: h.csrfToken(w, r, caller{}),
			Root: h.root(r), Error: msg})
	}
	if code := r.PostForm.Get("code"); code != "" {
		if !h.sessions.useCode(code) {
			refuse("This login link was used already or has expired. Ask for a new one, or sign in with an admin token.")
			return
		}
		h.startSession(w, r, "login link", keyward.KeyHash{})
		return
	}
	token := r.PostForm.Get("token")
	name, ok := h.cfg.Tokens.Verify(token)
	if !ok {
		refuse("That admin token is not valid.")
		return
	}
	h.startSession(w, r, "token "+name, keyward.Hash(token))
}

// startSession opens a session for who, opened by the admin token of hash
// token (zero: a login link), and sends the browser to the dashboard.
func (h *Handler) startSession(w http.ResponseWriter, r *http.Request, who string, token keyward.KeyHash) {
	id := h.sessions.start(who, token)
	h.setCookie(w, r, sessionCookie, id, int(h.cfg.SessionTTL/time.Second))
	h.logger.InfoContext(r.Context(), "keyward: admin: dashboard session opened", "actor", who)
	h.seeOther(w, r, "")
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	c, _ := h.pageSession(r)
	if err := h.checkForm(w, r, c); err != nil {
		h.page.fail(h, w, r, err)
		return
	}
	if id, ok := h.readCookie(r, sessionCookie); ok {
		h.sessions.end(id)
	}
	h.setCookie(w, r, sessionCookie, "", -1)
	h.seeOther(w, r, "login")
}

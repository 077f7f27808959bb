package admin

import (
	"bytes"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/usage"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// contentSecurityPolicy allows the page's own script, style and images
// only: no inline script or style, no framing, forms to itself only.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// chartDays is how many days the page's usage chart shows.
const chartDays = 30

type page struct {
	views map[string]*template.Template
}

func newPage() (*page, error) {
	funcs := template.FuncMap{
		"day": func(t time.Time) string { return t.UTC().Format("2 Jan 2006") },
		"dayPtr": func(t *time.Time, none string) string {
			if t == nil {
				return none
			}
			return t.UTC().Format("2 Jan 2006 15:04")
		},
	}
	p := &page{views: map[string]*template.Template{}}
	for _, name := range []string{"login", "orgs", "org", "newkey", "revoke", "error"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
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
	CSRF     string
	Operator bool
	Session  bool
	Error    string

	Orgs        []orgRow
	LimitLabels []string
	Plans       []keyward.Plan

	Org          orgJSON
	Limits       []limitField
	Balance      balanceJSON
	CreditsUsed  int64
	CreditsTotal int64
	HasUsage     bool
	Days         []usage.Day
	Chart        template.HTML
	Keys         []keyJSON
	NextAfter    string // the id after which the next page of keys starts
	Permissions  []string

	Code   string // a login link's, for the form that uses it
	NewKey keyJSON
	Grace  string
	Key    keyJSON
}

type orgRow struct {
	Org    orgJSON
	Limits []limitField
}

// render writes view with the page's headers: never stored (every view
// may show a key or its organization's figures), never framed, and with
// the Content-Security-Policy.
func (p *page) render(w http.ResponseWriter, status int, view string, d *pageData) {
	var buf bytes.Buffer
	if err := p.views[view].ExecuteTemplate(&buf, "layout", d); err != nil {
		http.Error(w, "keyward: the page could not be drawn", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: under no-referrer a browser sends
	// "Origin: null" with the page's own forms, which checkForm refuses.
	// No URL of the dashboard goes to another site either way.
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail shows err as a page: a sign-in for an operator without a session,
// else the failure's message and status (a 5xx's cause is logged by the
// error writer's rules, never shown).
func (p *page) fail(h *Handler, w http.ResponseWriter, r *http.Request, err error) {
	var e *keyward.Error
	if !errors.As(err, &e) || e.Status < 400 || e.Status > 599 {
		e = &keyward.Error{Status: http.StatusInternalServerError, Code: keyward.CodeInternal, Message: "An internal error occurred.", Cause: err}
	}
	if e.Status >= 500 {
		h.logger.ErrorContext(r.Context(), "keyward: admin: dashboard request failed", "status", e.Status, "path", r.URL.Path, "error", e.Cause)
	}
	msg := e.Message
	if e.Reason == ReasonInvalidFields {
		if problems, ok := e.Details["problems"].([]string); ok && len(problems) > 0 {
			msg = "Nothing was changed: "
			for i, pr := range problems {
				if i > 0 {
					msg += "; "
				}
				msg += pr
			}
			msg += "."
		}
	}
	c, _ := h.pageSession(r)
	for k, v := range e.Header { // Allow on a 405, Retry-After on a 503
		w.Header()[k] = v
	}
	p.render(w, e.Status, "error", &pageData{Title: http.StatusText(e.Status), Error: msg, CSRF: h.csrfToken(w, r, c),
		Operator: c.operator, Session: c.operator})
}

func (h *Handler) pageRoutes() {
	static, _ := fs.Sub(staticFS, "static")
	h.mux.HandleFunc("GET "+PagePath+"static/{name}", func(w http.ResponseWriter, r *http.Request) {
		// The page's files only: no directory listing, and a name that is
		// not one of them gets the dashboard's 404.
		name := r.PathValue("name")
		if st, err := fs.Stat(static, name); err != nil || !st.Mode().IsRegular() {
			h.page.fail(h, w, r, errRouteNotFound)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		r.Header.Del("Range") // small files, whole: a bad range would be net/http's plain 416
		http.ServeFileFS(w, r, static, name)
	})
	h.mux.HandleFunc("GET "+PagePath+"login", h.loginPage)
	h.mux.HandleFunc("POST "+PagePath+"login", h.login)
	h.mux.HandleFunc("POST "+PagePath+"logout", h.logout)
	page := func(pattern string, f func(http.ResponseWriter, *http.Request, caller) error) {
		h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			c, ok := h.pageSession(r)
			if !ok {
				if h.cfg.OrgFor != nil {
					h.page.fail(h, w, r, errNotSignedIn)
					return
				}
				http.Redirect(w, r, PagePath+"login", http.StatusSeeOther)
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
	page("GET "+PagePath+"{$}", h.home)
	page("POST "+PagePath+"orgs", h.pageCreateOrg)
	page("GET "+PagePath+"orgs/{org}", h.orgPage)
	page("POST "+PagePath+"orgs/{org}/keys", h.pageCreateKey)
	page("POST "+PagePath+"orgs/{org}/keys/{key}/rotate", h.pageRotate)
	page("GET "+PagePath+"orgs/{org}/keys/{key}/revoke", h.revokePage)
	page("POST "+PagePath+"orgs/{org}/keys/{key}/revoke", h.pageRevoke)
	page("POST "+PagePath+"orgs/{org}/credits", h.pageGrant)
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

func (h *Handler) data(w http.ResponseWriter, r *http.Request, c caller, title string) *pageData {
	return &pageData{Title: title, CSRF: h.csrfToken(w, r, c), Operator: c.operator, Session: c.operator && h.cfg.OrgFor == nil,
		Permissions: h.cfg.Permissions}
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
	d := &pageData{Title: "Sign in", CSRF: h.csrfToken(w, r, caller{})}
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
	if code := r.PostForm.Get("code"); code != "" {
		if !h.sessions.useCode(code) {
			h.page.render(w, http.StatusUnauthorized, "login", &pageData{Title: "Sign in", CSRF: h.csrfToken(w, r, caller{}),
				Error: "This login link was used already or has expired. Ask for a new one, or sign in with an admin token."})
			return
		}
		h.startSession(w, r, "login link", keyward.KeyHash{})
		return
	}
	token := r.PostForm.Get("token")
	name, ok := h.cfg.Tokens.Verify(token)
	if !ok {
		h.page.render(w, http.StatusUnauthorized, "login", &pageData{Title: "Sign in", CSRF: h.csrfToken(w, r, caller{}),
			Error: "That admin token is not valid."})
		return
	}
	h.startSession(w, r, "token "+name, keyward.Hash(token))
}

// startSession opens a session for who, opened by the admin token of hash
// token (zero: a login link), and sends the browser to the dashboard.
func (h *Handler) startSession(w http.ResponseWriter, r *http.Request, who string, token keyward.KeyHash) {
	id := h.sessions.start(who, token)
	h.setCookie(w, r, sessionCookie, id, int(h.cfg.SessionTTL/time.Second))
	h.logger.InfoContext(r.Context(), "keyward: admin: dashboard session opened", "by", who)
	http.Redirect(w, r, PagePath, http.StatusSeeOther)
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
	http.Redirect(w, r, PagePath+"login", http.StatusSeeOther)
}

func (h *Handler) home(w http.ResponseWriter, r *http.Request, c caller) error {
	if !c.operator {
		http.Redirect(w, r, PagePath+"orgs/"+c.orgID, http.StatusSeeOther)
		return nil
	}
	orgs, err := h.cfg.Keys.ListOrgs(r.Context())
	if err != nil {
		return failureOf(err)
	}
	d := h.data(w, r, c, "Organizations")
	for _, o := range orgs {
		d.Orgs = append(d.Orgs, orgRow{Org: orgView(o), Limits: limitFields(o.Limits)})
	}
	for _, f := range limitFields(keyward.Limits{}) {
		d.LimitLabels = append(d.LimitLabels, f.Label)
	}
	d.Plans = h.cfg.Plans().All()
	h.page.render(w, http.StatusOK, "orgs", d)
	return nil
}

func (h *Handler) pageCreateOrg(w http.ResponseWriter, r *http.Request, c caller) error {
	if !c.operator {
		return errOperatorOnly
	}
	name, plan, overage := r.PostForm.Get("name"), r.PostForm.Get("plan"), r.PostForm.Get("allowOverage") == "true"
	o, err := h.createOrgFrom(r, c, orgRequest{Name: &name, Plan: &plan, AllowOverage: &overage})
	if err != nil {
		return err
	}
	http.Redirect(w, r, PagePath+"orgs/"+o.ID, http.StatusSeeOther)
	return nil
}

func (h *Handler) orgPage(w http.ResponseWriter, r *http.Request, c caller) error {
	o, err := h.org(r, c)
	if err != nil {
		return err
	}
	b, err := h.cfg.Ledger.Balance(r.Context(), o.Account())
	if err != nil {
		return keyward.ServiceUnavailable("credit ledger", err)
	}
	keys, err := h.keyPage(r, o.ID)
	if err != nil {
		return err
	}
	d := h.data(w, r, c, o.Name)
	d.NextAfter = keys.next
	d.Org, d.Limits, d.Balance = orgView(o), limitFields(o.Limits), balanceView(b)
	d.CreditsTotal = b.Allocation + b.Granted
	d.CreditsUsed = min(max(b.Spent+b.Reserved, 0), d.CreditsTotal)
	now := h.cfg.Now()
	for _, k := range keys.keys {
		d.Keys = append(d.Keys, keyView(k, now))
	}
	if h.cfg.Usage != nil {
		days, err := h.series(r, o.ID, "", chartDays)
		if err != nil {
			return keyward.ServiceUnavailable("usage store", err)
		}
		d.HasUsage, d.Days, d.Chart = true, days, chartSVG(days)
	}
	h.page.render(w, http.StatusOK, "org", d)
	return nil
}

func (h *Handler) pageCreateKey(w http.ResponseWriter, r *http.Request, c caller) error {
	o, err := h.org(r, c)
	if err != nil {
		return err
	}
	f := r.PostForm
	days, err := strconv.ParseInt(f.Get("expiresInDays"), 10, 64)
	if err != nil && f.Get("expiresInDays") != "" {
		return invalid(errors.New("expiry must be a whole number of days"))
	}
	spec := manage.KeySpec{OrgID: o.ID, Name: f.Get("name"), Environment: keyward.Environment(f.Get("environment")),
		Permissions: f["permissions"]}
	switch { // out of range: a lifetime that Check refuses, with its message
	case days > int64(manage.MaxKeyLifetime/(24*time.Hour)):
		spec.ExpiresIn = manage.MaxKeyLifetime + 1
	case days < 0:
		spec.ExpiresIn = -1
	default:
		spec.ExpiresIn = time.Duration(days) * 24 * time.Hour
	}
	ck, err := h.createKeyFrom(r, c, spec)
	if err != nil {
		return err
	}
	d := h.data(w, r, c, "Your new key")
	d.Org, d.NewKey = orgView(o), keyView(ck.Record, h.cfg.Now())
	d.NewKey.Key = ck.Key
	h.page.render(w, http.StatusOK, "newkey", d)
	return nil
}

func (h *Handler) pageRotate(w http.ResponseWriter, r *http.Request, c caller) error {
	o, k, err := h.key(r, c)
	if err != nil {
		return err
	}
	secs, err := strconv.ParseInt(r.PostForm.Get("grace"), 10, 64)
	if err != nil {
		return invalid(errors.New("grace must be a whole number of seconds"))
	}
	grace := seconds(secs)
	ck, err := h.rotate(r, c, k.Record.ID, grace)
	if err != nil {
		return err
	}
	d := h.data(w, r, c, "Your rotated key")
	d.Org, d.NewKey = orgView(o), keyView(ck.Record, h.cfg.Now())
	d.NewKey.Key, d.NewKey.Predecessor = ck.Key, k.Record.ID
	d.Grace = "the old key stops working now"
	if grace > 0 {
		d.Grace = "the old key keeps working for " + grace.String()
	}
	h.page.render(w, http.StatusOK, "newkey", d)
	return nil
}

func (h *Handler) revokePage(w http.ResponseWriter, r *http.Request, c caller) error {
	o, k, err := h.key(r, c)
	if err != nil {
		return err
	}
	d := h.data(w, r, c, "Revoke key")
	d.Org, d.Key = orgView(o), keyView(k.Record, h.cfg.Now())
	h.page.render(w, http.StatusOK, "revoke", d)
	return nil
}

func (h *Handler) pageRevoke(w http.ResponseWriter, r *http.Request, c caller) error {
	o, k, err := h.key(r, c)
	if err != nil {
		return err
	}
	if err := h.revoke(r, c, k.Record); err != nil {
		return err
	}
	http.Redirect(w, r, PagePath+"orgs/"+o.ID, http.StatusSeeOther)
	return nil
}

func (h *Handler) pageGrant(w http.ResponseWriter, r *http.Request, c caller) error {
	o, err := h.org(r, c)
	if err != nil {
		return err
	}
	if !c.operator {
		return errOperatorOnly
	}
	amount, err := strconv.ParseInt(r.PostForm.Get("amount"), 10, 64)
	if err != nil {
		return invalid(errors.New("amount must be a whole number of credits"))
	}
	if _, err := h.grantTo(r, c, o, grantRequest{Amount: amount, Note: r.PostForm.Get("note")}); err != nil {
		return err
	}
	http.Redirect(w, r, PagePath+"orgs/"+o.ID, http.StatusSeeOther)
	return nil
}

package admin

import (
	_ "embed"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/usage"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3.1 document of the admin API, as served at
// APIPath + "openapi.json".
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

// Bounds of the API's query parameters.
const (
	maxUsageDays  = 366
	maxLedgerPage = 200
)

func (h *Handler) routes() {
	api := func(pattern string, f func(http.ResponseWriter, *http.Request, caller)) {
		method, path, _ := strings.Cut(pattern, " ")
		h.mux.HandleFunc(method+" "+strings.TrimSuffix(APIPath, "/")+path, func(w http.ResponseWriter, r *http.Request) {
			c, err := h.apiCaller(r)
			if err != nil {
				h.errors.WriteError(w, r, err)
				return
			}
			f(w, r, c)
		})
	}
	h.mux.HandleFunc("GET "+APIPath+"openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(openAPI)
	})
	api("GET /orgs", h.listOrgs)
	api("POST /orgs", h.createOrg)
	api("GET /orgs/{org}", h.getOrg)
	api("PATCH /orgs/{org}", h.updateOrg)
	api("GET /orgs/{org}/keys", h.listKeys)
	api("POST /orgs/{org}/keys", h.createKey)
	api("GET /orgs/{org}/keys/{key}", h.getKey)
	api("PATCH /orgs/{org}/keys/{key}", h.updateKey)
	api("POST /orgs/{org}/keys/{key}/rotate", h.rotateKey)
	api("POST /orgs/{org}/keys/{key}/revoke", h.revokeKey)
	api("GET /orgs/{org}/keys/{key}/usage", h.keyUsage)
	api("GET /orgs/{org}/credits", h.balance)
	api("POST /orgs/{org}/credits/grants", h.grant)
	api("GET /orgs/{org}/credits/ledger", h.ledger)
	api("GET /orgs/{org}/usage", h.orgUsage)
	h.pageRoutes()
}

// apiCaller authenticates an API request: a bearer admin token in
// operator mode, the host's OrgFor in self-service mode.
func (h *Handler) apiCaller(r *http.Request) (caller, error) {
	if h.cfg.OrgFor != nil {
		return h.selfService(r)
	}
	auth := r.Header.Values("Authorization")
	if len(auth) == 0 {
		return caller{}, errMissingToken
	}
	scheme, token, _ := strings.Cut(auth[0], " ")
	if len(auth) != 1 || !strings.EqualFold(scheme, "Bearer") {
		return caller{}, errInvalidToken
	}
	name, ok := h.cfg.Tokens.Verify(strings.TrimSpace(token))
	if !ok {
		return caller{}, errInvalidToken
	}
	return caller{operator: true, who: "token " + name}, nil
}

// selfService asks the host which organization r may manage.
func (h *Handler) selfService(r *http.Request) (caller, error) {
	id, err := h.cfg.OrgFor(r)
	if err != nil || id == "" {
		return caller{}, errNotSignedIn
	}
	who := "org " + id
	if h.cfg.ActorFor != nil {
		if actor := h.cfg.ActorFor(r); actor != "" {
			who = actor
		}
	}
	return caller{orgID: id, who: who, csrfBind: "org " + id}, nil
}

// org returns the organization of r's {org}, if c may manage it: another
// organization is not found, as one that does not exist.
func (h *Handler) org(r *http.Request, c caller) (keyward.Organization, error) {
	id := r.PathValue("org")
	if !saneID(id) || !c.mayManage(id) {
		return keyward.Organization{}, errOrgNotFound
	}
	o, err := h.cfg.Keys.Org(r.Context(), id)
	if err != nil {
		return keyward.Organization{}, failureOf(err)
	}
	return o, nil
}

// key returns r's {org} and {key}, if the key is the organization's.
func (h *Handler) key(r *http.Request, c caller) (keyward.Organization, manage.KeyInfo, error) {
	o, err := h.org(r, c)
	if err != nil {
		return o, manage.KeyInfo{}, err
	}
	id := r.PathValue("key")
	if !saneID(id) {
		return o, manage.KeyInfo{}, errKeyNotFound
	}
	k, err := h.cfg.Keys.Key(r.Context(), o.ID, id)
	if err != nil {
		return o, manage.KeyInfo{}, failureOf(err)
	}
	if k.Record.Org.ID != o.ID {
		return o, manage.KeyInfo{}, errKeyNotFound
	}
	return o, k, nil
}

func (h *Handler) listOrgs(w http.ResponseWriter, r *http.Request, c caller) {
	var orgs []keyward.Organization
	if c.operator {
		var err error
		if orgs, err = h.cfg.Keys.ListOrgs(r.Context()); err != nil {
			h.errors.WriteError(w, r, failureOf(err))
			return
		}
	} else {
		o, err := h.cfg.Keys.Org(r.Context(), c.orgID)
		if err != nil && !errors.Is(err, manage.ErrOrgNotFound) {
			h.errors.WriteError(w, r, failureOf(err))
			return
		}
		if err == nil {
			orgs = append(orgs, o)
		}
	}
	out := make([]manage.OrgView, 0, len(orgs))
	for _, o := range orgs {
		out = append(out, manage.ViewOrg(o))
	}
	h.errors.WriteData(w, r, http.StatusOK, out)
}

// orgRequest is the body of POST /orgs and PATCH /orgs/{org}.
type orgRequest struct {
	Name           *string `json:"name"`
	Plan           *string `json:"plan"`
	RatePerMinute  *int64  `json:"ratePerMinute"`
	RatePerSecond  *int64  `json:"ratePerSecond"`
	Burst          *int64  `json:"burst"`
	Concurrency    *int64  `json:"concurrency"`
	MonthlyCredits *int64  `json:"monthlyCredits"`
	AllowOverage   *bool   `json:"allowOverage"`
}

// apply sets o's fields that req names.
func (req orgRequest) apply(o *keyward.Organization) {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&o.Name, req.Name)
	set(&o.Plan, req.Plan)
	for _, f := range []struct{ dst, src *int64 }{{&o.RatePerMinute, req.RatePerMinute}, {&o.RatePerSecond, req.RatePerSecond},
		{&o.Burst, req.Burst}, {&o.Concurrency, req.Concurrency}} {
		if f.src != nil {
			*f.dst = *f.src
		}
	}
	if req.MonthlyCredits != nil {
		o.MonthlyCredits = *req.MonthlyCredits
	}
	if req.AllowOverage != nil {
		o.AllowOverage = *req.AllowOverage
	}
}

func (h *Handler) createOrg(w http.ResponseWriter, r *http.Request, c caller) {
	if !c.operator {
		h.errors.WriteError(w, r, errOperatorOnly)
		return
	}
	var req orgRequest
	if err := h.readJSON(w, r, &req); err != nil {
		h.errors.WriteError(w, r, err)
		return
	}
	o, err := h.createOrgFrom(r, c, req)
	if err != nil {
		h.errors.WriteError(w, r, err)
		return
	}
	h.errors.WriteData(w, r, http.StatusCreated, manage.ViewOrg(o))
}

// createOrgFrom checks req by manage's rules and creates the organization.
func (h *Handler) createOrgFrom(r *http.Request, c caller, req orgRequest) (keyward.Organization, error) {
	var spec keyward.Organization
	req.apply(&spec)
	n := manage.OrgSpec{Name: spec.Name, Plan: spec.Plan, RatePerMinute: spec.RatePerMinute, RatePerSecond: spec.RatePerSecond,
		Burst: spec.Burst, Concurrency: spec.Concurrency, MonthlyCredits: spec.MonthlyCredits, AllowOverage: spec.AllowOverage}
	if _, err := manage.NewOrg("check", n, h.cfg.Plans()); err != nil {
		return keyward.Organization{}, invalid(err)
	}
	o, err := h.cfg.Keys.CreateOrg(r.Context(), n)
	if err != nil {
		return o, failureOf(err)
	}
	h.audit(r, c, "organization created", o.ID, o.ID)
	return o, nil
}

func (h *Handler) getOrg(w http.ResponseWriter, r *http.Request, c caller) {
	o, err := h.org(r, c)
	if err != nil {
		h.errors.WriteError(w, r, err)
		return
	}
	h.errors.WriteData(w, r, http.StatusOK, manage.ViewOrg(o))
}

func (h *Handler) updateOrg(w http.ResponseWriter, r *http.Request, c caller) {
	o, err := h.org(r, c)
	if err == nil && !c.operator {
		err = errOperatorOnly
	}
	var req orgRequest
	if err == nil {
		err = h.readJSON(w, r, &req)
	}
	if err != nil {
		h.errors.WriteError(w, r, err)
		return
	}
	if o, err = h.updateOrgFrom(r, c, o, req); err != nil {
		h.errors.WriteError(w, r, err)
		return
	}
	h.errors.WriteData(w, r, http.StatusOK, manage.ViewOrg(o))
}

// updateOrgFrom applies req to o, checks the result by manage's rules and
// stores it, returning the organization as stored.
func (h *Handler) updateOrgFrom(r *http.Request, c caller, o keyward.Organization, req orgRequest) (keyward.Organization, error) {
	req.apply(&o)
	err := manage.CheckOrg(o, h.cfg.Plans())
	if req.Name != nil && err == nil {
		err = manage.CheckOrgName(*req.Name)
	}
	if err != nil {
		return o, invalid(err)
	}
	if err := h.cfg.Keys.UpdateOrg(r.Context(), o); err != nil {
		return o, failureOf(err)
	}
	h.audit(r, c, "organization updated", o.ID, o.ID)
	o, err = h.cfg.Keys.Org(r.Context(), o.ID)
	if err != nil {
		return o, failureOf(err)
	}
	return o, nil
}

func (h *Handler) balance(w http.ResponseWriter, r *http.Request, c caller) {
	o, err := h.org(r, c)
	if err != nil {
		h.errors.WriteError(w, r, err)
		return
	}
	b, err := h.cfg.Ledger.Balance(r.Context(), o.Account())
	if err != nil {
		h.errors.WriteError(w, r, keyward.ServiceUnavailable("credit ledger", err))
		return
	}
	h.errors.WriteData(w, r, http.StatusOK, balanceView(b))
}

type grantRequest struct {
	Amount int64  `json:"amount"`
	Note   string `json:"note"`
}

func (h *Handler) grant(w http.ResponseWriter, r *http.Request, c caller) {
	o, err := h.org(r, c)
	if err == nil && !c.operator {
		err = errOperatorOnly
	}
	var req grantRequest
	if err == nil {
		err = h.readJSON(w, r, &req)
	}
	var b balanceJSON
	if err == nil {
		b, err = h.grantTo(r, c, o, req)
	}
	if err != nil {
		h.errors.WriteError(w, r, err)
		return
	}
	h.errors.WriteData(w, r, http.StatusOK, b)
}

// grantTo checks and makes a grant.
func (h *Handler) grantTo(r *http.Request, c caller, o keyward.Organization, req grantRequest) (balanceJSON, error) {
	if err := manage.CheckText("note", req.Note, manage.MaxNoteLen); err != nil {
		return balanceJSON{}, invalid(err)
	}
	b, err := h.cfg.Ledger.Grant(r.Context(), o.Account(), req.Amount, req.Note)
	if err != nil {
		return balanceJSON{}, failureOf(err)
	}
	h.audit(r, c, "credits granted", o.ID, o.ID, "amount", req.Amount)
	return balanceView(b), nil
}

func (h *Handler) ledger(w http.ResponseWriter, r *http.Request, c caller) {
	o, err := h.org(r, c)
	if err == nil && h.cfg.History == nil {
		err = errLedgerNotKept
	}
	before, limit := int64(0), 50
	if err == nil {
		before, err = intParam(r, "before", 0, 0, math.MaxInt64, "an entry id (a whole number ≥ 0)")
	}
	if err == nil {
		var n int64
		n, err = intParam(r, "limit", 50, 1, maxLedgerPage, "1 to 200")
		limit = int(n)
	}
	if err != nil {
		h.errors.WriteError(w, r, err)
		return
	}
	entries, err := h.cfg.History.EntriesBefore(r.Context(), o.ID, before, limit)
	if err != nil {
		h.errors.WriteError(w, r, keyward.ServiceUnavailable("credit ledger", err))
		return
	}
	out := struct {
		Entries    []entryJSON `json:"entries"`
		NextBefore *int64      `json:"nextBefore"`
	}{Entries: make([]entryJSON, 0, len(entries))}
	for _, e := range entries {
		out.Entries = append(out.Entries, entryView(e))
	}
	if len(entries) == limit {
		next := entries[len(entries)-1].ID
		out.NextBefore = &next
	}
	h.errors.WriteData(w, r, http.StatusOK, out)
}

// intParam reads query parameter name: def when absent, else a whole
// number in lo…hi.
func intParam(r *http.Request, name string, def, lo, hi int64, want string) (int64, error) {
	vs, ok := r.URL.Query()[name]
	if !ok {
		return def, nil
	}
	if len(vs) != 1 {
		return 0, badParameter(name, want)
	}
	n, err := strconv.ParseInt(vs[0], 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, badParameter(name, want)
	}
	return n, nil
}

func (h *Handler) orgUsage(w http.ResponseWriter, r *http.Request, c caller) {
	o, err := h.org(r, c)
	if err != nil {
		h.errors.WriteError(w, r, err)
		return
	}
	h.usage(w, r, o.ID, "")
}

func (h *Handler) keyUsage(w http.ResponseWriter, r *http.Request, c caller) {
	o, k, err := h.key(r, c)
	if err != nil {
		h.errors.WriteError(w, r, err)
		return
	}
	h.usage(w, r, o.ID, k.Record.ID)
}

func (h *Handler) usage(w http.ResponseWriter, r *http.Request, orgID, keyID string) {
	days, err := intParam(r, "days", 30, 1, maxUsageDays, "1 to 366")
	if err == nil && h.cfg.Usage == nil {
		err = errUsageNotKept
	}
	if err != nil {
		h.errors.WriteError(w, r, err)
		return
	}
	series, err := h.series(r, orgID, keyID, int(days))
	if err != nil {
		h.errors.WriteError(w, r, keyward.ServiceUnavailable("usage store", err))
		return
	}
	out := make([]dayJSON, 0, len(series))
	for _, d := range series {
		out = append(out, dayView(d))
	}
	h.errors.WriteData(w, r, http.StatusOK, map[string]any{"days": out})
}

// series is the usage of the last days days, today included.
func (h *Handler) series(r *http.Request, orgID, keyID string, days int) ([]usage.Day, error) {
	to := h.cfg.Now()
	return h.cfg.Usage.UsageByDay(r.Context(), orgID, keyID, to.AddDate(0, 0, 1-days), to)
}

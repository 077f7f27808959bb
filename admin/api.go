package admin

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/internal/ascii"
	"github.com/keyward/keyward/internal/perm"
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
	out := make([]orgJSON, 0, len(orgs))
	for _, o := range orgs {
		out = append(out, orgView(o))
	}
	h.writeOK(w, r, http.StatusOK, out)
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
	h.writeOK(w, r, http.StatusCreated, orgView(o))
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
	h.writeOK(w, r, http.StatusOK, orgView(o))
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
	h.writeOK(w, r, http.StatusOK, orgView(o))
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

func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request, c caller) {
	o, err := h.org(r, c)
	var page keyPage
	if err == nil {
		page, err = h.keyPage(r, o.ID, manage.DefaultKeyPage)
	}
	if err != nil {
		h.errors.WriteError(w, r, err)
		return
	}
	now := h.cfg.Now()
	out := struct {
		Keys      []keyJSON `json:"keys"`
		NextAfter *string   `json:"nextAfter"`
	}{Keys: make([]keyJSON, 0, len(page.keys))}
	for _, k := range page.keys {
		out.Keys = append(out.Keys, keyView(k, now))
	}
	if page.next != "" {
		out.NextAfter = &page.next
	}
	h.writeOK(w, r, http.StatusOK, out)
}

// keyPage is a page of an organization's keys, and the id to continue
// after ("" on the last page).
type keyPage struct {
	keys []keyward.KeyRecord
	next string
}

func (h *Handler) keyPage(r *http.Request, orgID string, defLimit int64) (keyPage, error) {
	keys, next, err := listKeys(r, h.cfg.Keys, orgID, defLimit)
	return keyPage{keys, next}, err
}

// ListKeys answers a listing of organization orgID's keys as the admin
// API does, by r's query: limit (1 to manage.MaxKeyPage; absent:
// manage.DefaultKeyPage), after (the nextAfter of the page before),
// search (manage.KeyQuery.Search: a name's part, an id's or a hint's
// beginning) and status (statuses separated by commas, of active,
// rotating, expired and revoked, or all; absent: every key but the
// revoked ones). It returns the page, newest first, and the id the next
// page starts after ("" on the last page), or a *keyward.Error to write:
// 400 invalid_parameter naming a bad parameter, or the store's failure.
// A host's own route listing keys (as `keyward demo`'s /v1/usage) pages
// them with it.
func ListKeys(r *http.Request, keys manage.KeyManager, orgID string) (page []keyward.KeyRecord, nextAfter string, err error) {
	return listKeys(r, keys, orgID, manage.DefaultKeyPage)
}

// notRevoked are the statuses a listing shows when none is asked for.
var notRevoked = []string{manage.StatusActive, manage.StatusRotating, manage.StatusExpired}

func listKeys(r *http.Request, keys manage.KeyManager, orgID string, defLimit int64) (page []keyward.KeyRecord, nextAfter string, err error) {
	limit, err := intParam(r, "limit", defLimit, 1, manage.MaxKeyPage, "1 to 200")
	if err != nil {
		return nil, "", err
	}
	const afterWant = "the id of a key of this organization (a page's nextAfter)"
	query := r.URL.Query()
	after, ok := query["after"]
	if ok && (len(after) != 1 || !saneID(after[0])) {
		return nil, "", badParameter("after", afterWant)
	}
	q := manage.KeyQuery{Limit: int(limit) + 1, Statuses: notRevoked} // one more: is there a next page?
	if ok {
		q.After = after[0]
	}
	if vs, ok := query["search"]; ok {
		// A whole key pasted in is refused, never echoed or sent to a store.
		if len(vs) != 1 || ascii.LongestAlnumRun(vs[0]) >= 30 {
			return nil, "", badParameter("search", "a key's name, or the beginning of its id or hint (never the key itself)")
		}
		q.Search = strings.TrimSpace(vs[0])
	}
	if vs, ok := query["status"]; ok && !(len(vs) == 1 && vs[0] == "") {
		q.Statuses = nil
		if len(vs) != 1 || vs[0] != "all" {
			for _, v := range vs {
				q.Statuses = append(q.Statuses, strings.Split(v, ",")...)
			}
		}
	}
	if q.Check() != nil {
		return nil, "", badParameter("search and status", "a search of at most 200 characters, and statuses of active, rotating, expired, revoked, or all")
	}
	page, err = keys.ListKeys(r.Context(), orgID, q)
	if errors.Is(err, keyward.ErrKeyNotFound) {
		return nil, "", badParameter("after", afterWant)
	}
	if err != nil {
		return nil, "", failureOf(err)
	}
	if len(page) > int(limit) {
		page = page[:limit]
		nextAfter = page[len(page)-1].ID
	}
	return page, nextAfter, nil
}

// keyRequest is the body of POST /orgs/{org}/keys and PATCH …/keys/{key}.
type keyRequest struct {
	Name             *string   `json:"name"`
	Environment      *string   `json:"environment"`
	Permissions      *[]string `json:"permissions"`
	ExpiresInSeconds *int64    `json:"expiresInSeconds"`
	RatePerMinute    *int64    `json:"ratePerMinute"`
}

// seconds is n seconds as a duration, saturated at the int64 bounds so
// that the range checks see a huge count as too long, not wrapped.
func seconds(n int64) time.Duration {
	const most = math.MaxInt64 / int64(time.Second)
	switch {
	case n > most:
		return math.MaxInt64
	case n < -most:
		return math.MinInt64
	}
	return time.Duration(n) * time.Second
}

func (h *Handler) createKey(w http.ResponseWriter, r *http.Request, c caller) {
	o, err := h.org(r, c)
	var req keyRequest
	if err == nil {
		err = h.readJSON(w, r, &req)
	}
	if err != nil {
		h.errors.WriteError(w, r, err)
		return
	}
	spec := manage.KeySpec{OrgID: o.ID}
	if req.Name != nil {
		spec.Name = *req.Name
	}
	if req.Environment != nil {
		spec.Environment = keyward.Environment(*req.Environment)
	}
	if req.Permissions != nil {
		spec.Permissions = *req.Permissions
	}
	if req.ExpiresInSeconds != nil {
		spec.ExpiresIn = seconds(*req.ExpiresInSeconds)
	}
	if req.RatePerMinute != nil {
		spec.RatePerMinute = *req.RatePerMinute
	}
	ck, err := h.createKeyFrom(r, c, spec)
	if err != nil {
		h.errors.WriteError(w, r, err)
		return
	}
	v := keyView(ck.Record, h.cfg.Now())
	v.Key = ck.Key
	h.writeOK(w, r, http.StatusCreated, v)
}

// createKeyFrom checks spec by manage's rules and what c may give, and
// creates the key.
func (h *Handler) createKeyFrom(r *http.Request, c caller, spec manage.KeySpec) (manage.CreatedKey, error) {
	err := spec.Check()
	if err == nil {
		err = h.offered(c, spec.Permissions)
	}
	if err != nil {
		return manage.CreatedKey{}, invalid(err)
	}
	ck, err := h.cfg.Keys.CreateKey(r.Context(), spec)
	if err != nil {
		return ck, failureOf(err)
	}
	h.audit(r, c, "key created", spec.OrgID, ck.Record.ID, "hint", ck.Record.Hint)
	return ck, nil
}

// offered returns an error naming the permissions of perms, well formed
// (KeySpec.Check), that a self-service caller may not give a key: those
// that no permission of Config.Permissions covers (by the rule keys are
// judged by, so an offered wildcard covers its expansions). An operator
// may give any.
func (h *Handler) offered(c caller, perms []string) error {
	if c.operator {
		return nil
	}
	missing := perm.Missing(h.cfg.Permissions, perms)
	if len(missing) == 0 {
		return nil
	}
	quoted := make([]string, len(missing))
	for i, p := range missing {
		quoted[i] = strconv.Quote(p)
	}
	return fmt.Errorf("keyward: permissions not offered here: %s", strings.Join(quoted, ", "))
}

func (h *Handler) getKey(w http.ResponseWriter, r *http.Request, c caller) {
	_, k, err := h.key(r, c)
	if err != nil {
		h.errors.WriteError(w, r, err)
		return
	}
	v := keyView(k.Record, h.cfg.Now())
	v.Predecessor, v.Successor = k.Predecessor, k.Successor
	h.writeOK(w, r, http.StatusOK, v)
}

func (h *Handler) updateKey(w http.ResponseWriter, r *http.Request, c caller) {
	_, k, err := h.key(r, c)
	var req keyRequest
	if err == nil {
		err = h.readJSON(w, r, &req)
	}
	if err == nil && (req.Environment != nil || req.RatePerMinute != nil) {
		err = invalid(errors.New("a key's environment and rate are fixed: create a new key to change them"))
	}
	if err != nil {
		h.errors.WriteError(w, r, err)
		return
	}
	change := manage.KeyChange{Name: req.Name, Permissions: req.Permissions}
	if req.ExpiresInSeconds != nil {
		d := seconds(*req.ExpiresInSeconds)
		change.ExpiresIn = &d
	}
	rec, err := h.updateKeyFrom(r, c, k.Record.ID, change)
	if err != nil {
		h.errors.WriteError(w, r, err)
		return
	}
	h.writeOK(w, r, http.StatusOK, keyView(rec, h.cfg.Now()))
}

// updateKeyFrom checks change by manage's rules and what c may give, and
// changes the key.
func (h *Handler) updateKeyFrom(r *http.Request, c caller, keyID string, change manage.KeyChange) (keyward.KeyRecord, error) {
	err := change.Check()
	if err == nil && change.Permissions != nil {
		err = h.offered(c, *change.Permissions)
	}
	if err != nil {
		return keyward.KeyRecord{}, invalid(err)
	}
	rec, err := h.cfg.Keys.UpdateKey(r.Context(), keyID, change)
	if err != nil {
		return rec, failureOf(err)
	}
	h.audit(r, c, "key updated", rec.Org.ID, rec.ID)
	return rec, nil
}

type rotateRequest struct {
	GraceSeconds int64 `json:"graceSeconds"`
}

func (h *Handler) rotateKey(w http.ResponseWriter, r *http.Request, c caller) {
	_, k, err := h.key(r, c)
	var req rotateRequest
	if err == nil {
		err = h.readJSON(w, r, &req)
	}
	var ck manage.CreatedKey
	if err == nil {
		ck, err = h.rotate(r, c, k.Record.ID, seconds(req.GraceSeconds))
	}
	if err != nil {
		h.errors.WriteError(w, r, err)
		return
	}
	v := keyView(ck.Record, h.cfg.Now())
	v.Key, v.Predecessor = ck.Key, k.Record.ID
	h.writeOK(w, r, http.StatusCreated, v)
}

// rotate checks grace by manage's rule and rotates the key.
func (h *Handler) rotate(r *http.Request, c caller, keyID string, grace time.Duration) (manage.CreatedKey, error) {
	if err := manage.CheckRotationGrace(grace); err != nil {
		return manage.CreatedKey{}, invalid(err)
	}
	ck, err := h.cfg.Keys.RotateKey(r.Context(), keyID, grace)
	if err != nil {
		return ck, failureOf(err)
	}
	h.audit(r, c, "key rotated", ck.Record.Org.ID, keyID, "successor", ck.Record.ID, "grace", grace.String())
	return ck, nil
}

func (h *Handler) revokeKey(w http.ResponseWriter, r *http.Request, c caller) {
	_, k, err := h.key(r, c)
	var req struct{}
	if err == nil {
		err = h.readJSON(w, r, &req)
	}
	if err == nil {
		err = h.revoke(r, c, k.Record)
	}
	if err != nil {
		h.errors.WriteError(w, r, err)
		return
	}
	k, err = h.cfg.Keys.Key(r.Context(), k.Record.Org.ID, k.Record.ID)
	if err != nil {
		h.errors.WriteError(w, r, failureOf(err))
		return
	}
	h.writeOK(w, r, http.StatusOK, keyView(k.Record, h.cfg.Now()))
}

func (h *Handler) revoke(r *http.Request, c caller, k keyward.KeyRecord) error {
	if err := h.cfg.Keys.RevokeKey(r.Context(), k.ID); err != nil {
		return failureOf(err)
	}
	h.audit(r, c, "key revoked", k.Org.ID, k.ID)
	return nil
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
	h.writeOK(w, r, http.StatusOK, balanceView(b))
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
	h.writeOK(w, r, http.StatusOK, b)
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
	h.writeOK(w, r, http.StatusOK, out)
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
	h.writeOK(w, r, http.StatusOK, map[string]any{"days": out})
}

// series is the usage of the last days days, today included.
func (h *Handler) series(r *http.Request, orgID, keyID string, days int) ([]usage.Day, error) {
	to := h.cfg.Now()
	return h.cfg.Usage.UsageByDay(r.Context(), orgID, keyID, to.AddDate(0, 0, 1-days), to)
}

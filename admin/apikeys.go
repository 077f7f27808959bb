package admin

// The admin API's key routes: listing, creating, reading, changing,
// rotating and revoking an organization's keys.

import (
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
)

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
		Keys      []manage.KeyView `json:"keys"`
		NextAfter *string          `json:"nextAfter"`
	}{Keys: make([]manage.KeyView, 0, len(page.keys))}
	for _, k := range page.keys {
		out.Keys = append(out.Keys, manage.ViewKey(k, now))
	}
	if page.next != "" {
		out.NextAfter = &page.next
	}
	h.errors.WriteData(w, r, http.StatusOK, out)
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
	v := manage.ViewKey(ck.Record, h.cfg.Now())
	v.Key = ck.Key
	h.errors.WriteData(w, r, http.StatusCreated, v)
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
	h.errors.WriteData(w, r, http.StatusOK, manage.ViewKeyInfo(k, h.cfg.Now()))
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
	h.errors.WriteData(w, r, http.StatusOK, manage.ViewKey(rec, h.cfg.Now()))
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
	v := manage.ViewKey(ck.Record, h.cfg.Now())
	v.Key, v.Predecessor = ck.Key, k.Record.ID
	h.errors.WriteData(w, r, http.StatusCreated, v)
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
	h.errors.WriteData(w, r, http.StatusOK, manage.ViewKey(k.Record, h.cfg.Now()))
}

func (h *Handler) revoke(r *http.Request, c caller, k keyward.KeyRecord) error {
	if err := h.cfg.Keys.RevokeKey(r.Context(), k.ID); err != nil {
		return failureOf(err)
	}
	h.audit(r, c, "key revoked", k.Org.ID, k.ID)
	return nil
}

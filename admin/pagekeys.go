package admin

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
)

// This file has the dashboard's key pages: the form that creates a key,
// the page that shows a new key once, a key's own page (its facts,
// rotation chain, usage, and the forms that edit, rotate and revoke it).

// graceOptions are the rotation form's choices: how long the old key
// keeps working, in seconds.
func graceOptions() []option {
	out := []option{{Value: "0", Label: "The old key stops working now"}}
	for _, d := range []time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour} {
		out = append(out, option{Value: strconv.FormatInt(int64(d/time.Second), 10),
			Label: "The old key keeps working for " + humanDuration(d), Selected: d == 24*time.Hour})
	}
	return out
}

// expiryOptions are the expiry choices, in days; keep adds "unchanged"
// (the edit form).
func expiryOptions(keep bool, selected string) []option {
	var out []option
	if keep {
		out = append(out, option{Value: "", Label: "Unchanged"})
	}
	out = append(out, option{Value: "0", Label: "Never"})
	for _, n := range []int{30, 90, 365} {
		out = append(out, option{Value: strconv.Itoa(n), Label: "In " + humanDuration(time.Duration(n)*24*time.Hour)})
	}
	for i := range out {
		out[i].Selected = out[i].Value == selected
	}
	return out
}

// expiryIn reads the form's expiresInDays: a lifetime (empty: none), out
// of range as one that manage's rule refuses with its message.
func expiryIn(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil // none
	}
	days, err := strconv.ParseInt(v, 10, 64)
	switch {
	case err != nil:
		return 0, invalid(errors.New("expiry must be a whole number of days"))
	case days > int64(manage.MaxKeyLifetime/(24*time.Hour)):
		return manage.MaxKeyLifetime + 1, nil
	case days < 0:
		return -1, nil
	}
	return time.Duration(days) * 24 * time.Hour, nil
}

func (h *Handler) newKeyData(w http.ResponseWriter, r *http.Request, c caller, o keyward.Organization) *pageData {
	d := h.data(w, r, c, "Create a key")
	d.Org, d.Expiry = manage.ViewOrg(o), expiryOptions(false, r.PostFormValue("expiresInDays"))
	return d
}

func (h *Handler) newKeyPage(w http.ResponseWriter, r *http.Request, c caller) error {
	o, err := h.org(r, c)
	if err != nil {
		return err
	}
	h.page.render(w, http.StatusOK, "newkey", h.newKeyData(w, r, c, o))
	return nil
}

// pageCreateKey creates a key and sends the browser to the page that
// shows it once: the key waits in the reveal store, never in a URL, and a
// reload of that page creates nothing.
func (h *Handler) pageCreateKey(w http.ResponseWriter, r *http.Request, c caller) error {
	o, err := h.org(r, c)
	if err != nil {
		return err
	}
	f := r.PostForm
	spec := manage.KeySpec{OrgID: o.ID, Name: f.Get("name"), Environment: keyward.Environment(f.Get("environment")),
		Permissions: f["permissions"]}
	var ck manage.CreatedKey
	if spec.ExpiresIn, err = expiryIn(f.Get("expiresInDays")); err == nil {
		ck, err = h.createKeyFrom(r, c, spec)
	}
	if err != nil {
		return h.refused(w, r, "newkey", h.newKeyData(w, r, c, o), err)
	}
	h.toReveal(w, r, c, reveal{orgID: o.ID, keyID: ck.Record.ID, key: ck.Key}, "key-created")
	return nil
}

// toReveal keeps rv for the reveal page of its key and sends the browser
// there.
func (h *Handler) toReveal(w http.ResponseWriter, r *http.Request, c caller, rv reveal, flash string) {
	rv.bind = c.csrfBind
	id := h.sessions.keep(rv)
	h.setCookie(w, r, revealCookie, id, int(revealTTL/time.Second))
	h.done(w, r, "orgs/"+rv.orgID+"/keys/"+rv.keyID+"/reveal", flash)
}

// revealPage shows a new key once: the reveal store gives it up as it is
// shown; a reload says it was shown already.
func (h *Handler) revealPage(w http.ResponseWriter, r *http.Request, c caller) error {
	o, k, err := h.key(r, c)
	if err != nil {
		return err
	}
	d := h.data(w, r, c, "Your new key")
	d.Org, d.NewKey = manage.ViewOrg(o), manage.ViewKey(k.Record, h.cfg.Now())
	d.NewKey.Predecessor = k.Predecessor
	id, _ := h.readCookie(r, revealCookie)
	rv, ok := h.sessions.take(id, c.csrfBind, k.Record.ID)
	if ok {
		h.setCookie(w, r, revealCookie, "", -1)
		d.NewKey.Key = rv.key
		d.Grace = rv.grace
	} else {
		d.Shown, d.Title = true, "Key already shown"
	}
	h.page.render(w, http.StatusOK, "reveal", d)
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
	rv := reveal{orgID: o.ID, keyID: ck.Record.ID, key: ck.Key, grace: "the old key stopped working now"}
	if grace > 0 {
		rv.grace = "the old key keeps working for " + humanDuration(grace)
	}
	h.toReveal(w, r, c, rv, "key-rotated")
	return nil
}

// keyData is what key k's page shows.
func (h *Handler) keyData(w http.ResponseWriter, r *http.Request, c caller, o keyward.Organization, k manage.KeyInfo) (*pageData, error) {
	d := h.data(w, r, c, k.Record.Name)
	d.Org, d.Key = manage.ViewOrg(o), manage.ViewKey(k.Record, h.cfg.Now())
	d.Key.Predecessor, d.Key.Successor = k.Predecessor, k.Successor
	// The edit form offers the offered permissions and those the key has.
	perms := slices.Clone(h.cfg.Permissions)
	for _, p := range k.Record.Permissions {
		if !slices.Contains(perms, p) {
			perms = append(perms, p)
		}
	}
	d.Permissions, d.Graces, d.Expiry = perms, graceOptions(), expiryOptions(true, r.PostFormValue("expiresInDays"))
	var err error
	d.Usage, err = h.usageView(r, o.ID, k.Record.ID)
	return d, err
}

func (h *Handler) keyDetail(w http.ResponseWriter, r *http.Request, c caller) error {
	o, k, err := h.key(r, c)
	if err != nil {
		return err
	}
	d, err := h.keyData(w, r, c, o, k)
	if err != nil {
		return err
	}
	h.page.render(w, http.StatusOK, "key", d)
	return nil
}

// pageUpdateKey changes a key's name, permissions and expiry; the
// permissions are changed only if the form's differ from the key's, so
// that a customer renaming a key an operator gave more than is offered
// is not refused.
func (h *Handler) pageUpdateKey(w http.ResponseWriter, r *http.Request, c caller) error {
	o, k, err := h.key(r, c)
	if err != nil {
		return err
	}
	f := r.PostForm
	name := f.Get("name")
	change := manage.KeyChange{Name: &name}
	if perms := f["permissions"]; !sameSet(perms, k.Record.Permissions) {
		if perms == nil {
			perms = []string{}
		}
		change.Permissions = &perms
	}
	if v := f.Get("expiresInDays"); v != "" {
		d, ferr := expiryIn(v)
		change.ExpiresIn, err = &d, ferr
	}
	if err == nil {
		_, err = h.updateKeyFrom(r, c, k.Record.ID, change)
	}
	if err != nil {
		d, derr := h.keyData(w, r, c, o, k)
		if derr != nil {
			return derr
		}
		return h.refused(w, r, "key", d, err)
	}
	h.done(w, r, "orgs/"+o.ID+"/keys/"+k.Record.ID, "key-updated")
	return nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func (h *Handler) revokePage(w http.ResponseWriter, r *http.Request, c caller) error {
	o, k, err := h.key(r, c)
	if err != nil {
		return err
	}
	d := h.data(w, r, c, "Revoke key")
	d.Org, d.Key = manage.ViewOrg(o), manage.ViewKey(k.Record, h.cfg.Now())
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
	h.done(w, r, "orgs/"+o.ID, "key-revoked")
	return nil
}

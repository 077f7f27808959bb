package admin

import (
	"cmp"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/keyward/keyward"
	"github.com/keyward/keyward/manage"
)

// This file has the dashboard's organization pages: the operator's list
// and the form that creates one, an organization's page with its usage,
// keys, settings and credits.

// planOption is a plan of the create and change forms.
type planOption struct {
	Name     string
	Custom   bool // the plan has no rates of its own: the form asks for them
	Selected bool
}

// planOptions lists the plan table cheapest first (by credits, then
// rate), the custom plans last, with selected (or "free") selected.
func planOptions(plans *keyward.Plans, selected string) []planOption {
	all := plans.All()
	custom := func(p keyward.Plan) bool { return p.Limits.RequestsPerMinute == 0 }
	slices.SortStableFunc(all, func(a, b keyward.Plan) int {
		if c := cmp.Compare(boolInt(custom(a)), boolInt(custom(b))); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Limits.MonthlyCredits, b.Limits.MonthlyCredits); c != 0 {
			return c
		}
		return cmp.Compare(a.Limits.RequestsPerMinute, b.Limits.RequestsPerMinute)
	})
	if selected == "" {
		selected = "free"
	}
	out := make([]planOption, 0, len(all))
	for _, p := range all {
		out = append(out, planOption{Name: p.Name, Custom: custom(p), Selected: p.Name == selected})
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (h *Handler) home(w http.ResponseWriter, r *http.Request, c caller) error {
	if !c.operator {
		h.seeOther(w, r, "orgs/"+c.orgID)
		return nil
	}
	d, err := h.orgsData(w, r, c)
	if err != nil {
		return err
	}
	h.page.render(w, http.StatusOK, "orgs", d)
	return nil
}

func (h *Handler) orgsData(w http.ResponseWriter, r *http.Request, c caller) (*pageData, error) {
	orgs, err := h.cfg.Keys.ListOrgs(r.Context())
	if err != nil {
		return nil, failureOf(err)
	}
	d := h.data(w, r, c, "Organizations")
	for _, o := range orgs {
		d.Orgs = append(d.Orgs, orgRow{Org: manage.ViewOrg(o), Limits: limitFields(o.Limits)})
	}
	for _, f := range limitFields(keyward.Limits{}) {
		d.LimitLabels = append(d.LimitLabels, f.Label)
	}
	d.Plans = planOptions(h.cfg.Plans(), r.PostFormValue("plan"))
	return d, nil
}

// orgForm reads the organization form's fields: name, plan, the limits
// (empty: the plan's) and overage.
func orgForm(r *http.Request) (orgRequest, error) {
	f := r.PostForm
	req := orgRequest{}
	if _, ok := f["name"]; ok {
		name := f.Get("name")
		req.Name = &name
	}
	plan := f.Get("plan")
	req.Plan = &plan
	overage := f.Get("allowOverage") == "true"
	req.AllowOverage = &overage
	var problems []string
	for _, l := range []struct {
		field, label string
		dst          **int64
	}{{"ratePerMinute", "requests per minute", &req.RatePerMinute}, {"ratePerSecond", "requests per second", &req.RatePerSecond},
		{"burst", "burst", &req.Burst},
		{"concurrency", "requests at once", &req.Concurrency}, {"monthlyCredits", "credits per month", &req.MonthlyCredits}} {
		v := strings.TrimSpace(f.Get(l.field))
		if v == "" {
			zero := int64(0) // the plan's
			*l.dst = &zero
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			problems = append(problems, l.label+" must be a whole number, 0 or more")
			continue
		}
		*l.dst = &n
	}
	if len(problems) > 0 {
		return req, invalid(errors.New(strings.Join(problems, "\n")))
	}
	return req, nil
}

func (h *Handler) pageCreateOrg(w http.ResponseWriter, r *http.Request, c caller) error {
	if !c.operator {
		return errOperatorOnly
	}
	req, err := orgForm(r)
	var o keyward.Organization
	if err == nil {
		o, err = h.createOrgFrom(r, c, req)
	}
	if err != nil {
		d, derr := h.orgsData(w, r, c)
		if derr != nil {
			return derr
		}
		return h.refused(w, r, "orgs", d, err)
	}
	h.done(w, r, "orgs/"+o.ID, "org-created")
	return nil
}

func (h *Handler) orgPage(w http.ResponseWriter, r *http.Request, c caller) error {
	o, err := h.org(r, c)
	if err != nil {
		return err
	}
	d, err := h.orgData(w, r, c, o)
	if err != nil {
		return err
	}
	h.page.render(w, http.StatusOK, "org", d)
	return nil
}

// orgData is what organization o's page shows: its plan, limits and
// credits, its usage in the range asked, a page of its keys by the
// search and status asked, and for operators its settings and ledger.
func (h *Handler) orgData(w http.ResponseWriter, r *http.Request, c caller, o keyward.Organization) (*pageData, error) {
	b, err := h.cfg.Ledger.Balance(r.Context(), o.Account())
	if err != nil {
		return nil, keyward.ServiceUnavailable("credit ledger", err)
	}
	q := r.URL.Query()
	status := q.Get("status")
	keys, err := h.keyPage(r, o.ID, keyPageSize)
	if err != nil {
		return nil, err
	}
	d := h.data(w, r, c, o.Name)
	d.NextAfter, d.Paged, d.Search, d.Status = keys.next, q.Get("after") != "", q.Get("search"), status
	for _, s := range statusOptions {
		d.Statuses = append(d.Statuses, option{Value: s.Value, Label: s.Label, Selected: s.Value == status})
	}
	d.Org, d.Limits, d.Balance = manage.ViewOrg(o), limitFields(o.Limits), balanceView(b)
	d.CreditsTotal = b.Allocation + b.Granted
	d.CreditsUsed = min(max(b.Spent+b.Reserved, 0), d.CreditsTotal)
	now := h.cfg.Now()
	for _, k := range keys.keys {
		d.Keys = append(d.Keys, manage.ViewKey(k, now))
	}
	if d.Usage, err = h.usageView(r, o.ID, ""); err != nil {
		return nil, err
	}
	if c.operator {
		d.Plans = planOptions(h.cfg.Plans(), o.Plan)
		if h.cfg.History != nil {
			entries, err := h.cfg.History.EntriesBefore(r.Context(), o.ID, 0, 10)
			if err != nil {
				return nil, keyward.ServiceUnavailable("credit ledger", err)
			}
			for _, e := range entries {
				d.Entries = append(d.Entries, entryView(e))
			}
		}
	}
	return d, nil
}

// statusOptions are the key list's status filter: its API values.
var statusOptions = []option{
	{Value: "", Label: "Not revoked"}, {Value: "active", Label: "Active"}, {Value: "rotating", Label: "Rotating"},
	{Value: "expired", Label: "Expired"}, {Value: "revoked", Label: "Revoked"}, {Value: "all", Label: "All"},
}

func (h *Handler) pageUpdateOrg(w http.ResponseWriter, r *http.Request, c caller) error {
	o, err := h.org(r, c)
	if err != nil {
		return err
	}
	if !c.operator {
		return errOperatorOnly
	}
	req, err := orgForm(r)
	if err == nil {
		_, err = h.updateOrgFrom(r, c, o, req)
	}
	if err != nil {
		d, derr := h.orgData(w, r, c, o)
		if derr != nil {
			return derr
		}
		d.Plans = planOptions(h.cfg.Plans(), r.PostFormValue("plan")) // as typed, as the other fields
		return h.refused(w, r, "org", d, err)
	}
	h.done(w, r, "orgs/"+o.ID, "org-updated")
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
		err = invalid(errors.New("amount must be a whole number of credits"))
	} else {
		_, err = h.grantTo(r, c, o, grantRequest{Amount: amount, Note: r.PostForm.Get("note")})
	}
	if err != nil {
		d, derr := h.orgData(w, r, c, o)
		if derr != nil {
			return derr
		}
		d.Plans = planOptions(h.cfg.Plans(), r.PostFormValue("plan")) // as typed, as the other fields
		return h.refused(w, r, "org", d, err)
	}
	h.done(w, r, "orgs/"+o.ID, "granted")
	return nil
}

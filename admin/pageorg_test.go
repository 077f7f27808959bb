package admin_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// besideField matches a form field marked invalid (by its id) and the
// problem said right after it.
func besideField(id string) *regexp.Regexp {
	return regexp.MustCompile(`<input id="` + id + `"[^>]* aria-invalid="true">\s*<span class="field-error" role="alert">[^<]+</span>`)
}

// A refused organization form (to create one or to change one) comes back
// as a 422 with each problem beside its field and what was typed kept,
// and changes nothing.
func TestRefusedOrgFormsKeepWhatWasTyped(t *testing.T) {
	t.Parallel()
	e := operatorEnv(t)
	b := e.browser()
	b.signIn()
	home := b.do("GET", "/dashboard/", nil)
	require.Equal(t, http.StatusOK, home.status)
	before := e.snapshot()

	// No name: beside the name; the plan, a limit and overage as typed.
	p := b.do("POST", "/dashboard/orgs", url.Values{"csrf": {home.csrf(t)}, "name": {""}, "plan": {"starter"},
		"ratePerSecond": {"7"}, "allowOverage": {"true"}})
	require.Equal(t, http.StatusUnprocessableEntity, p.status, p.body)
	assert.Regexp(t, besideField("org-name"), p.body)
	assert.Contains(t, p.body, `<option value="starter" selected>`)
	assert.Contains(t, p.body, `id="rate-second" name="ratePerSecond" type="number" min="0" inputmode="numeric" value="7"`)
	assert.Regexp(t, `name="allowOverage" value="true" checked`, p.body)

	// A custom plan without its rate: beside the requests per minute, the
	// limits opened to show it; the name kept.
	p = b.do("POST", "/dashboard/orgs", url.Values{"csrf": {home.csrf(t)}, "name": {"Initech"}, "plan": {"enterprise"}})
	require.Equal(t, http.StatusUnprocessableEntity, p.status, p.body)
	assert.Regexp(t, besideField("rate-minute"), p.body)
	assert.Contains(t, p.body, `<details id="limits" open>`)
	assert.Contains(t, p.body, `id="org-name" name="name" type="text" required maxlength="200" value="Initech"`)
	assert.Contains(t, p.body, `<option value="enterprise" data-custom="true" selected>`)
	assert.Equal(t, before, e.snapshot(), "nothing created")

	// Changing one: a limit that is not a number, beside its field, as
	// typed; the other fields as typed too.
	org := e.org("acme")
	before = e.snapshot()
	page := b.do("GET", "/dashboard/orgs/"+org.ID, nil)
	require.Equal(t, http.StatusOK, page.status)
	p = b.do("POST", "/dashboard/orgs/"+org.ID, url.Values{"csrf": {page.csrf(t)}, "name": {"Acme Renamed"}, "plan": {"growth"},
		"ratePerSecond": {"fast"}, "monthlyCredits": {"-3"}})
	require.Equal(t, http.StatusUnprocessableEntity, p.status, p.body)
	assert.Regexp(t, besideField("rate-second"), p.body)
	assert.Regexp(t, besideField("monthly-credits"), p.body)
	assert.Contains(t, p.body, `value="fast"`)
	assert.Contains(t, p.body, `value="-3"`)
	assert.Contains(t, p.body, `value="Acme Renamed"`)
	assert.Contains(t, p.body, `<option value="growth" selected>`)
	assert.Contains(t, p.body, `<details id="limits" open>`)
	assert.Equal(t, before, e.snapshot(), "nothing changed")
}

// The organization page changes the plan, the limits (an override each,
// empty: the plan's again) and overage.
func TestOrgPageChangesPlanLimitsAndOverage(t *testing.T) {
	t.Parallel()
	e := operatorEnv(t)
	b := e.browser()
	b.signIn()
	org := e.org("acme")
	path := "/dashboard/orgs/" + org.ID
	page := b.do("GET", path, nil)
	require.Equal(t, http.StatusOK, page.status)
	p := b.do("POST", path, url.Values{"csrf": {page.csrf(t)}, "name": {"acme"}, "plan": {"enterprise"},
		"ratePerMinute": {"6000"}, "ratePerSecond": {"120"}, "burst": {"150"}, "concurrency": {"9"},
		"monthlyCredits": {"50000"}, "allowOverage": {"true"}})
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	got, err := e.store.Org(context.Background(), org.ID)
	require.NoError(t, err)
	assert.Equal(t, "enterprise", got.Plan)
	assert.True(t, got.AllowOverage)
	assert.Equal(t, [5]int64{6000, 120, 150, 9, 50000}, [5]int64{got.Limits.RequestsPerMinute, got.Limits.RequestsPerSecond,
		got.Limits.Burst, got.Limits.Concurrency, got.Limits.MonthlyCredits})
	page = b.do("GET", path, nil)
	assert.Contains(t, page.body, `<dd id="org-plan-name">enterprise</dd>`)
	assert.Contains(t, page.body, `<dt>Overage</dt><dd>allowed</dd>`)
	assert.Contains(t, page.body, `id="rate-minute" name="ratePerMinute" type="number" min="0" inputmode="numeric" value="6000"`)
	assert.Contains(t, page.body, `id="burst" name="burst" type="number" min="0" inputmode="numeric" value="150"`)

	// Back to a plan with rates of its own, its limits, no overage.
	p = b.do("POST", path, url.Values{"csrf": {page.csrf(t)}, "name": {"acme"}, "plan": {"starter"}})
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	got, err = e.store.Org(context.Background(), org.ID)
	require.NoError(t, err)
	assert.Equal(t, "starter", got.Plan)
	assert.False(t, got.AllowOverage)
	starter, err := e.store.Org(context.Background(), e.org("other").ID)
	require.NoError(t, err)
	assert.Equal(t, starter.Limits, got.Limits, "the plan's limits, as another organization of the plan has")
}

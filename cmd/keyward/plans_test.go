package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// planListed is an element of `plans list --json`.
type planListed struct {
	Name          string `json:"name"`
	RatePerMinute int64  `json:"ratePerMinute"`
	Credits       int64  `json:"credits"`
	Orgs          int    `json:"orgs"`
}

// TestPlansAreData: a plan added with `plans set` is one every command
// resolves with: an organization created on it shows its limits (it
// showed 0/min, and `orgs show` and `credits grant` failed).
func TestPlansAreData(t *testing.T) {
	c := newCLI(t)
	var plans []planListed
	c.json(&plans, "plans", "list", "--json")
	assert.Equal(t, []planListed{
		{"business", 1200, 100_000, 0}, {"enterprise", 0, 0, 0}, {"free", 60, 100, 0},
		{"growth", 600, 25_000, 0}, {"starter", 300, 4_000, 0},
	}, plans, "a new database has the default plans")

	out, errs, code := c.run("plans", "set", "pro", "--rate", "900/min", "--credits", "50000")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "added plan pro: 15/s (burst 15), 900/min, 15 in flight, 50000 credits/month")

	org := c.org("--name", "acme", "--plan", "pro")
	var o orgShown
	c.json(&o, "orgs", "show", org, "--json")
	assert.Equal(t, orgShown{ID: org, Name: "acme", Plan: "pro", RatePerMinute: 900, Credits: 50_000}, o)
	var listed []orgShown
	c.json(&listed, "orgs", "list", "--json")
	require.Len(t, listed, 1)
	assert.Equal(t, int64(900), listed[0].RatePerMinute)
	c.json(&o, "credits", "grant", org, "5", "--json")
	assert.Equal(t, int64(900), o.RatePerMinute)

	// A change of the plan changes its organizations' limits; flags not
	// given stay.
	var set planListed
	c.json(&set, "plans", "set", "pro", "--rate", "1000", "--json")
	assert.Equal(t, planListed{Name: "pro", RatePerMinute: 1000, Credits: 50_000}, set)
	c.json(&o, "orgs", "show", org, "--json")
	assert.Equal(t, int64(1000), o.RatePerMinute)
	assert.Equal(t, int64(50_000), o.Credits)

	other := c.org("--name", "beta")
	c.json(&o, "orgs", "update", other, "--plan", "pro", "--json")
	assert.Equal(t, int64(1000), o.RatePerMinute)
}

// TestPlansDeleteRefusedInUse: deleting a plan an organization is on
// exits 1 naming the organization, and deletes nothing; mistakes are
// refused.
func TestPlansDeleteRefusedInUse(t *testing.T) {
	c := newCLI(t)
	_, errs, code := c.run("plans", "set", "pro", "--rate", "900", "--credits", "10")
	require.Equal(t, 0, code, errs)
	org := c.org("--name", "acme", "--plan", "pro")

	_, errs, code = c.run("plans", "delete", "pro")
	assert.Equal(t, 1, code, errs)
	assert.Contains(t, errs, `plan "pro" is in use by 1 organization(s)`)
	assert.Contains(t, errs, org)
	var o orgShown
	c.json(&o, "orgs", "show", org, "--json")
	assert.Equal(t, int64(900), o.RatePerMinute, "still there")

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"plans", "set", "team"}, 2, "give its --rate"},
		{[]string{"plans", "set", "team", "--rate", "fast"}, 2, "--rate"},
		{[]string{"plans", "set", "team", "--rate", "10", "--credits", "-1"}, 2, "--credits"},
		{[]string{"plans", "set", "pro", "--rate", "custom"}, 1, "give the organization a rate (orgs create/update --rate)"},
		{[]string{"plans", "delete", "platinum"}, 1, `plan "platinum" not found`},
		{[]string{"plans", "delete"}, 2, "arg"},
	} {
		_, errs, code := c.run(tc.args...)
		assert.Equal(t, tc.code, code, "keyward %v: %s", tc.args, errs)
		assert.Contains(t, errs, tc.want, "keyward %v", tc.args)
	}

	c.json(&o, "orgs", "update", org, "--plan", "free", "--json")
	out, errs, code := c.run("plans", "delete", "pro")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "deleted plan pro")
	_, errs, code = c.run("orgs", "create", "--name", "late", "--plan", "pro")
	assert.Equal(t, 2, code)
	assert.Contains(t, errs, `unknown plan "pro"`)
}

// TestBurstFlags: the burst is a limit of its own, set on a plan (plans
// set --burst) and overridden by an organization (orgs create and update
// --burst); left alone it is the larger of the per-second rate and the
// in-flight cap (free: 2).
func TestBurstFlags(t *testing.T) {
	c := newCLI(t)
	type limits struct {
		RatePerSecond int64 `json:"ratePerSecond"`
		Burst         int64 `json:"burst"`
		Concurrency   int64 `json:"concurrency"`
	}
	var o orgRates
	free := c.org("--name", "free")
	c.json(&o, "orgs", "show", free, "--json")
	assert.Equal(t, limits{1, 2, 2}, limits{o.RatePerSecond, o.Burst, o.Concurrency}, "the free plan's burst is its in-flight cap")
	out, errs, code := c.run("orgs", "show", free)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "1/s (burst 2), 60/min, 2 in flight")

	bursty := c.org("--name", "bursty", "--burst", "5")
	c.json(&o, "orgs", "show", bursty, "--json")
	assert.Equal(t, limits{1, 5, 2}, limits{o.RatePerSecond, o.Burst, o.Concurrency}, "an override, the rate unchanged")
	c.json(&o, "orgs", "update", bursty, "--burst", "3", "--json")
	assert.Equal(t, limits{1, 3, 2}, limits{o.RatePerSecond, o.Burst, o.Concurrency})
	c.json(&o, "orgs", "update", bursty, "--burst", "0", "--json")
	assert.Equal(t, limits{1, 2, 2}, limits{o.RatePerSecond, o.Burst, o.Concurrency}, "0: the plan's again")

	var plan limits
	c.json(&plan, "plans", "set", "steady", "--rate", "600/min", "--burst", "1", "--json")
	assert.Equal(t, limits{0, 1, 0}, plan, "a plan keeps what is given; the rest is derived")
	steady := c.org("--name", "steady", "--plan", "steady")
	c.json(&o, "orgs", "show", steady, "--json")
	assert.Equal(t, limits{10, 1, 10}, limits{o.RatePerSecond, o.Burst, o.Concurrency})

	_, errs, code = c.run("orgs", "create", "--name", "x", "--burst", "-1")
	assert.Equal(t, 2, code, errs)
	assert.Contains(t, errs, "burst -1 is out of range")
}

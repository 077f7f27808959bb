package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/manage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// orgShown is `orgs show --json`, its effective limits (its view's
// limits member) read into flat fields.
type orgShown struct {
	ID                                string
	Name                              string
	Plan                              string
	RatePerMinute                     int64
	Credits                           int64
	AllowOverage                      bool
	RatePerSecond, Burst, Concurrency int64 `json:"-"`
}

func (o *orgShown) UnmarshalJSON(b []byte) error {
	var v manage.OrgView
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*o = orgShown{ID: v.ID, Name: v.Name, Plan: v.Plan, RatePerMinute: v.Limits.RequestsPerMinute,
		Credits: v.Limits.MonthlyCredits, AllowOverage: v.AllowOverage}
	return nil
}

// orgRates are an organization's effective per-second rate, burst and
// in-flight cap, as `orgs show --json` prints them.
type orgRates struct{ RatePerSecond, Burst, Concurrency int64 }

func (o *orgRates) UnmarshalJSON(b []byte) error {
	var v manage.OrgView
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*o = orgRates{v.Limits.RequestsPerSecond, v.Limits.Burst, v.Limits.Concurrency}
	return nil
}

// keyShown is `keys show --json`.
type keyShown struct {
	ID            string     `json:"id"`
	Key           string     `json:"key"`
	Name          string     `json:"name"`
	Hint          string     `json:"hint"`
	Permissions   []string   `json:"permissions"`
	Status        string     `json:"status"`
	CreatedAt     time.Time  `json:"createdAt"`
	ExpiresAt     *time.Time `json:"expiresAt"`
	RatePerMinute int64      `json:"ratePerMinute"`
	GraceEndsAt   *time.Time `json:"graceEndsAt"`
	Predecessor   string     `json:"predecessor"`
	Successor     string     `json:"successor"`
}

// TestOrgsUpdate: the flags given change, the others stay; mistakes are
// usage errors that change nothing.
func TestOrgsUpdate(t *testing.T) {
	c := newCLI(t)
	org := c.org("--name", "acme", "--credits", "500")
	var o orgShown
	c.json(&o, "orgs", "update", org, "--plan", "growth", "--rate", "900/min", "--overage", "--json")
	assert.Equal(t, orgShown{ID: org, Name: "acme", Plan: "growth", RatePerMinute: 900, Credits: 500, AllowOverage: true}, o)
	c.json(&o, "orgs", "update", org, "--name", "acme inc", "--overage=false", "--json")
	assert.Equal(t, "acme inc", o.Name)
	assert.False(t, o.AllowOverage)
	assert.Equal(t, int64(900), o.RatePerMinute, "not given: unchanged")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"orgs", "update", org}, "nothing to change"},
		{[]string{"orgs", "update", org, "--plan", "platinum"}, `unknown plan "platinum"`},
		{[]string{"orgs", "update", org, "--rate", "fast"}, "--rate"},
		{[]string{"orgs", "update", org, "--credits", "-1"}, "--credits"},
	} {
		_, errs, code := c.run(tc.args...)
		assert.Equal(t, 2, code, "keyward %v: %s", tc.args, errs)
		assert.Contains(t, errs, tc.want, "keyward %v", tc.args)
	}
	_, errs, code := c.run("orgs", "update", "org_nope", "--name", "x")
	assert.Equal(t, 1, code, errs)
	assert.Contains(t, errs, "organization org_nope not found in "+c.db)
	c.json(&o, "orgs", "show", org, "--json")
	assert.Equal(t, "growth", o.Plan, "refused updates changed nothing")
}

// TestOrgsDelete: refused while a key works; --force revokes and deletes.
func TestOrgsDelete(t *testing.T) {
	c := newCLI(t)
	org := c.org("--name", "acme")
	k := c.key(org, "--name", "production")
	_, errs, code := c.run("orgs", "delete", org)
	assert.Equal(t, 1, code, errs)
	assert.Contains(t, errs, "keys that still work: 1")
	assert.Contains(t, errs, "--force")
	var o orgShown
	c.json(&o, "orgs", "show", org, "--json")

	out, errs, code := c.run("orgs", "delete", org, "--force")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "deleted organization "+org)
	_, errs, code = c.run("orgs", "show", org)
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "organization "+org+" not found")
	_, errs, _ = c.run("keys", "whois", k.Key)
	assert.Contains(t, errs, "no key "+k.Hint, "the key is gone")

	quiet := c.org("--name", "quiet")
	q := c.key(quiet, "--name", "x")
	_, errs, code = c.run("keys", "revoke", q.ID)
	require.Equal(t, 0, code, errs)
	_, errs, code = c.run("orgs", "delete", quiet)
	assert.Equal(t, 0, code, "no key works: no --force needed: %s", errs)
}

// TestKeysShowUpdateWhois: show tells rate, expiry, grace end and the
// rotation chain; update changes name, permissions and expiry; whois
// finds a key by hint or by the key, never printing the key; a second
// rotation of a key in its grace period is refused.
func TestKeysShowUpdateWhois(t *testing.T) {
	c := newCLI(t)
	org := c.org("--name", "acme")
	k := c.key(org, "--name", "production", "--permissions", "transactions:read", "--rate", "30/min", "--expires", "10d")

	var shown keyShown
	c.json(&shown, "keys", "show", k.ID, "--json")
	assert.Equal(t, int64(30), shown.RatePerMinute)
	require.NotNil(t, shown.ExpiresAt)
	assert.Equal(t, 10*24*time.Hour, shown.ExpiresAt.Sub(shown.CreatedAt))
	assert.Nil(t, shown.GraceEndsAt)
	assert.Empty(t, shown.Predecessor+shown.Successor)
	assert.Empty(t, shown.Key, "show never has the key")

	var r createdKey
	c.json(&r, "keys", "rotate", k.ID, "--grace", "2d", "--json")
	out, errs, code := c.run("keys", "rotate", k.ID)
	assert.Equal(t, 1, code, "rotating a key in its grace period: %s", errs)
	assert.Contains(t, errs, "rotated already into "+r.ID)
	assert.Empty(t, out, "no second key")
	var keys []keyShown
	c.json(&keys, "keys", "list", "--org", org, "--json")
	assert.Len(t, keys, 2, "one successor")

	shown = keyShown{}
	c.json(&shown, "keys", "show", k.ID, "--json")
	assert.Equal(t, "rotating", shown.Status)
	require.NotNil(t, shown.GraceEndsAt)
	assert.WithinDuration(t, time.Now().Add(48*time.Hour), *shown.GraceEndsAt, time.Minute)
	assert.Equal(t, r.ID, shown.Successor)
	shown = keyShown{}
	c.json(&shown, "keys", "show", r.ID, "--json")
	assert.Equal(t, k.ID, shown.Predecessor)
	out, errs, code = c.run("keys", "show", r.ID)
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `predecessor\s+`+k.ID, out)
	assert.Regexp(t, `rate\s+30/min`, out)

	shown = keyShown{} // json leaves fields that are absent alone
	c.json(&shown, "keys", "update", r.ID, "--name", "partner", "--permissions", "transactions:*,categories:read", "--expires", "never", "--json")
	assert.Equal(t, "partner", shown.Name)
	assert.Equal(t, []string{"transactions:*", "categories:read"}, shown.Permissions)
	assert.Nil(t, shown.ExpiresAt)
	c.json(&shown, "keys", "update", r.ID, "--expires", "30d", "--json")
	require.NotNil(t, shown.ExpiresAt)
	assert.WithinDuration(t, time.Now().Add(30*24*time.Hour), *shown.ExpiresAt, time.Minute)
	assert.Equal(t, "partner", shown.Name, "not given: unchanged")
	for _, args := range [][]string{
		{"keys", "update", r.ID},
		{"keys", "update", r.ID, "--name", ""},
		{"keys", "update", r.ID, "--permissions", "bad perm"},
		{"keys", "update", r.ID, "--expires", "36501d"},
	} {
		_, errs, code := c.run(args...)
		assert.Equal(t, 2, code, "keyward %v: %s", args, errs)
	}
	_, errs, code = c.run("keys", "update", "key_nope", "--name", "x")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "key key_nope not found in "+c.db)

	for _, q := range []string{r.Hint, r.Key} {
		out, errs, code := c.run("keys", "whois", q)
		require.Equal(t, 0, code, errs)
		assert.Contains(t, out, r.ID)
		assert.Contains(t, out, "acme")
		assert.NotContains(t, out+errs, r.Key, "the key is never printed")
	}
	cmd := c.cmd("keys", "whois", "-")
	cmd.Stdin = strings.NewReader(r.Key + "\n")
	outb, err := cmd.Output()
	require.NoError(t, err)
	assert.Contains(t, string(outb), r.ID)
	assert.NotContains(t, string(outb), r.Key)
	sample, _, _ := c.run("keys", "sample")
	out, errs, code = c.run("keys", "whois", strings.TrimSpace(sample))
	assert.Equal(t, 1, code)
	assert.NotContains(t, out+errs, strings.TrimSpace(sample), "an unknown key is not printed either")
	assert.Contains(t, errs, "no key triq_")
}

// A key, live or test, is never printed whole by a message: whois finds a
// test key by the key itself, and a key given where an id is expected is
// shown as its hint.
func TestKeysAreNeverEchoed(t *testing.T) {
	c := newCLI(t)
	org := c.org("--name", "acme")
	test := c.key(org, "--name", "ci", "--env", "test")
	require.True(t, strings.HasPrefix(test.Key, "triq_test_"), test.Key)
	out, errs, code := c.run("keys", "whois", test.Key)
	assert.Equal(t, 0, code, errs)
	assert.Contains(t, out, test.ID)
	live := c.key(org, "--name", "prod")
	gone := live.Key[:len(live.Key)-1] + map[bool]string{true: "y", false: "x"}[strings.HasSuffix(live.Key, "x")]
	for _, argv := range [][]string{
		{"keys", "whois", gone}, {"keys", "show", live.Key}, {"keys", "revoke", test.Key},
		{"orgs", "show", live.Key}, {"credits", "grant", live.Key, "5"},
	} {
		out, errs, code := c.run(argv...)
		assert.NotEqual(t, 0, code, "%v", argv)
		for _, k := range []string{live.Key, test.Key, gone} {
			assert.NotContains(t, out+errs, k, "%v printed a key", argv)
		}
	}
}

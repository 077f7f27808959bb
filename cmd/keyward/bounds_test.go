package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDurationAndRateFlagsAreBounded: the values of the overflow report
// (a lifetime that wrapped into the year 1734, a grace that revoked the
// old key at once) and rates beyond keyward.MaxRatePerMinute are usage
// errors naming the flag and the bound, and change nothing; the bounds
// themselves are accepted.
func TestDurationAndRateFlagsAreBounded(t *testing.T) {
	c := newCLI(t)
	org := c.org("--name", "acme")
	k := c.key(org, "--name", "production")
	for _, tc := range []struct {
		args  []string
		bound string
	}{
		{[]string{"keys", "create", "--org", org, "--name", "x", "--expires", "2562047h"}, "--expires: key lifetime 2562047h0m0s is out of range: 0 (none) to 876000h0m0s"},
		{[]string{"keys", "create", "--org", org, "--name", "x", "--expires", "876001h"}, "876000h0m0s (manage.MaxKeyLifetime)"},
		{[]string{"keys", "rotate", k.ID, "--grace", "2100000h"}, "--grace: rotation grace 2100000h0m0s is above the maximum, 8760h0m0s"},
		{[]string{"keys", "rotate", k.ID, "--grace", "8761h"}, "8760h0m0s (manage.MaxRotationGrace)"},
		{[]string{"keys", "create", "--org", org, "--name", "x", "--rate", "1000000001/min"}, "--rate: rate 1000000001/min is out of range: 0 to 1000000000/min"},
		{[]string{"orgs", "create", "--name", "x", "--rate", "9223372036854775807"}, "--rate: rate 9223372036854775807/min is out of range"},
	} {
		out, errs, code := c.run(tc.args...)
		assert.Equal(t, 2, code, "keyward %v: %s", tc.args, errs)
		assert.Contains(t, errs, tc.bound, "keyward %v", tc.args)
		assert.Empty(t, out, "keyward %v", tc.args)
	}
	var keys []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	c.json(&keys, "keys", "list", "--org", org, "--json")
	require.Len(t, keys, 1, "no key made")
	assert.Equal(t, "active", keys[0].Status, "the refused rotation left the key alone")
	var orgs []map[string]any
	c.json(&orgs, "orgs", "list", "--json")
	assert.Len(t, orgs, 1, "no organization made")

	var longest struct {
		ExpiresAt string `json:"expiresAt"`
	}
	c.json(&longest, "keys", "create", "--json", "--org", org, "--name", "longest", "--expires", "876000h", "--rate", "1000000000/min")
	assert.Regexp(t, `^21\d\d-`, longest.ExpiresAt, "100 years from now")
	var rotated createdKey
	c.json(&rotated, "keys", "rotate", k.ID, "--grace", "8760h", "--json")
	c.json(&keys, "keys", "list", "--org", org, "--json")
	for _, x := range keys {
		if x.ID == k.ID {
			assert.Equal(t, "rotating", x.Status, "a year of grace: the old key still works")
		}
	}
}

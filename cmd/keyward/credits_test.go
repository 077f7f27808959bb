package main

import (
	"strconv"
	"testing"

	"github.com/keyward/keyward/credit"
	"github.com/stretchr/testify/assert"
)

// TestCreditBounds: the command refuses credit figures beyond
// credit.MaxCredits, naming the flag or argument and the bound, so that a
// balance can never overflow (it did: --credits 9223372036854775807 and a
// grant of 1 showed −9223372036854775808).
func TestCreditBounds(t *testing.T) {
	c := newCLI(t)
	bound := strconv.FormatInt(credit.MaxCredits, 10)
	above := strconv.FormatInt(credit.MaxCredits+1, 10)
	for _, tc := range []struct {
		args []string
		name string // what the message must name
	}{
		{[]string{"orgs", "create", "--name", "a", "--credits", above}, "--credits"},
		{[]string{"orgs", "create", "--name", "a", "--credits", "9223372036854775807"}, "--credits"},
		{[]string{"orgs", "create", "--name", "a", "--credits", "-1"}, "--credits"},
		{[]string{"credits", "grant", "org_x", above}, "N must"},
		{[]string{"credits", "grant", "org_x", "9223372036854775807"}, "N must"},
		{[]string{"credits", "grant", "org_x", "0"}, "N must"},
	} {
		_, errs, code := c.run(tc.args...)
		assert.Equal(t, 2, code, "keyward %v: a usage error: %s", tc.args, errs)
		assert.Contains(t, errs, tc.name, "keyward %v names what is wrong", tc.args)
		assert.Contains(t, errs, bound, "keyward %v names the bound", tc.args)
	}

	// At the bound: accepted, and no grant can go beyond it.
	org := c.org("--name", "top", "--credits", bound)
	_, errs, code := c.run("credits", "grant", org, "1")
	assert.Equal(t, 1, code, "refused by the ledger: %s", errs)
	assert.Contains(t, errs, bound)
	var d struct {
		Balance   int64 `json:"balance"`
		Available int64 `json:"available"`
	}
	c.json(&d, "orgs", "show", org, "--json")
	assert.Equal(t, credit.MaxCredits, d.Balance, "the refused grant changed nothing")
	assert.Equal(t, credit.MaxCredits, d.Available)
}

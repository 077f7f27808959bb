package main

import (
	"database/sql"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/testenv"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUsageMistakesExit2: what the README promises, exit status 2 for a
// usage mistake, holds for a bare `keyward` and for unknown subcommands of
// every group, which printed their help and exited 0.
func TestUsageMistakesExit2(t *testing.T) {
	c := newCLI(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "keyward needs a command"},
		{[]string{"orgs"}, "keyward orgs needs a command"},
		{[]string{"orgs", "craete"}, `unknown command "craete" for "keyward orgs"; did you mean create?`},
		{[]string{"keys", "rmove"}, `unknown command "rmove" for "keyward keys"`},
		{[]string{"credits", "gift"}, `unknown command "gift" for "keyward credits"`},
	} {
		out, errs, code := c.run(tc.args...)
		assert.Equal(t, 2, code, "keyward %v: %s", tc.args, errs)
		assert.Contains(t, errs, tc.want, "keyward %v", tc.args)
		assert.Empty(t, out, "keyward %v: the help is not printed as if asked for", tc.args)
	}
}

// TestErrorMessages: one "keyward: " prefix per line; flags, not the Go
// fields they set; an unknown plan lists the plans; a negative grant is
// refused with what to do instead.
func TestErrorMessages(t *testing.T) {
	c := newCLI(t)
	for _, tc := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"orgs", "create", "--name", "a", "--plan", "platinum"}, 2,
			[]string{`unknown plan "platinum"`, `"free"`, `"starter"`, `"growth"`, `"business"`, `"enterprise"`}},
		{[]string{"orgs", "create", "--name", "a", "--plan", "enterprise"}, 2, []string{"--rate"}},
		{[]string{"credits", "grant", "org_x", "-5"}, 2, []string{"N is -5: a grant cannot take credits away", "orgs update ORG_ID --credits"}},
		{[]string{"credits", "grant", "org_x", "--", "-5"}, 2, []string{"N is -5: a grant cannot take credits away"}},
		{[]string{"orgs", "create", "--name", "a", "--plna", "free"}, 2, []string{"unknown flag: --plna; did you mean --plan?"}},
		{[]string{"keys", "list", "--orgg", "x"}, 2, []string{"did you mean --org?"}},
		{[]string{"serve", "--addr", "127.0.0.1:0", "--redis", "redis://:s3cret@127.0.0.1:1/0", "--redis-timeout", "200ms"}, 1,
			[]string{"--redis redis://:xxxxx@127.0.0.1:1/0", "Redis does not answer"}},
	} {
		_, errs, code := c.run(tc.args...)
		assert.Equal(t, tc.code, code, "keyward %v: %s", tc.args, errs)
		for _, w := range tc.want {
			assert.Contains(t, errs, w, "keyward %v", tc.args)
		}
		assert.NotContains(t, errs, "RatePerMinute", "keyward %v: flag names, not Go fields", tc.args)
		assert.NotContains(t, errs, "s3cret", "keyward %v: no password", tc.args)
		for _, line := range strings.Split(strings.TrimSpace(errs), "\n") {
			assert.True(t, strings.HasPrefix(line, "keyward: "), "keyward %v: each line prefixed: %q", tc.args, line)
			assert.Equal(t, 1, strings.Count(line, "keyward: "), "keyward %v: one prefix: %q", tc.args, line)
		}
	}
}

// TestVersion: `keyward --version` answers.
func TestVersion(t *testing.T) {
	out, errs, code := newCLI(t).run("--version")
	require.Equal(t, 0, code, errs)
	assert.True(t, strings.HasPrefix(out, "keyward version "), out)
}

// TestExpiresInDays: --expires and --grace take days.
func TestExpiresInDays(t *testing.T) {
	c := newCLI(t)
	org := c.org("--name", "acme")
	var k struct {
		createdKey
		CreatedAt time.Time `json:"createdAt"`
		ExpiresAt time.Time `json:"expiresAt"`
	}
	c.json(&k, "keys", "create", "--json", "--org", org, "--name", "x", "--expires", "30d")
	assert.Equal(t, 30*24*time.Hour, k.ExpiresAt.Sub(k.CreatedAt))
	_, errs, code := c.run("keys", "create", "--org", org, "--name", "y", "--expires", "36501d")
	assert.Equal(t, 2, code, errs)
	assert.Contains(t, errs, "--expires: key lifetime")
	_, errs, code = c.run("keys", "rotate", k.ID, "--grace", "7d")
	assert.Equal(t, 0, code, errs)
	_, errs, code = c.run("keys", "create", "--org", org, "--name", "y", "--expires", "soon")
	assert.Equal(t, 2, code, errs)
	assert.Contains(t, errs, "30d")
}

// TestMissingPostgresDatabase: a PostgreSQL server that answers but has no
// such database is said so, with one "keyward: " prefix; it was "postgres
// does not answer", after a second prefix.
func TestMissingPostgresDatabase(t *testing.T) {
	base := testenv.PostgresDSN(t)
	db, err := sql.Open("pgx", base)
	require.NoError(t, err)
	defer db.Close()
	if err := db.Ping(); err != nil {
		testenv.Unreachable(t, "PostgreSQL", err)
	}
	u, err := url.Parse(base)
	require.NoError(t, err)
	u.Path = "/keyward_no_such_database"
	c := &cli{t: t, db: u.String()}
	_, errs, code := c.run("orgs", "list")
	assert.Equal(t, 1, code, errs)
	assert.Contains(t, errs, "no such database")
	assert.NotContains(t, errs, "does not answer")
	assert.Equal(t, 1, strings.Count(errs, "keyward: "), errs)
}

// TestUnknownPermissionWarns: a permission that no route of the demo API
// requires (a typo, most likely) is created with a warning on stderr.
func TestUnknownPermissionWarns(t *testing.T) {
	c := newCLI(t)
	org := c.org("--name", "acme")
	_, errs, code := c.run("keys", "create", "--org", org, "--name", "k", "--permissions", "transactions:enrch,transactions:read")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, errs, `warning: no route of keyward serve's demo API requires "transactions:enrch"`)
	assert.NotContains(t, errs, `"transactions:read"`)
	k := c.key(org, "--name", "k2", "--permissions", "transactions:*")
	_, errs, code = c.run("keys", "update", k.ID, "--permissions", "*,categories:read")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, errs, `"categories:read"`)
	_, errs, _ = c.run("keys", "update", k.ID, "--permissions", "transactions:enrich")
	assert.Empty(t, errs)
}

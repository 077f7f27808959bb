package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/sqlstore"
	"github.com/keyward/keyward/sqlstore/sqlite"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestManagementCommandsNeverCreateADatabase: on a missing SQLite file
// every management command fails, naming the database it looked for, and
// leaves no file behind; only `keyward init` makes one.
func TestManagementCommandsNeverCreateADatabase(t *testing.T) {
	c := &cli{t: t, db: filepath.Join(t.TempDir(), "typo.db")}
	for _, args := range [][]string{
		{"orgs", "list"},
		{"orgs", "create", "--name", "acme"},
		{"orgs", "show", "org_x"},
		{"keys", "list", "--org", "org_x"},
		{"keys", "create", "--org", "org_x", "--name", "x"},
		{"keys", "revoke", "key_x"},
		{"keys", "rotate", "key_x"},
		{"credits", "grant", "org_x", "5"},
		{"orgs", "update", "org_x", "--name", "b"},
		{"orgs", "delete", "org_x"},
		{"keys", "show", "key_x"},
		{"keys", "update", "key_x", "--name", "b"},
		{"keys", "whois", "triq_AbCd…wXyZ"},
		{"plans", "list"},
		{"plans", "set", "pro", "--rate", "900/min", "--credits", "5"},
		{"plans", "delete", "pro"},
	} {
		_, errs, code := c.run(args...)
		assert.Equal(t, 1, code, "keyward %v: %s", args, errs)
		assert.Contains(t, errs, "no database at "+c.db, "keyward %v names the database", args)
		assert.Contains(t, errs, "keyward init", "keyward %v says how to make one", args)
		_, err := os.Stat(c.db)
		require.ErrorIs(t, err, os.ErrNotExist, "keyward %v made a database", args)
	}

	out, errs, code := c.run("init")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "database "+c.db+" created\n", out)
	out, errs, code = c.run("init")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "database "+c.db+" is ready\n", out, "init again changes nothing")
	c.org("--name", "acme")
}

// TestLookupErrorsNameTheDatabase: "not found" says where it looked.
func TestLookupErrorsNameTheDatabase(t *testing.T) {
	c := newCLI(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"keys", "revoke", "key_nope"}, "key key_nope not found in " + c.db},
		{[]string{"keys", "rotate", "key_nope"}, "key key_nope not found in " + c.db},
		{[]string{"orgs", "show", "org_nope"}, "organization org_nope not found in " + c.db},
		{[]string{"keys", "list", "--org", "org_nope"}, "organization org_nope not found in " + c.db},
		{[]string{"keys", "create", "--org", "org_nope", "--name", "x"}, "organization org_nope not found in " + c.db},
		{[]string{"credits", "grant", "org_nope", "5"}, "organization org_nope not found in " + c.db},
	} {
		_, errs, code := c.run(tc.args...)
		assert.Equal(t, 1, code, "keyward %v: %s", tc.args, errs)
		assert.Contains(t, errs, tc.want, "keyward %v", tc.args)
	}
}

// TestDatabaseNameHidesThePassword: a PostgreSQL URL is named without its
// password.
func TestDatabaseNameHidesThePassword(t *testing.T) {
	a := &app{db: "postgres://keyward:s3cret@db.internal:5432/keyward?sslmode=require"}
	assert.NotContains(t, a.dbName(), "s3cret")
	assert.Contains(t, a.dbName(), "db.internal:5432/keyward")
	a = &app{db: "postgres://keyward@db.internal/keyward?password=s3cret&sslpassword=hunter2&sslmode=require"}
	assert.NotContains(t, a.dbName(), "s3cret")
	assert.NotContains(t, a.dbName(), "hunter2")
	assert.Contains(t, a.dbName(), "sslmode=require")
}

// TestPrefixKeptWithTheDatabase: the CLI pointed at the database of a
// service built with Prefix "wx_" makes wx_ keys, which the service
// accepts, and refuses another --prefix. It made triq_ keys, exit 0, that
// the service refused with 401 invalid_api_key_format.
func TestPrefixKeptWithTheDatabase(t *testing.T) {
	db := filepath.Join(t.TempDir(), "service.db")
	s, err := sqlstore.Open(context.Background(), sqlite.DSN(db), sqlstore.Options{Prefix: "wx_"})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	c := &cli{t: t, db: db, env: []string{"KEYWARD_KEY_PREFIX="}}
	org := c.org("--name", "acme")
	var k createdKey
	c.json(&k, "keys", "create", "--json", "--org", org, "--name", "k", "--permissions", "*")
	require.True(t, strings.HasPrefix(k.Key, "wx_"), "the database's prefix: %s", k.Hint)
	srv := c.serve()
	assert.Equal(t, http.StatusOK, srv.do(t, http.MethodGet, "/v1/categories", k.Key, "").status)

	_, errs, code := c.run("--prefix", "triq_", "keys", "create", "--org", org, "--name", "k2")
	assert.Equal(t, 1, code, errs)
	assert.Contains(t, errs, `"wx_"`)
	assert.Contains(t, errs, "--prefix")
	c.env = []string{"KEYWARD_KEY_PREFIX=triq_"}
	_, errs, code = c.run("keys", "list", "--org", org)
	assert.Equal(t, 1, code, "the environment's prefix is refused too: %s", errs)
}

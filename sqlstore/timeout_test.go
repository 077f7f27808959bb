package sqlstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFrozenPostgresCostsAtMostQueryTimeout: PostgreSQL stops answering
// (a black hole: connections stay open, nothing comes back). Every call
// fails within QueryTimeout, where it used to wait for as long as the
// freeze lasted: a settle under a context without a deadline (as
// ChargeCredits settles) on a pooled connection, a reservation, a key
// lookup and a key change on new ones, and a statement, run with a context
// without a deadline, of a transaction begun before the freeze. Once the
// network heals the store serves again.
func TestFrozenPostgresCostsAtMostQueryTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	ctx := context.Background()
	dsn := pgSchemaDSN(t, testenv.PostgresDSN(t))
	proxy, viaProxy := proxied(t, dsn)
	s := open(t, viaProxy, sqlstore.Options{QueryTimeout: timeout, Logger: quiet})
	tx, err := s.DB().BeginTx(ctx, nil) // holds a connection of its own
	require.NoError(t, err)
	defer func() { _ = tx.Rollback() }()
	org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "acme"})
	require.NoError(t, err)
	acct := org.Account()
	k, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "k"})
	require.NoError(t, err)
	res, err := s.Reserve(ctx, credit.ReserveRequest{Account: acct, Amount: 1})
	require.NoError(t, err)

	proxy.BlackHole()
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"settle", func() error { return s.Commit(context.WithoutCancel(ctx), acct, res.ID, 1) }},
		{"reserve", func() error {
			_, err := s.Reserve(ctx, credit.ReserveRequest{Account: acct, Amount: 1})
			return err
		}},
		{"lookup", func() error {
			_, err := s.LookupKey(ctx, k.Record.Hash)
			return err
		}},
		{"revoke", func() error { return s.RevokeKey(ctx, k.Record.ID) }},
		{"statement in a transaction", func() error {
			_, err := tx.ExecContext(ctx, `SELECT 1`)
			return err
		}},
	} {
		began := time.Now()
		err := c.call()
		took := time.Since(began)
		t.Logf("%s with PostgreSQL frozen: %v after %v", c.name, err, took.Round(time.Millisecond))
		assert.Error(t, err, c.name)
		assert.Less(t, took, timeout+300*time.Millisecond, c.name)
	}

	proxy.Restore()
	require.Eventually(t, func() bool {
		_, err := s.Reserve(ctx, credit.ReserveRequest{Account: acct, Amount: 1})
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, "serves again once the network heals")
}

// TestQueryTimeoutMustNotBeNegative: a negative QueryTimeout is a
// configuration error, like every other negative option.
func TestQueryTimeoutMustNotBeNegative(t *testing.T) {
	_, err := sqlstore.Open(context.Background(), engineOf("sqlite:"+t.TempDir()+"/k.db"), sqlstore.Options{QueryTimeout: -time.Second})
	assert.ErrorContains(t, err, "sqlstore.Options.QueryTimeout is negative")
}

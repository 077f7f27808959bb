package sqlstore_test

import (
	"context"
	"strings"
	"testing"

	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPrefixIsKeptWithTheDatabase: a database keeps the prefix it was
// created with; a later Open with a zero Prefix uses it and one with
// another prefix is refused. Before, a store opened with the default made
// triq_ keys in a wx_ service's database, keys that service refused.
func TestPrefixIsKeptWithTheDatabase(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := newDSN(t, engine)
			s, err := sqlstore.Open(ctx, engineOf(dsn), sqlstore.Options{Prefix: "wx_"})
			require.NoError(t, err)
			require.Equal(t, "wx_", s.Format().Prefix())
			require.NoError(t, s.Close())

			s = open(t, dsn, sqlstore.Options{})
			assert.Equal(t, "wx_", s.Format().Prefix(), "a zero Prefix is the database's")
			org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "acme", Plan: "free"})
			require.NoError(t, err)
			k, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "k", Permissions: []string{"*"}})
			require.NoError(t, err)
			assert.True(t, strings.HasPrefix(k.Key, "wx_"), k.Key)

			_, err = sqlstore.Open(ctx, engineOf(dsn), sqlstore.Options{Prefix: "triq_"})
			require.ErrorIs(t, err, sqlstore.ErrPrefixMismatch)
			assert.Contains(t, err.Error(), `"wx_"`)
			assert.Contains(t, err.Error(), `"triq_"`)
			s2 := open(t, dsn, sqlstore.Options{Prefix: "wx_"})
			assert.Equal(t, "wx_", s2.Format().Prefix())
		})
	}
}

// TestPrefixOfAnOlderDatabase: a database made before the prefix was kept
// takes the configured prefix on its first Open, or with a zero Prefix the
// prefix of its newest key (triq_ when it has none).
func TestPrefixOfAnOlderDatabase(t *testing.T) {
	for _, engine := range backends {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			forget := func(s *sqlstore.Store) { // as before migration 0012's row
				_, err := s.DB().ExecContext(ctx, `DELETE FROM keyward_settings`)
				require.NoError(t, err)
			}

			dsn := newDSN(t, engine)
			s := open(t, dsn, sqlstore.Options{Prefix: "wx_"})
			org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "acme", Plan: "free"})
			require.NoError(t, err)
			_, err = s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "k", Permissions: []string{"*"}})
			require.NoError(t, err)
			forget(s)
			assert.Equal(t, "wx_", open(t, dsn, sqlstore.Options{}).Format().Prefix(), "the keys' prefix")
			_, err = sqlstore.Open(ctx, engineOf(dsn), sqlstore.Options{Prefix: "triq_"})
			require.ErrorIs(t, err, sqlstore.ErrPrefixMismatch, "and kept from then on")

			dsn = newDSN(t, engine)
			forget(open(t, dsn, sqlstore.Options{}))
			assert.Equal(t, "ab_", open(t, dsn, sqlstore.Options{Prefix: "ab_"}).Format().Prefix(), "the configured one")
			dsn = newDSN(t, engine)
			forget(open(t, dsn, sqlstore.Options{}))
			assert.Equal(t, sqlstore.DefaultPrefix, open(t, dsn, sqlstore.Options{}).Format().Prefix())
		})
	}
}

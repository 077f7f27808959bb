package sqlstore_test

import (
	"context"
	"database/sql"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/ids"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/sqlstore"
	"github.com/keyward/keyward/sqlstore/postgres"
	"github.com/keyward/keyward/sqlstore/sqlite"
	"github.com/stretchr/testify/require"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// backends names the engines every suite runs on.
var backends = []string{"sqlite", "postgres"}

// newDSN returns a DSN for an empty database of the engine: a file in a
// temporary directory for SQLite, a schema of its own for PostgreSQL
// (dropped when the test ends).
func newDSN(t *testing.T, engine string) string {
	t.Helper()
	if engine == "sqlite" {
		return "sqlite:" + filepath.Join(t.TempDir(), "keyward.db")
	}
	return pgSchemaDSN(t, testenv.PostgresDSN(t))
}

func benchPGDSN(b *testing.B) string { return pgSchemaDSN(b, testenv.PostgresDSN(b)) }

func pgSchemaDSN(t testing.TB, base string) string {
	t.Helper()
	db, err := sql.Open("pgx", base)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	ctx := context.Background()
	if err := db.PingContext(ctx); err != nil {
		testenv.Unreachable(t, "PostgreSQL", err)
	}
	schema := "keyward_test_" + ids.New("")
	_, err = db.ExecContext(ctx, `CREATE SCHEMA `+schema)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = db.ExecContext(context.Background(), `DROP SCHEMA `+schema+` CASCADE`)
	})
	u, err := url.Parse(base)
	require.NoError(t, err)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// engineOf returns the engine of a DSN made by newDSN (or a copy of one
// routed through a fault proxy): PostgreSQL for postgres://, SQLite
// otherwise.
func engineOf(dsn string) sqlstore.Engine {
	if strings.HasPrefix(dsn, "postgres://") {
		return postgres.DSN(dsn)
	}
	return sqlite.DSN(dsn)
}

// open opens a Store on dsn and closes it when the test ends.
func open(t *testing.T, dsn string, opts sqlstore.Options) *sqlstore.Store {
	t.Helper()
	if opts.PollInterval == 0 {
		opts.PollInterval = 50 * time.Millisecond
	}
	s, err := sqlstore.Open(context.Background(), engineOf(dsn), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

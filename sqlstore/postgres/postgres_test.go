package postgres_test

import (
	"context"
	"testing"

	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/sqlstore"
	"github.com/keyward/keyward/sqlstore/postgres"
	"github.com/stretchr/testify/require"
)

// Engine.Open with a zero Pool takes sqlstore.Open's defaults: before, a
// zero QueryTimeout gave every statement a deadline already passed.
func TestZeroPoolTakesTheDefaults(t *testing.T) {
	t.Parallel()
	dsn := testenv.PostgresDSN(t)
	db, err := postgres.DSN(dsn).Open(context.Background(), sqlstore.Pool{})
	if err != nil {
		testenv.Unreachable(t, "postgres", err)
	}
	defer db.Close()
	var one int
	require.NoError(t, db.QueryRowContext(context.Background(), "SELECT 1").Scan(&one))
	require.Equal(t, 1, one)
	require.Equal(t, sqlstore.DefaultMaxConns, db.Stats().MaxOpenConnections)
}

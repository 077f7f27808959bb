package sqlstore_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/sqlstore"
	"github.com/keyward/keyward/sqlstore/sqlite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestIdleLeaseIsForgotten: once an organization stops calling, its lease
// shrinks by half each flush, goes back to the database, and the instance
// forgets the organization: memory follows the organizations being
// served. Calling again starts over.
func TestIdleLeaseIsForgotten(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := sqlstore.Open(ctx, sqlite.DSN(filepath.Join(t.TempDir(), "k.db")),
		sqlstore.Options{Lease: sqlstore.LeaseOptions{Enabled: true, FlushInterval: 10 * time.Millisecond}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	acct := credit.Account{OrgID: "org_idle", Allocation: 1_000_000}
	charge := func() {
		for range 200 {
			r, err := s.Reserve(ctx, credit.ReserveRequest{Account: acct, Amount: 1})
			require.NoError(t, err)
			require.NoError(t, s.Commit(ctx, acct, r.ID, 1))
		}
	}
	orgs := func() int { return sqlstore.LeasedOrgs(s) }
	charge()
	assert.Equal(t, 1, orgs())
	require.Eventually(t, func() bool { return orgs() == 0 }, 10*time.Second, 5*time.Millisecond, "forgotten once idle")
	b, err := s.Balance(ctx, acct)
	require.NoError(t, err)
	assert.Equal(t, int64(200), b.Spent)
	assert.Zero(t, b.Leased, "the lease went back")
	charge()
	b, err = s.Balance(ctx, acct)
	require.NoError(t, err)
	assert.Equal(t, int64(400), b.Spent)
}

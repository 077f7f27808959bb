package sqlstore_test

import (
	"context"
	"testing"

	"github.com/keyward/keyward/credit"
	"github.com/keyward/keyward/manage"
	"github.com/keyward/keyward/sqlstore"
)

// BenchmarkLookupUncached is one KeyStore lookup that reaches the
// database: what a cache miss costs.
func BenchmarkLookupUncached(b *testing.B) {
	for _, engine := range backends {
		b.Run("engine="+engine, func(b *testing.B) {
			s := benchStore(b, engine)
			ctx := context.Background()
			org, err := s.CreateOrg(ctx, manage.OrgSpec{Name: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			k, err := s.CreateKey(ctx, manage.KeySpec{OrgID: org.ID, Name: "bench", Permissions: []string{"*"}})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.LookupKey(ctx, k.Record.Hash); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkReserveCommit is one charged call's ledger work (reserve, then
// commit) on one hot organization; run it with -cpu 1,2,8 for the number
// of concurrent callers.
func BenchmarkReserveCommit(b *testing.B) {
	for _, engine := range backends {
		for _, mode := range []string{"exact", "leased"} {
			b.Run("engine="+engine+"/ledger="+mode, func(b *testing.B) {
				benchReserveCommit(b, benchStore(b, engine, sqlstore.LeaseOptions{Enabled: mode == "leased"}))
			})
		}
	}
}

func benchReserveCommit(b *testing.B, s *sqlstore.Store) {
	ctx := context.Background()
	acct := credit.Account{OrgID: "org_hot", Allocation: 1 << 40, AllowOverage: true}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r, err := s.Reserve(ctx, credit.ReserveRequest{Account: acct, Amount: 1, KeyID: "key_b", RequestID: "req_b"})
			if err != nil {
				b.Error(err)
				return
			}
			if err := s.Commit(ctx, acct, r.ID, 1); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func benchStore(b *testing.B, engine string, lease ...sqlstore.LeaseOptions) *sqlstore.Store {
	b.Helper()
	var dsn string
	if engine == "sqlite" {
		dsn = "sqlite:" + b.TempDir() + "/bench.db"
	} else {
		dsn = benchPGDSN(b)
	}
	var opts sqlstore.Options
	if len(lease) > 0 {
		opts.Lease = lease[0]
	}
	s, err := sqlstore.Open(context.Background(), engineOf(dsn), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

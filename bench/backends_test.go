package bench

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/keyward/keyward/internal/ids"
	"github.com/keyward/keyward/rate"
	"github.com/keyward/keyward/redislimit"
	"github.com/keyward/keyward/sqlstore"
	"github.com/keyward/keyward/sqlstore/postgres"
	"github.com/keyward/keyward/sqlstore/sqlite"
	"github.com/redis/go-redis/v9"
)

// BenchmarkBackends is the full chain on each backend: memory; Redis
// counters; keys and credits in SQLite or PostgreSQL behind a warm cache
// (cache=warm) or with no cache at all (cache=cold: every request reads
// the key store). PostgreSQL and Redis runs need KEYWARD_TEST_POSTGRES_DSN
// and KEYWARD_TEST_REDIS_URL; without them those sub-benchmarks are
// skipped.
func BenchmarkBackends(b *testing.B) {
	ctx := context.Background()
	type setup struct {
		name string
		make func(b *testing.B) Backends
	}
	setups := []setup{
		{"backend=memory/cache=warm", func(b *testing.B) Backends { be, _ := MemoryBackends(); return be }},
		{"backend=memory+redis/cache=warm", func(b *testing.B) Backends {
			be, _ := MemoryBackends()
			be.Counters = redisCounters(b)
			return be
		}},
	}
	for _, engine := range []string{"sqlite", "postgres"} {
		for _, cold := range []bool{false, true} {
			name := "backend=" + engine + "/cache=warm"
			if cold {
				name = "backend=" + engine + "/cache=cold"
			}
			setups = append(setups, setup{name, func(b *testing.B) Backends {
				s := openStore(b, engine)
				return Backends{Keys: s, Manager: s, Ledger: s, Cold: cold}
			}})
		}
	}
	for _, s := range setups {
		for _, mode := range []string{"serial", "parallel"} {
			b.Run(s.name+"/"+mode, func(b *testing.B) {
				chain, err := NewChain(ctx, s.make(b))
				if err != nil {
					b.Fatal(err)
				}
				defer chain.Close()
				run(b, chain.Handler, chain.Request, mode == "parallel")
			})
		}
	}
}

func redisCounters(b *testing.B) rate.Store {
	u := os.Getenv("KEYWARD_TEST_REDIS_URL")
	if u == "" {
		b.Skip("set KEYWARD_TEST_REDIS_URL")
	}
	opts, err := redis.ParseURL(u)
	if err != nil {
		b.Fatal(err)
	}
	client := redis.NewClient(opts)
	b.Cleanup(func() { _ = client.Close() })
	prefix := "keyward-bench-" + ids.New("")
	store, err := redislimit.New(context.Background(), client, redislimit.Options{Prefix: prefix})
	if err != nil {
		b.Skip("Redis: ", err)
	}
	b.Cleanup(func() {
		keys, _ := client.Keys(context.Background(), prefix+":*").Result()
		if len(keys) > 0 {
			client.Del(context.Background(), keys...)
		}
	})
	return store
}

func openStore(b *testing.B, engine string) *sqlstore.Store {
	ctx := context.Background()
	var eng sqlstore.Engine = sqlite.DSN(filepath.Join(b.TempDir(), "bench.db"))
	if engine == "postgres" {
		base := os.Getenv("KEYWARD_TEST_POSTGRES_DSN")
		if base == "" {
			b.Skip("set KEYWARD_TEST_POSTGRES_DSN")
		}
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			b.Skip("PostgreSQL: ", err)
		}
		schema := "keyward_bench_" + ids.New("")
		if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			_, _ = conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			_ = conn.Close(context.Background())
		})
		u, _ := url.Parse(base)
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		eng = postgres.DSN(u.String())
	}
	s, err := sqlstore.Open(ctx, eng, sqlstore.Options{Prefix: "triq_", Plans: Unlimited})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

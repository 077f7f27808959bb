package sqlstore_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestEachEngineCompilesAlone: a program compiles only the engine it
// imports. sqlstore imports neither driver, sqlstore/postgres not SQLite's,
// sqlstore/sqlite not PostgreSQL's (see BENCHMARKS.md, Build size).
func TestEachEngineCompilesAlone(t *testing.T) {
	t.Parallel()
	const sqlite, pgx = "modernc.org/sqlite", "github.com/jackc/pgx/v5"
	for pkg, banned := range map[string][]string{
		"github.com/keyward/keyward/sqlstore":          {sqlite, pgx},
		"github.com/keyward/keyward/sqlstore/postgres": {sqlite},
		"github.com/keyward/keyward/sqlstore/sqlite":   {pgx},
	} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, b := range banned {
				if dep == b || strings.HasPrefix(dep, b+"/") {
					t.Errorf("%s compiles %s", pkg, dep)
				}
			}
		}
	}
}

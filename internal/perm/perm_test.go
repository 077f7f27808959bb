package perm_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/perm"
)

func TestValid(t *testing.T) {
	for _, p := range []string{"*", "transactions:enrich", "transactions:*", "a.b-c_d:e"} {
		if !perm.Valid(p) {
			t.Errorf("%q refused", p)
		}
	}
	for _, p := range []string{"", "transactions", ":enrich", "transactions:", "*:enrich", "a b:c", "a:b:c", strings.Repeat("a", 65) + ":b"} {
		if perm.Valid(p) {
			t.Errorf("%q accepted", p)
		}
	}
}

func TestMissing(t *testing.T) {
	held := []string{"transactions:*", "categories:read"}
	if m := perm.Missing(held, []string{"transactions:enrich", "categories:read"}); m != nil {
		t.Fatalf("missing %v", m)
	}
	if m := perm.Missing(held, []string{"categories:write", "transaction:enrich"}); !slices.Equal(m, []string{"categories:write", "transaction:enrich"}) {
		t.Fatalf("missing %v", m)
	}
	if perm.Grants("transactions:*", "transactionsx:read") || !perm.Grants("*", "a:b") {
		t.Fatal("wildcards match wrongly")
	}
}

// A wildcard is covered by one as wide or wider only: what a self-service
// customer asks for is judged against what the operator offers by Missing.
func TestMissingWildcards(t *testing.T) {
	offered := []string{"transactions:*", "categories:read"}
	if m := perm.Missing(offered, []string{"transactions:*", "transactions:read", "categories:read"}); m != nil {
		t.Fatalf("missing %v", m)
	}
	if m := perm.Missing(offered, []string{"*", "categories:*", "transaction:*", "transactionsx:*"}); !slices.Equal(m, []string{"*", "categories:*", "transaction:*", "transactionsx:*"}) {
		t.Fatalf("missing %v", m)
	}
	if m := perm.Missing([]string{"*"}, []string{"*", "a:*", "a:b"}); m != nil {
		t.Fatalf("missing %v", m)
	}
}

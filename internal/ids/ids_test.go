package ids_test

import (
	"regexp"
	"testing"

	"github.com/keyward/keyward/internal/ids"
)

func TestUUIDIsVersion4(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		u := ids.UUID()
		if !re.MatchString(u) {
			t.Fatalf("%q is not a version 4 UUID", u)
		}
		if seen[u] {
			t.Fatalf("%q twice", u)
		}
		seen[u] = true
	}
}

func TestNew(t *testing.T) {
	if id := ids.New("key_"); !regexp.MustCompile(`^key_[0-9a-f]{24}$`).MatchString(id) {
		t.Fatalf("New = %q", id)
	}
}

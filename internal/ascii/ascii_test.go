package ascii_test

import (
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/ascii"
)

func TestOnly(t *testing.T) {
	for _, c := range []struct {
		s, extra string
		max      int
		want     bool
	}{
		{"abc_DEF-09", "_-", 64, true},
		{"", "_-", 64, false},
		{strings.Repeat("a", 65), "_-", 64, false},
		{strings.Repeat("a", 64), "_-", 64, true},
		{"a.b", "_-", 64, false},
		{"a.b", "._-", 64, true},
		{"é", "", 8, false},
		{"a b", " ", 8, true},
	} {
		if got := ascii.Only(c.s, c.max, c.extra); got != c.want {
			t.Errorf("Only(%q, %d, %q) = %v", c.s, c.max, c.extra, got)
		}
	}
}

func TestLongestAlnumRun(t *testing.T) {
	for s, want := range map[string]int{"": 0, "-": 0, "ab-cde.f": 3, "abc": 3, "a-bcdef": 5} {
		if got := ascii.LongestAlnumRun(s); got != want {
			t.Errorf("LongestAlnumRun(%q) = %d, want %d", s, got, want)
		}
	}
}

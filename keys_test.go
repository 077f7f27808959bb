package keyward_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/keyward/keyward"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mustFormat(t testing.TB) keyward.KeyFormat {
	t.Helper()
	f, err := keyward.NewKeyFormat("triq_")
	require.NoError(t, err)
	return f
}

func TestNewKeyFormatRejectsBadPrefixes(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"", "_", "triq", "TRIQ_", "tr iq_", "triq__", "tr-iq_", "triq_x", strings.Repeat("a", 40) + "_"} {
		_, err := keyward.NewKeyFormat(p)
		var ce *keyward.ConfigError
		assert.ErrorAs(t, err, &ce, "prefix %q", p)
	}
	for _, p := range []string{"triq_", "sk_", "a1_"} {
		_, err := keyward.NewKeyFormat(p)
		assert.NoError(t, err, "prefix %q", p)
	}
}

func TestGeneratedKeysAreValid(t *testing.T) {
	t.Parallel()
	f := mustFormat(t)
	for range 1000 {
		k, err := f.Generate()
		require.NoError(t, err)
		require.True(t, f.Valid(k))
		require.Len(t, k, f.Len())
		require.True(t, strings.HasPrefix(k, "triq_"))
	}
}

func TestGeneratedKeysAreUnique(t *testing.T) {
	t.Parallel()
	f := mustFormat(t)
	const n = 100_000
	seen := make(map[string]struct{}, n)
	for range n {
		k, err := f.Generate()
		require.NoError(t, err)
		seen[k] = struct{}{}
	}
	assert.Len(t, seen, n)
}

// TestGeneratedBodiesAreUniform is a coarse check that every base62
// character occurs about equally often (no modulo bias): with 3.1 M draws
// each character is expected 50,000 times; ±6% is over 25 standard
// deviations.
func TestGeneratedBodiesAreUniform(t *testing.T) {
	t.Parallel()
	f := mustFormat(t)
	var counts [256]int
	for range 100_000 {
		k, _ := f.Generate()
		for _, c := range []byte(k[5 : 5+30]) {
			counts[c]++
		}
	}
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	for _, c := range []byte(alphabet) {
		assert.InDelta(t, 3_000_000/62, counts[c], 3_000_000/62*0.06, "character %q", c)
	}
}

// validCases are shared by the table test and the fuzz seed corpus.
func validCases(t testing.TB) []struct {
	name string
	in   string
	want bool
} {
	f := mustFormat(t)
	valid, err := f.Generate()
	require.NoError(t, err)
	flip := []byte(valid)
	last := len(flip) - 1
	if flip[last] == 'a' {
		flip[last] = 'b'
	} else {
		flip[last] = 'a'
	}
	bodyFlip := []byte(valid)
	if bodyFlip[7] == 'a' {
		bodyFlip[7] = 'b'
	} else {
		bodyFlip[7] = 'a'
	}
	return []struct {
		name string
		in   string
		want bool
	}{
		{"valid", valid, true},
		{"empty", "", false},
		{"upper-case prefix", "TRIQ_" + valid[5:], false},
		{"other prefix", "sk_" + valid[5:], false},
		{"bearer", "Bearer " + valid, false},
		{"prefix only", "triq_", false},
		{"short", valid[:len(valid)-1], false},
		{"long", valid + "a", false},
		{"wrong checksum", string(flip), false},
		{"changed body", string(bodyFlip), false},
		{"trailing newline", valid + "\n", false},
		{"NUL inside", valid[:10] + "\x00" + valid[11:], false},
		{"non-ASCII inside", valid[:10] + "é" + valid[12:], false},
		{"dash inside", valid[:10] + "-" + valid[11:], false},
		{"checksum overflow", valid[:len(valid)-6] + "zzzzzz", false},
	}
}

func TestValid(t *testing.T) {
	t.Parallel()
	f := mustFormat(t)
	for _, tc := range validCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.want, f.Valid(tc.in))
		})
	}
	var zero keyward.KeyFormat
	assert.False(t, zero.Valid(""), "the zero format accepts nothing")
	_, err := zero.Generate()
	assert.Error(t, err)
}

func TestValidDoesNotAllocate(t *testing.T) {
	f := mustFormat(t)
	k, _ := f.Generate()
	allocs := testing.AllocsPerRun(100, func() {
		if !f.Valid(k) {
			t.Fatal("valid key not valid")
		}
		_ = keyward.Hash(k)
	})
	assert.Zero(t, allocs)
}

func TestHashAndHint(t *testing.T) {
	t.Parallel()
	f := mustFormat(t)
	k, _ := f.Generate()
	h := keyward.Hash(k)
	assert.Equal(t, h, keyward.Hash(k))
	assert.Len(t, h.String(), 64)
	hint := f.Hint(k)
	assert.Equal(t, "triq_"+k[5:9]+"…"+k[len(k)-4:], hint)
	assert.NotContains(t, hint, k[9:len(k)-4])
	assert.Equal(t, "triq_…", f.Hint("triq_abc"))
}

func FuzzValid(f *testing.F) {
	format := mustFormat(f)
	for _, tc := range validCases(f) {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if format.Valid(in) {
			// Anything accepted must have the exact layout: the prefix,
			// then only base62 characters.
			if len(in) != format.Len() || !strings.HasPrefix(in, "triq_") {
				t.Fatalf("accepted a key of length %d", len(in))
			}
			for _, c := range []byte(in[5:]) {
				if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
					t.Fatalf("accepted a key with %q", c)
				}
			}
			// One character changed breaks the checksum.
			b := []byte(in)
			b[len(b)-1] = map[bool]byte{true: '0', false: '1'}[b[len(b)-1] != '0']
			if format.Valid(string(b)) {
				t.Fatalf("accepted %q and %q", in, b)
			}
		}
		_ = format.Hint(in)
		_ = keyward.Hash(in)
	})
}

func ExampleKeyFormat_Generate() {
	format, err := keyward.NewKeyFormat("triq_")
	if err != nil {
		panic(err)
	}
	key, err := format.Generate()
	if err != nil {
		panic(err)
	}
	// Show the key to its owner once; store only keyward.Hash(key) and
	// format.Hint(key).
	hash, hint := keyward.Hash(key), format.Hint(key)
	fmt.Println(len(key), format.Valid(key), len(hash.String()), len(hint) > len("triq_"))
	// Output: 41 true 64 true
}

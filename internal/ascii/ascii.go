// Package ascii is keyward's one rule for "s is made only of these
// characters": header names, permissions, idempotency keys, request ids;
// and how messages quote a list of such names.
package ascii

import (
	"strconv"
	"strings"
)

// QuoteList returns ss quoted and joined with ", ": "a", "b".
func QuoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// IsAlnum reports whether c is an ASCII letter or digit.
func IsAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// Only reports whether s is 1 to maxLen bytes, each a letter, a digit or
// one of the bytes of extra.
func Only(s string, maxLen int, extra string) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !IsAlnum(s[i]) && strings.IndexByte(extra, s[i]) < 0 {
			return false
		}
	}
	return true
}

// LongestAlnumRun returns the length of the longest run of letters and
// digits in s.
func LongestAlnumRun(s string) int {
	longest, run := 0, 0
	for i := 0; i < len(s); i++ {
		if run++; !IsAlnum(s[i]) {
			run = 0
		}
		longest = max(longest, run)
	}
	return longest
}

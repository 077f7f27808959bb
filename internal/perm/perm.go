// Package perm is the syntax and matching of keyward's permissions:
// "resource:action", "resource:*" or "*", where resource and action are
// 1 to 64 letters, digits and _.- (case-sensitive).
package perm

import (
	"strings"

	"github.com/keyward/keyward/internal/ascii"
)

// Valid reports whether p is a permission a key may hold.
func Valid(p string) bool {
	if p == "*" {
		return true
	}
	res, act, ok := strings.Cut(p, ":")
	return ok && word(res) && (act == "*" || word(act))
}

func word(s string) bool { return ascii.Only(s, 64, "_.-") }

// Grants reports whether a held permission covers the required one: a
// route's resource:action, or any permission a key may hold (a
// self-service customer's request is judged against what the operator
// offers), which a wildcard covers only if it is as wide or wider.
func Grants(held, required string) bool {
	if held == required || held == "*" {
		return true
	}
	n := len(held)
	return n >= 2 && held[n-2:] == ":*" && len(required) > n-1 && required[:n-1] == held[:n-1]
}

// Missing returns the required permissions that held does not cover, in
// the order required; nil when none. It allocates only when something is
// missing.
func Missing(held, required []string) (missing []string) {
	for _, r := range required {
		ok := false
		for _, h := range held {
			if Grants(h, r) {
				ok = true
				break
			}
		}
		if !ok {
			missing = append(missing, r)
		}
	}
	return missing
}

// Package ids makes the random identifiers of organizations and keys.
package ids

import (
	"crypto/rand"
	"encoding/hex"
)

// New returns prefix followed by 24 random hex digits (96 bits), such as
// "key_3f9a…". Identifiers are not secret; they only need to be unique.
func New(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return prefix + hex.EncodeToString(b[:])
}

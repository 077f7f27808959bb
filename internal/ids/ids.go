// Package ids makes random identifiers: of organizations and keys, and
// of requests.
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

// UUID returns a random (version 4) UUID, such as a request id.
func UUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	hex.Encode(s[9:13], b[4:6])
	hex.Encode(s[14:18], b[6:8])
	hex.Encode(s[19:23], b[8:10])
	hex.Encode(s[24:], b[10:])
	s[8], s[13], s[18], s[23] = '-', '-', '-', '-'
	return string(s[:])
}

// Package idempotency reads a call's idempotency key and fingerprints the
// request it names, for keyward's ChargeCredits: which key, which request,
// and what a ledger keeps of the key.
package idempotency

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"net/http"

	"github.com/keyward/keyward/internal/ascii"
)

// The headers that carry a key; either is accepted.
const (
	Header  = "Idempotency-Key"
	XHeader = "X-Idempotency-Key"
)

// What Key and Fingerprint refuse; keyward answers each with its own
// failure.
var (
	ErrConflict       = errors.New("idempotency: two different keys, or one sent twice")
	ErrMalformed      = errors.New("idempotency: not 1 to 64 letters, digits, '_' or '-'")
	ErrBodyTooLarge   = errors.New("idempotency: body too large to fingerprint")
	ErrBodyUnreadable = errors.New("idempotency: body could not be read")
)

// Key returns the idempotency key h carries, "" for none.
func Key(h http.Header) (string, error) {
	a, b := h[Header], h[XHeader]
	switch {
	case len(a) > 1 || len(b) > 1 || len(a) == 1 && len(b) == 1 && a[0] != b[0]:
		return "", ErrConflict
	case len(a) == 0 && len(b) == 0:
		return "", nil
	}
	var k string
	if len(a) == 1 {
		k = a[0]
	} else {
		k = b[0]
	}
	if !ascii.Only(k, 64, "_-") {
		return "", ErrMalformed
	}
	return k, nil
}

// Digest is what a ledger keeps of an idempotency key: its SHA-256 in hex,
// so that a client that sends a secret (its API key, say) as an
// idempotency key never has it stored.
func Digest(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Fingerprint is the SHA-256 of r's method, path, query and body. It
// reads the body (at most maxBody bytes) and puts an in-memory copy of it
// back in r.Body.
func Fingerprint(r *http.Request, maxBody int64) (string, error) {
	h := sha256.New()
	_, _ = io.WriteString(h, r.Method)
	h.Write([]byte{0})
	if r.URL != nil {
		_, _ = io.WriteString(h, r.URL.EscapedPath())
		h.Write([]byte{0})
		_, _ = io.WriteString(h, r.URL.RawQuery)
	}
	h.Write([]byte{0})
	if r.Body != nil && r.Body != http.NoBody {
		body, err := io.ReadAll(io.LimitReader(r.Body, min(maxBody, math.MaxInt64-1)+1)) // no overflow at MaxInt64
		if err != nil {
			return "", ErrBodyUnreadable
		}
		if int64(len(body)) > maxBody {
			return "", ErrBodyTooLarge
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.Write(body)
	}
	return string(h.Sum(nil)), nil
}

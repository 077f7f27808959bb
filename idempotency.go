// ChargeCredits' idempotency: which key a call carries, which request it
// names (its fingerprint), and what a ledger keeps of the key.

package keyward

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

// What idemKey and idemFingerprint refuse; keyward answers each with its own
// failure.
var (
	errIdemConflict       = errors.New("keyward: idempotency: two different keys, or one sent twice")
	errIdemMalformed      = errors.New("keyward: idempotency: not 1 to 64 letters, digits, '_' or '-'")
	errIdemBodyTooLarge   = errors.New("keyward: idempotency: body too large to fingerprint")
	errIdemBodyUnreadable = errors.New("keyward: idempotency: body could not be read")
)

// idemKey returns the idempotency key h carries, "" for none.
func idemKey(h http.Header) (string, error) {
	a, b := h[HeaderIdempotencyKey], h[HeaderXIdempotencyKey]
	switch {
	case len(a) > 1 || len(b) > 1 || len(a) == 1 && len(b) == 1 && a[0] != b[0]:
		return "", errIdemConflict
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
		return "", errIdemMalformed
	}
	return k, nil
}

// idemDigest is what a ledger keeps of an idempotency key: its SHA-256 in hex,
// so that a client that sends a secret (its API key, say) as an
// idempotency key never has it stored.
func idemDigest(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// idemFingerprint is the SHA-256 of r's method, path, query and body. It
// reads the body (at most maxBody bytes) and puts an in-memory copy of it
// back in r.Body.
func idemFingerprint(r *http.Request, maxBody int64) (string, error) {
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
			return "", errIdemBodyUnreadable
		}
		if int64(len(body)) > maxBody {
			return "", errIdemBodyTooLarge
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.Write(body)
	}
	return string(h.Sum(nil)), nil
}

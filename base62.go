// The alphabet of keys (base62: 0-9, A-Z, a-z), in which a key's body and
// its checksum are written.

package keyward

import "io"

// base62Alphabet is the 62 digits, in value order.
const base62Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// base62Index maps a byte to its digit value, or 0xff when the byte is not a
// digit.
var base62Index = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(base62Alphabet); i++ {
		t[base62Alphabet[i]] = byte(i)
	}
	return t
}()

// base62Only reports whether every byte of s is a base62 digit.
func base62Only(s string) bool {
	for i := 0; i < len(s); i++ {
		if base62Index[s[i]] == 0xff {
			return false
		}
	}
	return true
}

// base62Decode returns the value of the digits in s, most significant first,
// and false if s has a byte that is not a digit or the value overflows
// 64 bits.
func base62Decode(s string) (uint64, bool) {
	var v uint64
	for i := 0; i < len(s); i++ {
		d := base62Index[s[i]]
		if d == 0xff || v > (1<<64-1-uint64(d))/62 {
			return 0, false
		}
		v = v*62 + uint64(d)
	}
	return v, true
}

// base62Put writes v into dst in base62, most significant digit first, padded
// with '0' to fill dst (the high digits are lost if dst is too short).
func base62Put(dst []byte, v uint64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = base62Alphabet[v%62]
		v /= 62
	}
}

// base62Random fills dst with uniformly distributed digits read from r,
// rejecting random bytes ≥ 248 (= 4·62) so that no digit is favoured.
func base62Random(r io.Reader, dst []byte) error {
	var pool [64]byte
	filled := 0
	for filled < len(dst) {
		if _, err := io.ReadFull(r, pool[:]); err != nil {
			return err
		}
		for _, b := range pool {
			if b < 248 && filled < len(dst) {
				dst[filled] = base62Alphabet[b%62]
				filled++
			}
		}
	}
	return nil
}

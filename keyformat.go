package keyward

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"hash/crc32"
	"io"
	"unsafe"
)

// Key layout, after the prefix: a base62 body of bodyLen characters drawn
// from crypto/rand (bodyLen·log2(62) ≈ 178 bits) followed by a checksum of
// checksumLen base62 characters: the CRC32 (IEEE) of prefix+body, left-padded
// with '0'. The layout is GitHub's token design.
const (
	bodyLen     = 30
	checksumLen = 6
	// maxPrefixLen bounds the prefix so that a whole key fits the fixed
	// stack buffer used for hashing.
	maxPrefixLen = 32
)

const base62Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// base62Index maps a byte to its base62 digit value, or 0xff when the byte
// is not in the alphabet.
var base62Index = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(base62Alphabet); i++ {
		t[base62Alphabet[i]] = byte(i)
	}
	return t
}()

// KeyHash is the SHA-256 of a whole presented key (prefix included). It is
// the only form in which a key is stored or looked up.
type KeyHash [sha256.Size]byte

// String returns the hash in lower-case hex.
func (h KeyHash) String() string { return hex.EncodeToString(h[:]) }

// KeyFormat generates and parses keys of one prefix. The zero value is not
// usable; build one with NewKeyFormat. A KeyFormat is immutable and safe for
// concurrent use.
type KeyFormat struct {
	prefix string
	rand   io.Reader
}

// NewKeyFormat returns the format for keys that start with prefix, which
// must match [a-z0-9]+_ and be at most 32 bytes long (for example "triq_").
func NewKeyFormat(prefix string) (KeyFormat, error) {
	if err := checkPrefix(prefix); err != nil {
		return KeyFormat{}, err
	}
	return KeyFormat{prefix: prefix, rand: rand.Reader}, nil
}

func checkPrefix(prefix string) error {
	if prefix == "" {
		return &ConfigError{Field: "Prefix", Problem: "is empty; a prefix such as \"triq_\" is required"}
	}
	if len(prefix) > maxPrefixLen {
		return &ConfigError{Field: "Prefix", Problem: "is longer than 32 bytes"}
	}
	if len(prefix) < 2 || prefix[len(prefix)-1] != '_' {
		return &ConfigError{Field: "Prefix", Problem: "must match [a-z0-9]+_ (lower-case letters or digits, then one underscore)"}
	}
	for i := 0; i < len(prefix)-1; i++ {
		c := prefix[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return &ConfigError{Field: "Prefix", Problem: "must match [a-z0-9]+_ (lower-case letters or digits, then one underscore)"}
		}
	}
	return nil
}

// Prefix returns the prefix every key of this format starts with.
func (f KeyFormat) Prefix() string { return f.prefix }

// Len returns the length in bytes of every well-formed key of this format.
func (f KeyFormat) Len() int { return len(f.prefix) + bodyLen + checksumLen }

// Generate returns a new random key. It fails only if the system's random
// source fails.
func (f KeyFormat) Generate() (string, error) {
	if f.prefix == "" {
		return "", errZeroKeyFormat
	}
	buf := make([]byte, f.Len())
	copy(buf, f.prefix)
	body := buf[len(f.prefix) : len(f.prefix)+bodyLen]
	if err := randomBase62(f.rand, body); err != nil {
		return "", err
	}
	putChecksum(buf[len(f.prefix)+bodyLen:], crc32.ChecksumIEEE(buf[:len(f.prefix)+bodyLen]))
	return string(buf), nil
}

// randomBase62 fills dst with uniformly distributed base62 characters,
// rejecting random bytes ≥ 248 (= 4·62) so that no character is favoured.
func randomBase62(r io.Reader, dst []byte) error {
	var pool [64]byte
	filled := 0
	for filled < len(dst) {
		if _, err := io.ReadFull(r, pool[:]); err != nil {
			return err
		}
		for _, b := range pool {
			if b >= 248 {
				continue
			}
			dst[filled] = base62Alphabet[b%62]
			filled++
			if filled == len(dst) {
				break
			}
		}
	}
	return nil
}

// putChecksum writes sum in base62, most significant digit first, padded
// with '0' to fill dst.
func putChecksum(dst []byte, sum uint32) {
	v := uint64(sum)
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = base62Alphabet[v%62]
		v /= 62
	}
}

// ParseResult tells what Parse found in a presented string.
type ParseResult uint8

const (
	// KeyOK is a well-formed key of this format with a valid checksum. It
	// may still be unknown, revoked or expired: that is for the store to say.
	KeyOK ParseResult = iota
	// KeyWrongPrefix is a string that does not start with the format's
	// prefix (reason invalid_api_key_format).
	KeyWrongPrefix
	// KeyMalformed starts with the prefix but has the wrong length, a
	// character outside base62 or a checksum that does not match (reason
	// invalid_api_key).
	KeyMalformed
)

// String returns the name of the result.
func (p ParseResult) String() string {
	switch p {
	case KeyOK:
		return "ok"
	case KeyWrongPrefix:
		return "wrong prefix"
	case KeyMalformed:
		return "malformed"
	}
	return "unknown"
}

// Parse checks a presented key without any I/O: prefix, length, alphabet
// and checksum. It never allocates and never retains key.
func (f KeyFormat) Parse(key string) ParseResult {
	p := f.prefix
	if p == "" || len(key) < len(p) || key[:len(p)] != p {
		return KeyWrongPrefix
	}
	if len(key) != len(p)+bodyLen+checksumLen {
		return KeyMalformed
	}
	for i := len(p); i < len(key); i++ {
		if base62Index[key[i]] == 0xff {
			return KeyMalformed
		}
	}
	var want uint64
	for i := len(p) + bodyLen; i < len(key); i++ {
		want = want*62 + uint64(base62Index[key[i]])
	}
	if want > 0xffffffff || uint32(want) != crc32IEEEString(key[:len(p)+bodyLen]) {
		return KeyMalformed
	}
	return KeyOK
}

// shaped says whether key has f's prefix and a key's length: what Parse
// checks before it reads the characters and the checksum.
func (f KeyFormat) shaped(key string) bool {
	p := f.prefix
	return p != "" && len(key) == len(p)+bodyLen+checksumLen && key[:len(p)] == p
}

// crc32IEEEString and Hash read the string's bytes in place: the key is
// never copied, and the hashing code only reads what it is given, so the
// read-only view is sound.
func crc32IEEEString(s string) uint32 {
	return crc32.ChecksumIEEE(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// Hash returns the SHA-256 of key. Stores keep only this.
func Hash(key string) KeyHash {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(key), len(key)))
}

// Hint returns a display hint for a key: the prefix, the first four and the
// last four characters after it, for example "triq_AbCd…wXyZ". It reveals 8
// of the 36 characters after the prefix and is safe to show in listings and
// logs. A string too short to hint at is shown as prefix plus "…".
func (f KeyFormat) Hint(key string) string {
	p := f.prefix
	if len(key) < len(p)+12 || key[:len(p)] != p {
		return p + "…"
	}
	rest := key[len(p):]
	return p + rest[:4] + "…" + rest[len(rest)-4:]
}

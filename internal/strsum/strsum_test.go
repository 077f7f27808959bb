package strsum

import (
	"crypto/sha256"
	"hash/crc32"
	"strings"
	"testing"
)

func TestSumsMatchTheStandardLibrary(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "triq_", "triq_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", strings.Repeat("x", 128), strings.Repeat("y", 129), strings.Repeat("z", 1000)} {
		if got, want := CRC32(s), crc32.ChecksumIEEE([]byte(s)); got != want {
			t.Errorf("CRC32(%d bytes) = %x, want %x", len(s), got, want)
		}
		if got, want := SHA256(s), sha256.Sum256([]byte(s)); got != want {
			t.Errorf("SHA256(%d bytes) = %x, want %x", len(s), got, want)
		}
	}
}

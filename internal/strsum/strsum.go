// Package strsum computes checksums and hashes of strings without the
// heap allocation that converting a string to []byte costs on every
// request.
package strsum

import (
	"crypto/sha256"
	"hash/crc32"
)

// CRC32 returns the CRC32 (IEEE) of s, byte by byte from the standard
// table: crc32.ChecksumIEEE would need a []byte that escapes.
func CRC32(s string) uint32 {
	crc := ^uint32(0)
	for i := 0; i < len(s); i++ {
		crc = crc32.IEEETable[byte(crc)^s[i]] ^ crc>>8
	}
	return ^crc
}

// maxStack is the longest string SHA256 hashes from a buffer on the stack.
const maxStack = 128

// SHA256 returns the SHA-256 of s. A string of up to 128 bytes (every key)
// is copied into a buffer on the stack: []byte(s) would be a heap
// allocation.
func SHA256(s string) [sha256.Size]byte {
	if len(s) > maxStack {
		return sha256.Sum256([]byte(s))
	}
	var buf [maxStack]byte
	n := copy(buf[:], s)
	return sha256.Sum256(buf[:n])
}

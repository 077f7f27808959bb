package keyward

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
	"testing/iotest"
)

func TestBase62PutDecodeRoundTrip(t *testing.T) {
	for _, v := range []uint64{0, 1, 61, 62, 1<<32 - 1, 56_800_235_583} {
		var b [6]byte
		base62Put(b[:], v)
		got, ok := base62Decode(string(b[:]))
		if !ok || got != v {
			t.Fatalf("Put/Decode(%d) = %d, %v (%q)", v, got, ok, b)
		}
	}
	var b [6]byte
	base62Put(b[:], 0)
	if string(b[:]) != "000000" {
		t.Fatalf("zero is %q, want left-padded zeros", b)
	}
}

func TestBase62DecodeRefuses(t *testing.T) {
	for _, s := range []string{"ab-c", "é", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzz"} {
		if _, ok := base62Decode(s); ok {
			t.Errorf("Decode(%q) succeeded", s)
		}
	}
	if !base62Only(base62Alphabet) || base62Only("a b") {
		t.Fatal("Only is wrong")
	}
}

// Every digit is drawn about equally often: no modulo bias.
func TestBase62RandomIsUniform(t *testing.T) {
	dst := make([]byte, 62*4000)
	if err := base62Random(rand.Reader, dst); err != nil {
		t.Fatal(err)
	}
	counts := map[byte]int{}
	for _, c := range dst {
		counts[c]++
	}
	if len(counts) != 62 {
		t.Fatalf("%d distinct digits", len(counts))
	}
	for c, n := range counts {
		if n < 3400 || n > 4600 {
			t.Errorf("digit %q drawn %d times, want about 4000", c, n)
		}
	}
	// Bytes ≥ 248 are skipped, never mapped.
	if err := base62Random(bytes.NewReader(bytes.Repeat([]byte{250}, 64)), make([]byte, 1)); err == nil {
		t.Fatal("a source of only rejected bytes filled dst")
	}
	if err := base62Random(iotest.ErrReader(errors.New("no entropy")), make([]byte, 4)); err == nil {
		t.Fatal("a failing source gave no error")
	}
}

// Package front remembers values by the exact string they were put under,
// in a fixed number of slots, so that a string seen again is found without
// hashing it with a cryptographic hash: keyward keeps recently
// authenticated keys in one, in front of its SHA-256-keyed cache. A Get
// answers only for the very string that was put: the whole string is
// compared in constant time. A slot holds one entry; a later Put of another
// string that falls in the same slot replaces it.
package front

import (
	"crypto/subtle"
	"hash/maphash"
	"sync/atomic"
)

// Front is a fixed set of slots. Its methods are safe for concurrent use.
type Front[V any] struct {
	seed  maphash.Seed
	slots []atomic.Pointer[entry[V]]
}

type entry[V any] struct {
	key string
	v   V
}

// New returns a Front of n slots (rounded up to a power of two, at least
// one).
func New[V any](n int) *Front[V] {
	size := 1
	for size < n {
		size <<= 1
	}
	return &Front[V]{seed: maphash.MakeSeed(), slots: make([]atomic.Pointer[entry[V]], size)}
}

func (f *Front[V]) slot(key string) *atomic.Pointer[entry[V]] {
	return &f.slots[maphash.String(f.seed, key)&uint64(len(f.slots)-1)]
}

// Get returns the value put under key, if its slot still holds it.
func (f *Front[V]) Get(key string) (v V, ok bool) {
	e := f.slot(key).Load()
	if e == nil || len(e.key) != len(key) || subtle.ConstantTimeCompare([]byte(e.key), []byte(key)) != 1 {
		return v, false
	}
	return e.v, true
}

// Put puts v under a copy of key.
func (f *Front[V]) Put(key string, v V) {
	f.slot(key).Store(&entry[V]{key: string([]byte(key)), v: v})
}

// Clear empties every slot.
func (f *Front[V]) Clear() {
	for i := range f.slots {
		f.slots[i].Store(nil)
	}
}

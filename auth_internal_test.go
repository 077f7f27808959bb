package keyward

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The set of keys found recently stays within maxKnownKeys however many
// keys are found, drops the keys not found within knownKeysFor first, and
// forgets a key the store no longer has.
func TestKnownKeysIsBounded(t *testing.T) {
	t.Parallel()
	var k knownKeys
	hash := func(i int) *KeyHash {
		var h KeyHash
		binary.LittleEndian.PutUint64(h[:8], uint64(i))
		return &h
	}
	now := time.Date(2036, 1, 19, 10, 30, 0, 0, time.UTC)
	size := func() (n int) {
		for i := range k.shards {
			n += len(k.shards[i].found)
		}
		return n
	}
	for i := range maxKnownKeys {
		k.add(hash(i), now)
	}
	assert.Equal(t, maxKnownKeys, size())
	assert.True(t, k.has(hash(0), now))

	later := now.Add(knownKeysFor + time.Hour)
	k.add(hash(0), later) // found again: kept whatever else goes
	for i := maxKnownKeys; i < maxKnownKeys+1000; i++ {
		k.add(hash(i), later)
		assert.True(t, k.has(hash(i), later))
	}
	assert.LessOrEqual(t, size(), maxKnownKeys)
	assert.Less(t, size(), 10_000, "the keys not found for over knownKeysFor went first")
	assert.True(t, k.has(hash(0), later))
	assert.False(t, k.has(hash(1), later))

	for i := maxKnownKeys + 1000; i < 3*maxKnownKeys; i++ { // all of them recent: any one goes
		k.add(hash(i), later)
	}
	assert.LessOrEqual(t, size(), maxKnownKeys)
	assert.True(t, k.has(hash(3*maxKnownKeys-1), later))

	k.forget(hash(3*maxKnownKeys - 1))
	assert.False(t, k.has(hash(3*maxKnownKeys-1), later))
	var none *knownKeys
	none.add(hash(1), now)
	none.forget(hash(1))
	assert.False(t, none.has(hash(1), now))
}

package nilness

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

type thing struct{}

func (*thing) Do() {}

type doer interface{ Do() }

func TestIs(t *testing.T) {
	var p *thing
	var d doer = p
	var m map[string]int
	var f func()
	assert.True(t, Is(nil))
	assert.True(t, Is(p))
	assert.True(t, Is(d), "a typed nil pointer in an interface")
	assert.True(t, Is(m))
	assert.True(t, Is(f))
	assert.False(t, Is(&thing{}))
	assert.False(t, Is(thing{}))
	assert.False(t, Is(0))
	assert.False(t, Is(""))
	assert.False(t, Is(map[string]int{}))
}

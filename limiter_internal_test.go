package keyward

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func countCounters(m *memCounters) (n int) {
	m.m.Range(func(any, any) bool { n++; return true })
	return n
}

// The default store forgets the counters of ended windows, keeping the one
// just before the current window for requests whose clock read came just
// before the boundary.
func TestMemCountersForgetEndedWindows(t *testing.T) {
	var m memCounters
	for i := range 1000 {
		m.get("org:"+strconv.Itoa(i)+":100", 100).n.Add(1)
	}
	m.get("org:0:101", 101)
	require.Eventually(t, func() bool { return countCounters(&m) == 1001 }, time.Second, time.Millisecond,
		"window 100 is kept while 101 is current")
	m.get("org:0:102", 102)
	require.Eventually(t, func() bool { return countCounters(&m) == 2 }, 5*time.Second, time.Millisecond,
		"window 100 is forgotten once 102 is current")
	_, ok := m.m.Load("org:0:101")
	assert.True(t, ok, "the previous window's counter is kept")
}

// Every principal of an organization that asks for the counter of a
// window gets the same one, whatever the interleaving: no count is lost.
func TestMemCountersShareOneCounterPerKey(t *testing.T) {
	var m memCounters
	const workers, each = 32, 500
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				m.get("org:o:7", 7).n.Add(1)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(workers*each), m.get("org:o:7", 7).n.Load())
}

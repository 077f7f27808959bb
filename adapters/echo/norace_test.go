//go:build !race

package keywardecho_test

// raceEnabled: the race detector changes what escapes, so allocation
// budgets are not checked under it.
const raceEnabled = false

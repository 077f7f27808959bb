package sqlstore

import "testing"

// TestLeaseSize: the sizing rule, case by case. A lease is sized from
// recent use and the call's need, capped by a share of what the
// organization has available, and taken only when it is safe to serve
// calls from memory.
func TestLeaseSize(t *testing.T) {
	t.Parallel()
	rich := int64(1_000_000) // pool/leaseShare = 125,000: no cap below
	for _, c := range []struct {
		name string
		d    leaseDemand
		want int64
	}{
		{"a flush never starts a lease", leaseDemand{used: 10, pool: rich}, 0},
		{"a flush keeps 30 intervals of use", leaseDemand{used: 10, leased: true, pool: rich}, 300},
		{"an unused lease halves", leaseDemand{size: 400, leased: true, pool: rich}, 200},
		{"use beyond half the last size", leaseDemand{used: 10, size: 400, leased: true, pool: rich}, 300},
		{"a call starts a lease of 16 calls", leaseDemand{need: 5, pool: rich}, 80},
		{"a call that finds the lease short doubles it", leaseDemand{need: 5, size: 100, leased: true, pool: rich}, 200},
		{"recent use wins over doubling", leaseDemand{used: 100, need: 5, size: 100, leased: true, pool: rich}, 3000},
		{"at most an eighth of the pool", leaseDemand{need: 5, size: 1000, leased: true, pool: 800}, 100},
		{"an eighth too small for the call: exact", leaseDemand{need: 20, pool: 80}, 0},
		{"a pool below MinAvailable: exact", leaseDemand{need: 1, pool: 999, minAvail: 1000}, 0},
		{"the leases are recalled", leaseDemand{need: 1, pool: rich, recalled: true}, 0},
		{"the lease's period ended", leaseDemand{used: 10, leased: true, pool: rich, newPeriod: true}, 0},
		{"closing gives every lease back", leaseDemand{used: 10, leased: true, pool: rich, closing: true}, 0},
		{"an Adjust takes exactly what it needs", leaseDemand{need: 20, pool: 80, must: true}, 20},
		{"an Adjust below MinAvailable still reserves", leaseDemand{need: 20, pool: 80, minAvail: 1000, must: true}, 20},
		{"an Adjust never goes below the floor", leaseDemand{need: 81, pool: 80, must: true}, 0},
		{"an Adjust with overage goes below zero", leaseDemand{need: 81, pool: 80, floor: -100, must: true}, 81},
		{"an Adjust while the leases are recalled: exact", leaseDemand{need: 20, pool: 80, recalled: true, must: true}, 0},
		{"an Adjust covered by the rule takes the rule's size", leaseDemand{need: 5, pool: rich, must: true}, 80},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if got := leaseSize(c.d); got != c.want {
				t.Errorf("leaseSize(%+v) = %d, want %d", c.d, got, c.want)
			}
		})
	}
}

package sqlstore

// The sizing rule: how many credits a lease holds after a write.

// leaseShare: a lease takes at most 1/leaseShare of the credit available.
const leaseShare = 8

// leaseWrites: a lease holds what the last leaseWrites flush intervals
// used, so that a slow write (a SQLite checkpoint can take hundreds of
// milliseconds) does not leave calls waiting for the database.
const leaseWrites = 30

// leaseDemand is what a lease's size is decided from, at a write.
type leaseDemand struct {
	used      int64 // reserved from the lease since the last write
	need      int64 // what the call that writes needs; 0: a flush
	size      int64 // the free credits the last write aimed at
	leased    bool  // the instance holds a lease (its row is open)
	pool      int64 // what the instance could hold: the account's available credit and the lease's free part
	minAvail  int64 // LeaseOptions.MinAvailable
	floor     int64 // the account's lowest Available (credit.Account.MinAvailable)
	recalled  bool  // a call recalled the organization's leases
	newPeriod bool  // the lease belongs to a period that has ended
	closing   bool  // the Store is closing: every lease goes back
	must      bool  // an Adjust: exactly need when the rule gives less, as a reservation would
}

// leaseSize is the free credits a lease holds after a write: leaseWrites
// writes' worth of recent use, at least need; a call that found the lease
// short (need > 0) doubles it, an unused lease halves each write; at most
// 1/leaseShare of the pool. Nothing when that does not cover need (the
// call reserves exactly), when the pool is below minAvail, when the leases
// are recalled, for an ended period, while closing, and at a flush of an
// organization without a lease (calls start leases, a flush keeps them).
func leaseSize(d leaseDemand) int64 {
	want := max(leaseWrites*d.used, d.need, d.size/2)
	if d.need == 0 && !d.leased {
		want = 0
	}
	if d.need > 0 {
		want = max(want, 2*d.size, 16*d.need)
	}
	want = min(want, d.pool/leaseShare)
	if want < d.need || d.pool < d.minAvail || d.recalled || d.newPeriod || d.closing {
		want = 0
	}
	if d.must && want < d.need && !d.recalled && !d.newPeriod && d.pool-d.need >= d.floor {
		want = d.need
	}
	return want
}

package hooks

import "github.com/keyward/keyward/credit"

// Tracked returns how many reservations the wrapper l counts open.
func Tracked(l credit.Ledger) int64 { return l.(*ledger).tracked.Load() }

//go:build !keyward_notelemetry

package hooks

// compiled is false in a build with the tag keyward_notelemetry: every
// hook then returns at once and Ledger wraps nothing, so that such a build
// is the same chain without telemetry, the baseline scripts/bench-telemetry
// measures against.
const compiled = true

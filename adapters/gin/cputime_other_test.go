//go:build !unix

package keywardgin_test

// processCPU cannot be read here: the benchmarks report wall time only.
func processCPU() (ns int64, ok bool) { return 0, false }

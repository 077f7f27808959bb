// Package bench measures keyward side by side with what its users would
// otherwise pick: ulule/limiter's stdlib middleware, go-chi/httprate, and
// a hand-written floor. It is its own module so that the peers it imports
// never reach the go.mod of the library.
//
// Run it with `make bench` at the repository root, or:
//
//	go test -run '^$' -bench . -benchmem -count 10 . | tee bench.txt
//	go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da -col /impl bench.txt
package bench

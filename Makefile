# Every module in the repository: the core at the root and each adapter in
# its own go.mod. A root-only `go test ./...` would skip nested modules.
MODULES := $(shell git ls-files --cached --others --exclude-standard -- 'go.mod' '*/go.mod' 2>/dev/null | xargs -n1 dirname | sort -u)
GO ?= go
BENCHSTAT := golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
BENCH ?= .
COUNT ?= 10

.PHONY: test bench loadtest fmt

## test: gofmt check, go vet, the race-enabled tests of every module, then
## the allocation budgets (tests named *Alloc*), which only hold without -race
test:
	@unformatted=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard -- '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	@set -e; for m in $(MODULES); do \
		echo "== $$m"; \
		(cd $$m && $(GO) vet ./... && $(GO) test -race -shuffle=on -count=1 ./... && \
			$(GO) test -count=1 -run Alloc ./...); \
	done

## bench: every benchmark of every module, -count $(COUNT), summarised by benchstat
bench:
	@mkdir -p bench/results
	@set -e; : > bench/results/latest.txt; for m in $(MODULES); do \
		(cd $$m && $(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count $(COUNT) ./...) | tee -a bench/results/latest.txt; \
	done
	$(GO) run $(BENCHSTAT) bench/results/latest.txt | tee bench/results/summary.txt

## loadtest: keyward serve on loopback under wrk (scripts/loadtest/run; installs wrk if missing)
loadtest:
	bash scripts/loadtest/run

fmt:
	gofmt -w $$(git ls-files --cached --others --exclude-standard -- '*.go')

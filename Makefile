# Every module in the repository: the core at the root and each adapter in
# its own go.mod. A root-only `go test ./...` would skip nested modules.
MODULES := $(shell git ls-files --cached --others --exclude-standard -- 'go.mod' '*/go.mod' 2>/dev/null | xargs -n1 dirname | sort -u)
GO ?= go
BENCHSTAT := golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
BENCH ?= .
COUNT ?= 10

.PHONY: test modcheck bench loadtest fmt

## test: gofmt check, go vet, the race-enabled tests of every module, then
## the allocation budgets (tests named *Alloc*), which only hold without -race
test: modcheck
	@unformatted=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard -- '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	@set -e; for m in $(MODULES); do \
		echo "== $$m"; \
		(cd $$m && $(GO) vet ./... && $(GO) test -race -shuffle=on -count=1 ./... && \
			$(GO) test -count=1 -run Alloc ./...); \
	done

## modcheck: modules found; no go.mod with a replace directive or a
## placeholder version (Go ignores a dependency's replace, so its users would
## build something else than what was tested: go.work ties the modules
## together instead); and each module resolving the core to this checkout
## through go.work, so that every module is tested against the core at HEAD
modcheck:
	@if [ -z "$(strip $(MODULES))" ]; then \
		echo "make: no go.mod found under $(CURDIR): nothing to test" >&2; exit 1; fi
	@fail=0; root=$$(pwd); for m in $(MODULES); do \
		if (cd $$m && $(GO) mod edit -json) | grep -q '"Replace": \['; then \
			echo "$$m/go.mod: a replace directive, which the module's users never see (see RELEASING.md)" >&2; fail=1; fi; \
		if grep -q 'v0\.0\.0-00010101000000-000000000000' $$m/go.mod; then \
			echo "$$m/go.mod: requires a placeholder version; require a release (see RELEASING.md)" >&2; fail=1; fi; \
		if ! dir=$$(cd $$m && $(GO) list -m -f '{{.Dir}}' github.com/keyward/keyward); then fail=1; \
		elif [ "$$dir" != "$$root" ]; then \
			echo "$$m: the core resolves to '$$dir', not this checkout: add $$m to go.work, and leave GOWORK unset" >&2; fail=1; fi; \
	done; exit $$fail

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

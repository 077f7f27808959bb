# Every module in the repository: the core at the root, the gin and echo
# adapters and bench/, each with its own go.mod and tied together by go.work
# (a root-only `go test ./...` would skip the nested modules). In a git
# checkout the list comes from git (untracked modules too, ignored ones
# not); elsewhere, such as an exported copy, from the file tree. `make test`
# refuses to run when it finds none. Set MODULES to test a subset:
# make test MODULES=adapters/gin
files = $(shell git ls-files --cached --others --exclude-standard -- $(1) 2>/dev/null || \
	find . -name .git -prune -o -type f -name '$(2)' -print | sed 's|^\./||')
MODULES := $(sort $(patsubst %/,%,$(dir $(call files,'go.mod' '*/go.mod',go.mod))))
GO_FILES = $(call files,'*.go',*.go)
GO ?= go
BENCHSTAT := golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
BENCH ?= .
COUNT ?= 10
# RACE= runs the tests without the race detector (a machine without cgo).
RACE ?= -race

.PHONY: test modcheck bench loadtest fmt

## test: gofmt check, go vet, the race-enabled tests of every module, then
## the allocation budgets (tests named *Alloc*), which only hold without
## -race. Each pass runs with -json through .ci/testsum, which prints what
## `go test` prints without -v and ends with every test that was skipped
## (a backend whose variable is unset, say) and why.
test: modcheck
	@unformatted=$$(gofmt -l $(GO_FILES)); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	@if [ -n "$(RACE)" ] && [ "$$($(GO) env CGO_ENABLED)" != 1 ]; then \
		echo "make test: -race needs cgo: install a C compiler (gcc or clang) and set CGO_ENABLED=1, or run make test RACE=" >&2; exit 1; fi
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(GO) vet ./.ci/testsum; out=$$($(GO) test -count=1 ./.ci/testsum) || { echo "$$out"; exit 1; }; \
	$(GO) build -o "$$tmp/testsum" ./.ci/testsum; \
	for m in $(MODULES); do \
		echo "== $$m"; \
		(cd $$m && $(GO) vet ./... && $(GO) test $(RACE) -shuffle=on -count=1 -json ./... && \
			$(GO) test -count=1 -run Alloc -json ./...) || { echo "FAIL $$m: go vet or go test failed"; break; }; \
	done | "$$tmp/testsum"

## modcheck: modules found; no go.mod with a replace directive or a
## placeholder version (Go ignores a dependency's replace, so its users would
## build something else than what was tested: go.work ties the modules
## together instead); and each module in go.work and resolving the core to
## this checkout, so that every module is tested against the core at HEAD
modcheck:
	@if [ -z "$(strip $(MODULES))" ]; then \
		echo "make: no go.mod found under $(CURDIR): nothing to test" >&2; exit 1; fi
	@fail=0; root=$$(pwd); workspace=$$($(GO) list -m -f '{{.Dir}}'); for m in $(MODULES); do \
		if (cd $$m && $(GO) mod edit -json) | grep -q '"Replace": \['; then \
			echo "$$m/go.mod: a replace directive, which the module's users never see (see RELEASING.md)" >&2; fail=1; fi; \
		if grep -q 'v0\.0\.0-00010101000000-000000000000' $$m/go.mod; then \
			echo "$$m/go.mod: requires a placeholder version; require a release (see RELEASING.md)" >&2; fail=1; fi; \
		if ! echo "$$workspace" | grep -qxF "$$(cd $$m && pwd)"; then \
			echo "$$m: not in the workspace: add it to go.work, and leave GOWORK unset" >&2; fail=1; \
		elif ! dir=$$(cd $$m && $(GO) list -m -f '{{.Dir}}' github.com/keyward/keyward); then fail=1; \
		elif [ "$$dir" != "$$root" ]; then \
			echo "$$m: the core resolves to '$$dir', not this checkout (see go.work)" >&2; fail=1; fi; \
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
	gofmt -w $(GO_FILES)

// Command testsum reads `go test -json` streams on stdin and prints what
// `go test` prints without -v — one line per package that passed, the
// whole output of what failed — then every test that was skipped in every
// pass it ran in, grouped by the reason it gave. `make test` pipes each
// module's race pass and allocation pass through it, so that a test that
// did not run because a server was missing says so at the end of the run
// without -v.
//
// Lines that are not JSON (`== module` headers) are printed as they come;
// one that starts with FAIL (make's word for a module whose go vet or go
// test failed) fails the run. The exit status is 1 when a test, a package,
// a build or a module failed, or when no package was tested at all.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
)

// event is one line of test2json output (go doc test2json).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string // build-output and build-fail
}

// pkgState is what one package has printed so far in one pass.
type pkgState struct {
	output []string            // package-level lines
	tests  map[string][]string // per-test lines, until the test ends
	order  []string            // tests in the order they started
	done   map[string]bool     // tests that passed or were skipped
}

type summary struct {
	out     io.Writer
	pkgs    map[string]*pkgState
	ran     map[string]bool   // "pkg test" that passed or failed in some pass
	skipped map[string]string // "pkg test" → reason, for each skip seen
	tested  int               // packages with a result
	passed  int               // tests that passed, over every pass
	failed  bool
}

func newSummary(out io.Writer) *summary {
	return &summary{out: out, pkgs: map[string]*pkgState{}, ran: map[string]bool{}, skipped: map[string]string{}}
}

func (s *summary) pkg(name string) *pkgState {
	p := s.pkgs[name]
	if p == nil {
		p = &pkgState{tests: map[string][]string{}, done: map[string]bool{}}
		s.pkgs[name] = p
	}
	return p
}

// line handles one line of input.
func (s *summary) line(l string) {
	var e event
	if !strings.HasPrefix(l, "{") || json.Unmarshal([]byte(l), &e) != nil || e.Action == "" {
		fmt.Fprintln(s.out, l)
		if strings.HasPrefix(l, "FAIL") {
			s.failed = true
		}
		return
	}
	switch e.Action {
	case "build-output":
		fmt.Fprint(s.out, e.Output)
		return
	case "build-fail":
		s.failed = true
		return
	}
	p := s.pkg(e.Package)
	key := e.Package + " " + e.Test
	switch {
	case e.Action == "output" && e.Test == "":
		p.output = append(p.output, e.Output)
	case e.Action == "output":
		if _, ok := p.tests[e.Test]; !ok {
			p.order = append(p.order, e.Test)
		}
		p.tests[e.Test] = append(p.tests[e.Test], e.Output)
	case e.Test != "" && e.Action == "pass":
		s.ran[key] = true
		s.passed++
		p.done[e.Test] = true
		delete(p.tests, e.Test)
	case e.Test != "" && e.Action == "fail":
		s.ran[key] = true
		s.failed = true
	case e.Test != "" && e.Action == "skip":
		s.skipped[key] = reason(p.tests[e.Test])
		p.done[e.Test] = true
		delete(p.tests, e.Test)
	case e.Test == "" && (e.Action == "pass" || e.Action == "skip" || e.Action == "fail"):
		s.tested++
		if e.Action == "fail" {
			s.failed = true
			// What `go test` shows of a failed package: the output of every
			// test that did not pass (a failure, or a panic or timeout in
			// the middle of one), then the package's own lines.
			for _, t := range p.order {
				if !p.done[t] {
					for _, o := range p.tests[t] {
						if !strings.HasPrefix(o, "=== ") {
							fmt.Fprint(s.out, o)
						}
					}
				}
			}
			for _, o := range p.output {
				if !strings.HasPrefix(o, "=== ") {
					fmt.Fprint(s.out, o)
				}
			}
		} else if n := len(p.output); n > 0 {
			fmt.Fprint(s.out, p.output[n-1]) // ok … or ? … [no test files]
		}
		delete(s.pkgs, e.Package)
	}
}

var fileLine = regexp.MustCompile(`^[\w.-]+\.go:\d+: `)

// reason is what a skipped test said, without the framing lines.
func reason(lines []string) string {
	var r []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		r = append(r, fileLine.ReplaceAllString(t, ""))
	}
	if len(r) == 0 {
		return "(no reason given)"
	}
	return strings.Join(r, " ")
}

// report prints the tests that were skipped in every pass they ran in,
// grouped by reason, and returns the exit status.
func (s *summary) report() int {
	byReason := map[string]map[string][]string{} // reason → package → tests
	n := 0
	for key, why := range s.skipped {
		if s.ran[key] {
			continue // skipped in one pass, run in another (allocation tests under -race)
		}
		pkg, test, _ := strings.Cut(key, " ")
		if byReason[why] == nil {
			byReason[why] = map[string][]string{}
		}
		byReason[why][pkg] = append(byReason[why][pkg], test)
		n++
	}
	if n > 0 {
		fmt.Fprintf(s.out, "\n%d tests skipped:\n", n)
		for _, why := range slices.Sorted(maps.Keys(byReason)) {
			fmt.Fprintf(s.out, "  %s\n", why)
			for _, pkg := range slices.Sorted(maps.Keys(byReason[why])) {
				tests := byReason[why][pkg]
				slices.Sort(tests)
				fmt.Fprint(s.out, wrap("    "+pkg+": ", tests, 100))
			}
		}
	}
	switch {
	case s.failed:
		fmt.Fprintln(s.out, "\nFAIL")
		return 1
	case s.tested == 0:
		fmt.Fprintln(s.out, "\nFAIL: no package was tested")
		return 1
	}
	fmt.Fprintf(s.out, "\nPASS: %d tests and subtests passed in %d package runs; %d skipped\n", s.passed, s.tested, n)
	fmt.Fprintf(s.out, "tests: %d passed, 0 failed, %d skipped\n", s.passed, n) // the plain closing line
	return 0
}

// wrap lists names after head, comma-separated, in lines of at most width
// bytes (a longer name gets a line of its own), continued under head.
func wrap(head string, names []string, width int) string {
	var b strings.Builder
	line := head
	for i, n := range names {
		if i < len(names)-1 {
			n += ","
		}
		if line != head && len(line)+1+len(n) > width {
			b.WriteString(strings.TrimRight(line, " ") + "\n")
			line = strings.Repeat(" ", 6)
		} else if line != head {
			line += " "
		}
		line += n
	}
	return b.String() + line + "\n"
}

func run(in io.Reader, out io.Writer) int {
	s := newSummary(out)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		s.line(sc.Text())
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(out, "testsum:", err)
		return 1
	}
	return s.report()
}

func main() { os.Exit(run(os.Stdin, os.Stdout)) }

package keyward_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The root package is kept small enough to read: the budgets are product
// decisions, written down in BENCHMARKS.md and checked here rather
// than claimed. Mechanisms go to internal/, concepts to their own package
// (credit, manage, rate) before the root outgrows them.
const (
	maxRootLines    = 2750 // lines of the non-test Go files but doc.go, as wc -l counts them
	maxRootExported = 90   // exported top-level identifiers
)

func TestRootPackageStaysSmall(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	lines := 0
	var exported []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if name != "doc.go" { // the package's documentation and map: no code
			lines += strings.Count(string(src), "\n")
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil && d.Name.IsExported() {
					exported = append(exported, d.Name.Name)
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							exported = append(exported, s.Name.Name)
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() {
								exported = append(exported, n.Name)
							}
						}
					}
				}
			}
		}
	}
	sort.Strings(exported)
	t.Logf("root package: %d lines, %d exported identifiers", lines, len(exported))
	if lines > maxRootLines {
		t.Errorf("root package has %d lines of non-test Go; the budget is %d", lines, maxRootLines)
	}
	if len(exported) > maxRootExported {
		t.Errorf("root package exports %d top-level identifiers; the budget is %d:\n%s", len(exported), maxRootExported, strings.Join(exported, " "))
	}
}

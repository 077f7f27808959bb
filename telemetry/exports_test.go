package telemetry_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPublicPackageIsConfigurationAndNames: package telemetry is what a
// host needs to point keyward's instrumentation somewhere and to read what
// it reports: Config and Configure, the scope name, the metric and
// attribute names. The hooks keyward's own packages call are internal.
func TestPublicPackageIsConfigurationAndNames(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var names, funcs []string
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil && d.Name.IsExported() {
					names, funcs = append(names, d.Name.Name), append(funcs, d.Name.Name)
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							names = append(names, s.Name.Name)
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() {
								names = append(names, n.Name)
							}
						}
					}
				}
			}
		}
	}
	if len(names) > 30 {
		t.Errorf("package telemetry exports %d names, want ≤ 30: %v", len(names), names)
	}
	if len(funcs) != 1 || funcs[0] != "Configure" {
		t.Errorf("package telemetry's functions are %v, want only Configure", funcs)
	}
}

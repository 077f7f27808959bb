package keyward_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Budgets a reader feels, over every module of the repository: product
// decisions, written down once in BENCHMARKS.md and checked here rather
// than claimed. A file or function over budget is split by concept (a rule
// as a pure function with its table test, the state, the transactions);
// a line count never decides where code lives.
const (
	maxRootExported = 90  // exported top-level identifiers of the root package
	maxFileLines    = 700 // lines of any non-test, non-generated Go file
	maxFuncLines    = 80  // lines of any function outside cmd/ and the test kits
)

// funcBudgetExempt are the directories whose functions may run long: the
// CLI (a command reads top to bottom) and the test kits (a contract suite
// is a list of cases).
var funcBudgetExempt = []string{"cmd", "keywardtest", filepath.Join("internal", "testenv")}

// sourceFiles returns every non-test, non-generated Go file of the
// repository (all modules), relative to the root.
func sourceFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != "." && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestSizeBudgets(t *testing.T) {
	fset := token.NewFileSet()
	var exported []string
	for _, path := range sourceFiles(t) {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		if ast.IsGenerated(f) {
			continue
		}
		if n := strings.Count(string(src), "\n"); n > maxFileLines {
			t.Errorf("%s has %d lines; the budget is %d a file", path, n, maxFileLines)
		}
		if !funcBudgetExemptPath(path) {
			for _, d := range f.Decls {
				fn, ok := d.(*ast.FuncDecl)
				if !ok || fn.Body == nil {
					continue
				}
				if n := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1; n > maxFuncLines {
					t.Errorf("%s: %s has %d lines; the budget is %d a function", path, funcName(fn), n, maxFuncLines)
				}
			}
		}
		if filepath.Dir(path) == "." {
			exported = append(exported, exportedNames(f)...)
		}
	}
	sort.Strings(exported)
	t.Logf("root package: %d exported identifiers", len(exported))
	if len(exported) > maxRootExported {
		t.Errorf("root package exports %d top-level identifiers; the budget is %d:\n%s", len(exported), maxRootExported, strings.Join(exported, " "))
	}
}

func funcBudgetExemptPath(path string) bool {
	for _, dir := range funcBudgetExempt {
		if path == dir || strings.HasPrefix(path, dir+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// funcName is "Recv.Name" for a method, "Name" for a function.
func funcName(fn *ast.FuncDecl) string {
	if fn.Recv == nil || len(fn.Recv.List) == 0 {
		return fn.Name.Name
	}
	typ := fn.Recv.List[0].Type
	for {
		switch x := typ.(type) {
		case *ast.StarExpr:
			typ = x.X
			continue
		case *ast.IndexExpr:
			typ = x.X
			continue
		case *ast.IndexListExpr:
			typ = x.X
			continue
		case *ast.Ident:
			return x.Name + "." + fn.Name.Name
		}
		return fn.Name.Name
	}
}

// exportedNames returns f's exported top-level identifiers (methods are
// not counted: they belong to their type).
func exportedNames(f *ast.File) []string {
	var names []string
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Recv == nil && d.Name.IsExported() {
				names = append(names, d.Name.Name)
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
	return names
}

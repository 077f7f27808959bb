package keyward_test

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// readmeSnippet is one ```go block of README.md.
type readmeSnippet struct {
	line   int    // README.md line of the block's first line of code
	code   string // the block, its fence's indentation removed
	before string // the Markdown between the previous block and this one
}

// readmeSnippets returns every ```go block of a Markdown text, in order.
// A block may be indented (inside a list item); its fence's indentation is
// removed from every line. Blocks of other languages are ignored.
func readmeSnippets(text string) ([]readmeSnippet, error) {
	var (
		out    []readmeSnippet
		cur    *readmeSnippet
		indent string
		other  bool // inside a block of another language
		lines  []string
		prose  strings.Builder // Markdown since the last block
	)
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur != nil && trimmed == "```":
			cur.code = strings.Join(lines, "\n") + "\n"
			out = append(out, *cur)
			cur, lines = nil, nil
		case cur != nil:
			lines = append(lines, strings.TrimPrefix(line, indent))
		case other && trimmed == "```":
			other = false
		case other:
		case trimmed == "```go":
			indent = line[:strings.Index(line, "```")]
			cur = &readmeSnippet{line: n + 1, before: prose.String()}
			prose.Reset()
		case strings.HasPrefix(trimmed, "```"):
			other = true
		default:
			prose.WriteString(line + "\n")
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur != nil {
		return nil, fmt.Errorf("README.md:%d: the ```go block is never closed", cur.line-1)
	}
	return out, nil
}

// nestedModule is a module of the repository other than the root one (the
// gin and echo adapters): a snippet that imports it gets a replace to it.
type nestedModule struct {
	path, dir string
}

func readmeNestedModules(t *testing.T, root string) []nestedModule {
	t.Helper()
	var mods []nestedModule
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || d.Name() != "go.mod" || filepath.Dir(p) == root {
			return nil
		}
		path, err := readmeModulePath(p)
		if err != nil {
			return err
		}
		mods = append(mods, nestedModule{path: path, dir: filepath.Dir(p)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return mods
}

// readmeModulePath returns the module path a go.mod declares.
func readmeModulePath(gomod string) (string, error) {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`), nil
		}
	}
	return "", fmt.Errorf("%s: no module line", gomod)
}

// readmeGoVersion returns the go line of a go.mod ("1.26.0").
func readmeGoVersion(gomod string) (string, error) {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "go" {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("%s: no go line", gomod)
}

// readmeImports reports whether code imports a package of module path.
func readmeImports(code, path string) bool {
	return strings.Contains(code, `"`+path+`"`) || strings.Contains(code, `"`+path+`/`)
}

// readmeWarmUp vets the packages the snippets import, with one go command
// per module of this repository, before the snippets are vetted in
// parallel: on a cold build cache, parallel go commands would each compile
// and vet the same dependencies (the SQLite driver alone takes a minute).
// A failure here is left for the snippets' own builds to report.
func readmeWarmUp(t *testing.T, goBin, root string, nested []nestedModule, snippets []readmeSnippet) {
	t.Helper()
	// The adapters' module paths extend the root's: look at them first.
	mods := append(slices.Clone(nested), nestedModule{path: "github.com/keyward/keyward", dir: root})
	byDir := map[string][]string{}
	var dirs []string
	for _, s := range snippets {
		f, err := parser.ParseFile(token.NewFileSet(), "main.go", s.code, parser.ImportsOnly)
		if err != nil {
			continue
		}
		for _, imp := range f.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				continue
			}
			dir := ""
			for _, m := range mods {
				if path == m.path || strings.HasPrefix(path, m.path+"/") {
					dir = m.dir
					break
				}
			}
			if dir == "" || slices.Contains(byDir[dir], path) {
				continue
			}
			if byDir[dir] == nil {
				dirs = append(dirs, dir)
			}
			byDir[dir] = append(byDir[dir], path)
		}
	}
	for _, dir := range dirs {
		cmd := exec.Command(goBin, append([]string{"vet"}, byDir[dir]...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("warming the build cache in %s: %v\n%s", dir, err, out)
		}
	}
}

// readmeDocs are the Markdown files whose programs go test builds: the
// README, the guides in docs/ and the adapters' READMEs.
func readmeDocs(t *testing.T) []string {
	t.Helper()
	docs := []string{"README.md"}
	for _, pattern := range []string{"docs/*.md", "adapters/README.md", "adapters/*/README.md"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, m...)
	}
	return docs
}

// readmeDocSnippets returns the ```go blocks of every document, each
// with the document it came from.
func readmeDocSnippets(t *testing.T, root string) map[string][]readmeSnippet {
	t.Helper()
	out := map[string][]readmeSnippet{}
	for _, doc := range readmeDocs(t) {
		text, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Fatal(err)
		}
		snippets, err := readmeSnippets(string(text))
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		out[doc] = snippets
	}
	return out
}

var readmeMainGoLine = regexp.MustCompile(`(?:\./)?\bmain\.go:(\d+)`)

// TestREADMESnippetsCompile builds every ```go block of README.md, of
// docs/*.md and of the adapters' READMEs that is a program (package main)
// as a program of its own, against this checkout (and its adapter
// modules), so that each compiles as pasted. A block that is not a program
// is an Example function's source, which TestDocsShowExamples checks.
func TestREADMESnippetsCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every Go snippet of README.md and docs/ with the go command; skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH, so README.md's snippets cannot be built: ", err)
	}
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	byDoc := readmeDocSnippets(t, root)
	if len(byDoc["README.md"]) == 0 {
		t.Fatal("README.md has no ```go block")
	}
	goVersion, err := readmeGoVersion(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	nested := readmeNestedModules(t, root)
	env := append(os.Environ(), "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"), "GOWORK=off")

	var all []readmeSnippet
	for _, doc := range readmeDocs(t) {
		for _, s := range byDoc[doc] {
			if readmeIsProgram(s.code) {
				all = append(all, s)
			}
		}
	}
	readmeWarmUp(t, goBin, root, nested, all)

	for _, doc := range readmeDocs(t) {
		for _, s := range byDoc[doc] {
			if readmeIsProgram(s.code) { // an Example's source: TestDocsShowExamples
				readmeBuild(t, goBin, root, doc, s, goVersion, nested, env)
			}
		}
	}
}

// readmeBuild builds one ```go block of doc in a module of its own.
func readmeBuild(t *testing.T, goBin, root, doc string, s readmeSnippet, goVersion string, nested []nestedModule, env []string) {
	t.Helper()
	t.Run(strings.TrimSuffix(doc, ".md")+":"+strconv.Itoa(s.line), func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		mods := []nestedModule{{path: "github.com/keyward/keyward", dir: root}}
		for _, m := range nested {
			if readmeImports(s.code, m.path) {
				mods = append(mods, m)
			}
		}
		var gomod, gosum strings.Builder
		fmt.Fprintf(&gomod, "module snippet\n\ngo %s\n", goVersion)
		var sums []string
		for _, m := range mods {
			fmt.Fprintf(&gomod, "\nrequire %s v0.0.0\n\nreplace %s => %s\n", m.path, m.path, m.dir)
			// The modules' own checksums: nothing to look up for the
			// modules they need.
			b, err := os.ReadFile(filepath.Join(m.dir, "go.sum"))
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			sums = append(sums, strings.Split(strings.TrimSpace(string(b)), "\n")...)
		}
		slices.Sort(sums)
		for _, l := range slices.Compact(sums) {
			if l != "" {
				gosum.WriteString(l + "\n")
			}
		}
		for name, content := range map[string]string{"go.mod": gomod.String(), "go.sum": gosum.String(), "main.go": s.code} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command(goBin, "vet", ".")
		cmd.Dir = dir
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			// Point at README.md's lines rather than the copy's.
			msg := readmeMainGoLine.ReplaceAllStringFunc(string(out), func(m string) string {
				n, _ := strconv.Atoi(readmeMainGoLine.FindStringSubmatch(m)[1])
				return doc + ":" + strconv.Itoa(s.line+n-1)
			})
			t.Errorf("%s:%d: the ```go block does not build as pasted (go vet: %v):\n%s", doc, s.line, err, msg)
		}
	})
}

// TestREADMEProgramsShutDown: a program of the README or docs/ that defers
// a call never serves through log.Fatal or os.Exit, which skip the
// deferred calls (a store's Close flushes usage counters and returns leased
// credits), and the README's program shows the shutdown itself:
// signal.NotifyContext, then Server.Shutdown.
func TestREADMEProgramsShutDown(t *testing.T) {
	shown := false
	for doc, snippets := range readmeDocSnippets(t, ".") {
		for _, s := range snippets {
			if !readmeIsProgram(s.code) {
				continue // an Example: it serves nothing
			}
			f, err := parser.ParseFile(token.NewFileSet(), "main.go", s.code, 0)
			if err != nil {
				t.Fatalf("%s:%d: %v", doc, s.line, err)
			}
			deferred, calls := false, map[string]bool{}
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.DeferStmt:
					deferred = true
				case *ast.CallExpr:
					sel, ok := n.Fun.(*ast.SelectorExpr)
					if !ok {
						return true
					}
					calls[sel.Sel.Name] = true
					pkg, _ := sel.X.(*ast.Ident)
					if pkg == nil || !(pkg.Name == "log" && strings.HasPrefix(sel.Sel.Name, "Fatal") || pkg.Name == "os" && sel.Sel.Name == "Exit") {
						return true
					}
					ast.Inspect(n, func(m ast.Node) bool {
						if c, ok := m.(*ast.CallExpr); ok {
							if sel, ok := c.Fun.(*ast.SelectorExpr); ok && strings.HasPrefix(sel.Sel.Name, "ListenAndServe") && deferred {
								t.Errorf("%s:%d: %s.%s(…%s…) skips the deferred calls above it", doc, s.line, pkg.Name, n.Fun.(*ast.SelectorExpr).Sel.Name, sel.Sel.Name)
							}
						}
						return true
					})
				}
				return true
			})
			shown = shown || doc == "README.md" && calls["NotifyContext"] && calls["Shutdown"]
		}
	}
	if !shown {
		t.Error("the README's program does not show a shutdown (signal.NotifyContext, Server.Shutdown)")
	}
}

// readmeIsProgram reports whether a ```go block is a program (it starts
// with a package clause, after comments) rather than an Example function.
func readmeIsProgram(code string) bool {
	_, err := parser.ParseFile(token.NewFileSet(), "main.go", code, parser.PackageClauseOnly)
	return err == nil
}

// readmeExampleLink finds the file an Example's block comes from: the last
// Markdown link to a _test.go file before the block.
var readmeExampleLink = regexp.MustCompile(`\]\(([^)\s]+_test\.go)\)`)

// TestDocsShowExamples: a ```go block of the README, docs/*.md or the
// adapters' READMEs that is not a program is an Example function that go
// test runs (its output checked), shown as it is written: the block must be
// the function, doc comment included, exactly as in the _test.go file the
// last link before the block names (relative to the document). So the
// documentation says what the example does, once, and go test proves it.
func TestDocsShowExamples(t *testing.T) {
	shown := 0
	for doc, snippets := range readmeDocSnippets(t, ".") {
		for _, s := range snippets {
			if readmeIsProgram(s.code) {
				continue
			}
			shown++
			links := readmeExampleLink.FindAllStringSubmatch(s.before, -1)
			if len(links) == 0 {
				t.Errorf("%s:%d: the ```go block is neither a program (package main) nor after a link "+
					"to the _test.go file whose Example it shows", doc, s.line)
				continue
			}
			file := filepath.Join(filepath.Dir(doc), filepath.FromSlash(links[len(links)-1][1]))
			want := readmeExampleSource(t, file, s.code)
			if want == "" {
				t.Errorf("%s:%d: %s has no Example function named as the block's", doc, s.line, file)
				continue
			}
			if got := strings.TrimSpace(s.code); got != want {
				t.Errorf("%s:%d: the block differs from the Example in %s; paste it again:\n%s", doc, s.line, file, want)
			}
		}
	}
	if shown == 0 {
		t.Error("no document shows an Example")
	}
}

// readmeExampleSource returns the source of the Example function of file
// that block declares (found by name), from its doc comment to its closing
// brace; "" if there is none.
func readmeExampleSource(t *testing.T, file, block string) string {
	t.Helper()
	name := regexp.MustCompile(`(?m)^func (Example\w*)\(\)`).FindStringSubmatch(block)
	if name == nil {
		return ""
	}
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, src, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Recv != nil || fn.Name.Name != name[1] {
			continue
		}
		start := fn.Pos()
		if fn.Doc != nil {
			start = fn.Doc.Pos()
		}
		return strings.TrimSpace(string(src[fset.Position(start).Offset:fset.Position(fn.End()).Offset]))
	}
	return ""
}

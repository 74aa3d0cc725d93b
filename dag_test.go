package dbsync_test

import (
	"bufio"
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/go-dbsync/dbsync"

// layers is the import DAG of the module (reference: aesthetics.md §4):
// for each package, the module packages its non-test files may import.
var layers = map[string][]string{
	"internal/wire":       {},
	"protocol":            {"internal/wire", "internal/signing"},
	"models":              {"protocol"},
	"migrations":          {},
	"internal/rowcodec":   {"internal/wire", "protocol"},
	"":                    {"models", "protocol", "internal/wire", "internal/rowcodec"},
	"internal/dialect":    {"internal/wire"},
	"internal/spool":      {},
	"internal/stats":      {},
	"internal/procmem":    {},
	"internal/store":      {"", "protocol", "internal/dialect", "models"},
	"oplog":               {"", "protocol", "models", "internal/dialect", "internal/store", "migrations"},
	"merge":               {"protocol"},
	"server":              {"", "protocol", "models", "oplog", "migrations", "internal/dialect", "internal/store", "internal/signing"},
	"client":              {"", "protocol", "models", "oplog", "merge", "migrations", "internal/dialect", "internal/store", "internal/spool", "internal/httpclient"},
	"internal/httpx":      {"", "protocol", "internal/spool", "internal/dialect"},
	"internal/httpclient": {"", "protocol"},
	"internal/signing":    {},
	"handlers":            {"", "protocol", "server", "models", "internal/httpx"},
	"peer":                {"", "protocol", "internal/wire", "internal/dialect", "internal/store", "internal/signing", "internal/spool", "migrations"},
	"peer/peerhttp":       {"", "protocol", "peer", "internal/httpx", "internal/httpclient", "internal/signing", "internal/spool"},
	"stream":              {"", "protocol", "peer", "internal/spool"},
	"internal/dbtest":     {"internal/procmem"},
	"internal/testmodels": {},
}

// forbidden lists standard and third-party packages a package must not
// depend on, directly or through other packages (go list's Deps). A path
// ending in /... also forbids the packages under it, as in go list
// patterns. database/sql/driver (interfaces only) is allowed: it comes
// with github.com/google/uuid.
var forbidden = map[string][]string{
	"internal/wire":    {"database/sql", "net/http", "github.com/uptrace/bun/...", "github.com/go-chi/chi/v5/..."},
	"internal/signing": {"database/sql", "net/http", "github.com/uptrace/bun/...", "github.com/go-chi/chi/v5/..."},
	"protocol":         {"database/sql", "net/http", "github.com/uptrace/bun/...", "github.com/go-chi/chi/v5/..."},
	"merge":            {"database/sql", "net/http", "github.com/uptrace/bun/...", "github.com/go-chi/chi/v5/..."},
	"":                 {"net/http", "github.com/go-chi/chi/v5/..."},
	"server":           {"net/http", "github.com/go-chi/chi/v5/..."},
	"peer":             {"net/http", "github.com/go-chi/chi/v5/..."},
	"handlers":         {"github.com/go-dbsync/dbsync/peer/..."},
	"client":           {"github.com/go-chi/chi/v5/..."},
}

func isForbidden(pkg, dep string) bool {
	for _, f := range forbidden[pkg] {
		tree, isTree := strings.CutSuffix(f, "/...")
		if dep == f || isTree && (dep == tree || strings.HasPrefix(dep, tree+"/")) {
			return true
		}
	}
	return false
}

// testOnly packages may be imported only by test files.
var testOnly = []string{"internal/dbtest", "internal/testmodels", "internal/synctest"}

func TestImportDAG(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}|{{join .Imports \" \"}}|{{join .Deps \" \"}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	seen := map[string]bool{}
	for sc.Scan() {
		parts := strings.Split(sc.Text(), "|")
		if len(parts) != 3 {
			t.Fatalf("go list: unexpected line %q", sc.Text())
		}
		path, imports, deps := parts[0], strings.Fields(parts[1]), strings.Fields(parts[2])
		pkg := rel(path)
		seen[pkg] = true
		allowed, layered := layers[pkg]
		isExample := strings.HasPrefix(pkg, "examples/") || strings.HasPrefix(pkg, "cmd/") || strings.HasPrefix(pkg, "internal/synctest")
		for _, dep := range deps {
			if isForbidden(pkg, dep) {
				t.Errorf("%s depends on %s, which its layer forbids", path, dep)
			}
			if (dep == module || strings.HasPrefix(dep, module+"/")) && slices.Contains(testOnly, rel(dep)) && !slices.Contains(testOnly, pkg) {
				t.Errorf("%s depends on test-only package %s", path, dep)
			}
		}
		for _, imp := range imports {
			if imp != module && !strings.HasPrefix(imp, module+"/") {
				continue
			}
			dep := rel(imp)
			switch {
			case layered && !slices.Contains(allowed, dep):
				t.Errorf("%s must not import %s (allowed: %q)", path, imp, allowed)
			case !layered && !isExample:
				t.Errorf("package %s has no layer in the import DAG; add it to layers", path)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for pkg := range layers {
		if !seen[pkg] && !slices.Contains(testOnly, pkg) {
			t.Errorf("layer %q names no package", pkg)
		}
	}
}

// maxRootExported bounds the exported top-level names of package dbsync:
// it holds what an application writes against (issue 16); wire types and
// plumbing live in package protocol and internal packages.
const maxRootExported = 60

// movedMarker marks the temporary aliases of names moved to package
// protocol, deleted by the rename pass; they are not counted.
const movedMarker = "(removed by the rename pass)"

func TestRootExportedNames(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var names, moved []string
	add := func(name string, docs ...*ast.CommentGroup) {
		if !ast.IsExported(name) {
			return
		}
		for _, d := range docs {
			if d != nil && strings.Contains(d.Text(), movedMarker) {
				moved = append(moved, name)
				return
			}
		}
		names = append(names, name)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		if af.Name.Name != "dbsync" {
			continue
		}
		for _, decl := range af.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil {
					add(d.Name.Name, d.Doc)
				}
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					switch s := spec.(type) {
					case *ast.TypeSpec:
						add(s.Name.Name, s.Doc, d.Doc)
					case *ast.ValueSpec:
						for _, n := range s.Names {
							add(n.Name, s.Doc, d.Doc)
						}
					}
				}
			}
		}
	}
	t.Logf("package dbsync exports %d names (%d more await the rename pass)", len(names), len(moved))
	if len(names) > maxRootExported {
		slices.Sort(names)
		t.Errorf("package dbsync exports %d top-level names, more than %d: %s", len(names), maxRootExported, strings.Join(names, " "))
	}
}

func rel(path string) string {
	if path == module {
		return ""
	}
	return strings.TrimPrefix(path, module+"/")
}

package dbsync_test

import (
	"bufio"
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/go-dbsync/dbsync"

// layers is the import DAG of the module (reference: aesthetics.md §4):
// for each package, the module packages its non-test files may import.
var layers = map[string][]string{
	"models":              {},
	"migrations":          {},
	"":                    {"models"},
	"internal/dialect":    {},
	"internal/spool":      {},
	"internal/stats":      {},
	"internal/store":      {"", "internal/dialect", "models"},
	"oplog":               {"", "models", "internal/dialect", "internal/store", "migrations"},
	"merge":               {"", "models"},
	"server":              {"", "models", "oplog", "migrations", "internal/dialect", "internal/store", "internal/signing"},
	"client":              {"", "models", "oplog", "merge", "migrations", "internal/dialect", "internal/store", "internal/spool"},
	"internal/httpx":      {"", "internal/spool"},
	"internal/signing":    {},
	"handlers":            {"", "server", "models", "internal/httpx"},
	"peer":                {"", "internal/dialect", "internal/store", "internal/signing", "migrations"},
	"peer/peerhttp":       {"", "peer", "internal/httpx", "internal/signing"},
	"stream":              {"", "peer"},
	"internal/dbtest":     {},
	"internal/testmodels": {},
}

// forbiddenStd lists standard and third-party imports a package must not use
// directly.
var forbiddenStd = map[string][]string{
	"merge":  {"database/sql", "net/http", "github.com/uptrace/bun", "github.com/go-chi/chi/v5"},
	"server": {"net/http", "github.com/go-chi/chi/v5"},
	"peer":   {"net/http", "github.com/go-chi/chi/v5"},
	"client": {"github.com/go-chi/chi/v5"},
}

// testOnly packages may be imported only by test files.
var testOnly = []string{"internal/dbtest", "internal/testmodels", "internal/synctest"}

func TestImportDAG(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	seen := map[string]bool{}
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		pkg := rel(fields[0])
		seen[pkg] = true
		allowed, layered := layers[pkg]
		isExample := strings.HasPrefix(pkg, "examples/") || strings.HasPrefix(pkg, "cmd/") || strings.HasPrefix(pkg, "internal/synctest")
		for _, imp := range fields[1:] {
			if slices.Contains(forbiddenStd[pkg], imp) {
				t.Errorf("%s imports %s, which its layer forbids", fields[0], imp)
			}
			if imp != module && !strings.HasPrefix(imp, module+"/") {
				continue
			}
			dep := rel(imp)
			if slices.Contains(testOnly, dep) && !slices.Contains(testOnly, pkg) {
				t.Errorf("%s imports test-only package %s", fields[0], imp)
			}
			switch {
			case layered && !slices.Contains(allowed, dep):
				t.Errorf("%s must not import %s (allowed: %q)", fields[0], imp, allowed)
			case !layered && !isExample:
				t.Errorf("package %s has no layer in the import DAG; add it to layers", fields[0])
			}
		}
	}
	for pkg := range layers {
		if !seen[pkg] && !slices.Contains(testOnly, pkg) {
			t.Errorf("layer %q names no package", pkg)
		}
	}
}

func rel(path string) string {
	if path == module {
		return ""
	}
	return strings.TrimPrefix(path, module+"/")
}

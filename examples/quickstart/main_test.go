package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
)

// TestQuickstart runs the quick start twice on a SQLite and on a
// PostgreSQL server database: the first run registers and pushes, the
// second (the same files) reuses the registration; the server holds both
// rows, done.
func TestQuickstart(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			dsn := filepath.Join(dir, "server.db")
			if kind == dbtest.KindPostgres {
				dsn = dbtest.PostgresSchemaURL(t)
			}
			for i, want := range []string{
				"synced: pushed 1 operation(s); at version 1\n",
				"synced: pushed 1 operation(s); at version 2\n", // milk again; the first row is done already (no change, not logged)
			} {
				var out bytes.Buffer
				if err := run(t.Context(), dsn, filepath.Join(dir, "client.db"), "127.0.0.1:0", &out); err != nil {
					t.Fatalf("run %d: %v\n%s", i+1, err, out.String())
				}
				if out.String() != want {
					t.Fatalf("run %d printed %q, want %q", i+1, out.String(), want)
				}
			}
			db, err := openServerDB(dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var todos []Todo
			if err := db.NewSelect().Model(&todos).Scan(context.Background()); err != nil {
				t.Fatal(err)
			}
			if len(todos) != 2 || !todos[0].Done || !todos[1].Done || todos[0].Title != "milk" {
				t.Fatalf("server holds %+v", todos)
			}
		})
	}
}

// TestQuickstartInREADME: the README's quick start is this program,
// character for character.
func TestQuickstartInREADME(t *testing.T) {
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	const open = "<!-- examples/quickstart/main.go -->\n```go\n"
	_, block, ok := strings.Cut(string(readme), open)
	if !ok {
		t.Fatalf("README.md has no block starting %q", open)
	}
	block, _, ok = strings.Cut(block, "\n```\n")
	if !ok {
		t.Fatal("README.md: the quick start block is not closed")
	}
	if block+"\n" != string(src) {
		t.Fatal("README.md's quick start differs from examples/quickstart/main.go: copy the file into the README")
	}
}

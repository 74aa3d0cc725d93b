package main

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/examples/internal/todoapp"
	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/server"
)

// TestCLI drives three todo clients against a server (SQLite, then
// PostgreSQL) over loopback HTTP, through every command the README lists.
func TestCLI(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			dir := t.TempDir()
			dsn := filepath.Join(dir, "server.db")
			if kind == dbtest.KindPostgres {
				dsn = dbtest.PostgresSchemaURL(t)
			}
			sdb, err := todoapp.Open(dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer sdb.Close()
			reg, err := todoapp.Setup(ctx, sdb)
			if err != nil {
				t.Fatal(err)
			}
			srv, err := server.New(ctx, sdb, reg, &server.Config{AuthorizeRegister: todoapp.TokenRegistration("s3cret")})
			if err != nil {
				t.Fatal(err)
			}
			r := chi.NewRouter()
			r.Mount("/sync", handlers.New(srv, nil))
			hs := httptest.NewServer(r)
			defer hs.Close()

			todo := func(node string, args ...string) string {
				t.Helper()
				var out bytes.Buffer
				full := append([]string{"-db", filepath.Join(dir, node+".db"), "-server", hs.URL + "/sync", "-token", "s3cret"}, args...)
				if err := run(ctx, full, &out); err != nil {
					t.Fatalf("todo %s: %v\n%s", strings.Join(args, " "), err, out.String())
				}
				if strings.Contains(out.String(), "\r") {
					t.Fatalf("todo %s redraws lines on a pipe: %q", strings.Join(args, " "), out.String())
				}
				return out.String()
			}
			expect := func(got, want string) {
				t.Helper()
				if !strings.Contains(got, want) {
					t.Fatalf("output %q lacks %q", got, want)
				}
			}
			if err := run(ctx, []string{"-db", filepath.Join(dir, "eve.db"), "-server", hs.URL + "/sync", "-token", "guess", "sync"}, &bytes.Buffer{}); !errors.Is(err, dbsync.ErrForbidden) {
				t.Fatalf("sync with a wrong token: %v, want ErrForbidden", err)
			}
			expect(todo("ann", "add-list", "Groceries"), "added list Groceries\n")
			added := todo("ann", "add", "Groceries", "milk")
			id := strings.Fields(added)[1]
			expect(todo("ann", "status"), "version 0 held, 2 unpushed change(s)\n")
			got := todo("ann", "sync")
			expect(got, "registered as node 1\n")
			expect(got, "synced: pushed 2 operation(s); at version 1\n")
			expect(todo("ann", "status"), "version 1 held, 0 unpushed change(s)\n")
			expect(todo("ann", "sync"), "synced: nothing to push or pull; at version 1\n")

			// Progress on a pipe: plain lines, one per phase.
			got = todo("ben", "sync")
			expect(got, "pull download: ")
			expect(got, "pull done: ")
			expect(got, "synced: pulled 1 version(s); at version 1\n")
			expect(todo("ben", "done", id), "done "+id+" milk\n")
			expect(todo("ben", "edit", id, "oat milk"), "renamed "+id+" milk to oat milk\n")
			expect(todo("ben", "status"), "version 1 held, 1 unpushed change(s)\n  u todos ")
			todo("ben", "sync")
			expect(todo("ann", "sync"), "synced: pulled 1 version(s); at version 2\n")
			want := "Groceries\n  [x] " + id + "  oat milk\n"
			for _, node := range []string{"ann", "ben"} {
				if got := todo(node, "show"); got != want {
					t.Fatalf("%s shows %q, want %q", node, got, want)
				}
			}
			expect(todo("ann", "undo", id), "not done "+id+" oat milk\n")
			expect(todo("ann", "rm", id), "removed "+id+" oat milk\n")
			expect(todo("ann", "sync"), "synced: pushed 1 operation(s); at version 3\n")
			expect(todo("ann", "rm-list", "Groceries"), "removed list Groceries and its items\n")
			expect(todo("ann", "sync"), "synced: pushed 1 operation(s); at version 4\n")
			expect(todo("ann", "add-list", "Hardware"), "added list Hardware\n")
			todo("ann", "sync")

			// Repair on a fresh file registers first, as sync does.
			got = todo("cat", "repair")
			expect(got, "registered as node 3\n")
			expect(got, "repair done: ")
			expect(got, "repaired: 1 rows, version 5\n")
			if got := todo("cat", "show"); got != "Hardware\n" {
				t.Fatalf("cat shows %q after repair", got)
			}
		})
	}
}

// TestUsage: -h prints the commands and the flags with their defaults and
// succeeds; no command or an unknown one prints the same and fails.
func TestUsage(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "x.db")
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"-h"}, true},
		{[]string{"-db", db}, false},
		{[]string{"-db", db, "nonsense"}, false},
	} {
		var out bytes.Buffer
		err := run(t.Context(), tc.args, &out)
		if (err == nil) != tc.ok {
			t.Fatalf("todo %v: err %v", tc.args, err)
		}
		for _, want := range []string{"usage: todo", "add-list NAME", "-db file", `(default "todo.db")`, `(default "http://127.0.0.1:8080/sync")`} {
			if !strings.Contains(out.String(), want) {
				t.Fatalf("todo %v prints %q, which lacks %q", tc.args, out.String(), want)
			}
		}
	}
}

// A regular file is not a terminal: progress goes out as plain lines.
func TestIsTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) || isTerminal(&bytes.Buffer{}) {
		t.Fatal("a file or a buffer taken for a terminal")
	}
}

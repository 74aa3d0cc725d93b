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

// TestCLI drives four todo devices of two users against a server with
// scopes (SQLite, then PostgreSQL) over loopback HTTP, through every
// command the README lists: ann shares a list with ben, whose device
// receives it, never ann's private list, and loses the shared one when ann
// unshares it (his pending change to it refused, then discarded).
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
			users, err := todoapp.ParseUsers("ann:ann-token,ben:ben-token")
			if err != nil {
				t.Fatal(err)
			}
			srv, err := server.New(ctx, sdb, reg, &server.Config{AuthorizeRegister: todoapp.UserTokens(users), Scopes: todoapp.Scopes()})
			if err != nil {
				t.Fatal(err)
			}
			r := chi.NewRouter()
			r.Mount("/sync", handlers.New(srv, nil))
			hs := httptest.NewServer(r)
			defer hs.Close()

			// Devices: ann and ann2 are ann's, ben and ben2 ben's.
			cli := func(device string, args ...string) (string, error) {
				user := strings.TrimSuffix(device, "2")
				var out bytes.Buffer
				full := append([]string{"-db", filepath.Join(dir, device+".db"), "-server", hs.URL + "/sync", "-token", user + "-token"}, args...)
				err := run(ctx, full, &out)
				if strings.Contains(out.String(), "\r") {
					t.Fatalf("todo %s redraws lines on a pipe: %q", strings.Join(args, " "), out.String())
				}
				return out.String(), err
			}
			todo := func(device string, args ...string) string {
				t.Helper()
				out, err := cli(device, args...)
				if err != nil {
					t.Fatalf("%s: todo %s: %v\n%s", device, strings.Join(args, " "), err, out)
				}
				return out
			}
			expect := func(got, want string) {
				t.Helper()
				if !strings.Contains(got, want) {
					t.Fatalf("output %q lacks %q", got, want)
				}
			}
			shows := func(device, want string) {
				t.Helper()
				if got := todo(device, "show"); got != want {
					t.Fatalf("%s shows %q, want %q", device, got, want)
				}
			}
			if err := run(ctx, []string{"-db", filepath.Join(dir, "eve.db"), "-server", hs.URL + "/sync", "-token", "guess", "sync"}, &bytes.Buffer{}); !errors.Is(err, dbsync.ErrForbidden) {
				t.Fatalf("sync with a wrong token: %v, want ErrForbidden", err)
			}

			// ann's first list registers her device: the server binds it
			// to the user of her token.
			got := todo("ann", "add-list", "Groceries")
			expect(got, "registered as node 1 of user ann\n")
			expect(got, "added list Groceries\n")
			id := strings.Fields(todo("ann", "add", "Groceries", "milk"))[1]
			todo("ann", "add-list", "Diary")
			secret := strings.Fields(todo("ann", "add", "Diary", "secret"))[1]
			expect(todo("ann", "status"), "user ann\nversion 0 held, 4 unpushed change(s)\n")
			expect(todo("ann", "sync"), "synced: pushed 4 operation(s); at version 1\n")
			expect(todo("ann", "status"), "version 1 held, 0 unpushed change(s)\n")
			expect(todo("ann", "sync"), "synced: nothing to push or pull; at version 1\n")

			// ben's device holds none of ann's lists until she shares one.
			got = todo("ben", "sync")
			expect(got, "registered as node 2 of user ben\n")
			shows("ben", "")
			expect(todo("ann", "share", "Groceries", "ben"), "shared Groceries with ben\n")
			todo("ann", "sync")
			// Progress on a pipe: plain lines, one per phase.
			got = todo("ben", "sync")
			expect(got, "pull download: ")
			expect(got, "pull done: ")
			shows("ben", "ann/Groceries (shared with ben)\n  [ ] "+id+"  milk\n")

			// ben edits the shared list, and makes one of his own of the
			// same name: a bare name is his own list.
			expect(todo("ben", "done", id), "done "+id+" milk\n")
			expect(todo("ben", "edit", id, "oat milk"), "renamed "+id+" milk to oat milk\n")
			expect(todo("ben", "status"), "version 2 held, 1 unpushed change(s)\n  u todos ")
			todo("ben", "add-list", "Groceries")
			bread := strings.Fields(todo("ben", "add", "Groceries", "bread"))[1]
			eggs := strings.Fields(todo("ben", "add", "ann/Groceries", "eggs"))[1]
			todo("ben", "sync")
			todo("ann", "sync")
			annSees := "Diary\n  [ ] " + secret + "  secret\n" +
				"Groceries (shared with ben)\n  [ ] " + eggs + "  eggs\n  [x] " + id + "  oat milk\n"
			shows("ann", annSees)
			shows("ben", "Groceries\n  [ ] "+bread+"  bread\n"+
				"ann/Groceries (shared with ben)\n  [ ] "+eggs+"  eggs\n  [x] "+id+"  oat milk\n")

			// A second device of each user: a repair brings exactly the
			// user's scope.
			got = todo("ann2", "repair")
			expect(got, "registered as node 3 of user ann\n")
			expect(got, "repair done: ")
			expect(got, "repaired: 6 rows, version 3\n")
			shows("ann2", annSees)
			expect(todo("ben2", "sync"), "registered as node 4 of user ben\n")
			if got := todo("ben2", "show"); strings.Contains(got, "Diary") || !strings.Contains(got, "ann/Groceries") {
				t.Fatalf("ben2 shows %q", got)
			}

			// ann unshares while ben, offline, ticks eggs: his sync is
			// refused for that change; discard gives it up, and the list
			// leaves his device.
			todo("ben", "done", eggs)
			expect(todo("ann", "unshare", "Groceries", "ben"), "unshared Groceries with ben\n")
			todo("ann", "sync")
			out, err := cli("ben", "sync")
			var se *dbsync.ScopeError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), "todo discard") {
				t.Fatalf("ben's sync after the unshare: %v\n%s", err, out)
			}
			expect(todo("ben", "discard"), "discarded the changes to 1 row(s)\n")
			shows("ben", "Groceries\n  [ ] "+bread+"  bread\n")
			todo("ben2", "sync")
			shows("ben2", "Groceries\n  [ ] "+bread+"  bread\n")
			if _, err := cli("ben", "rm-list", "ann/Groceries"); err == nil {
				t.Fatal("ben removed a list not his")
			}

			expect(todo("ann", "undo", id), "not done "+id+" oat milk\n")
			expect(todo("ann", "rm", id), "removed "+id+" oat milk\n")
			expect(todo("ann", "sync"), "synced: pushed 1 operation(s); at version 5\n")
			expect(todo("ann", "rm-list", "Groceries"), "removed list Groceries and its items\n")
			expect(todo("ann", "sync"), "synced: pushed 2 operation(s); at version 6\n") // the list and, cascaded, eggs
			todo("ann2", "sync")
			shows("ann2", "Diary\n  [ ] "+secret+"  secret\n")
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

// TestProgressPrinter: on a terminal each redraw clears what a longer
// line before it left; elsewhere plain lines, one per phase.
func TestProgressPrinter(t *testing.T) {
	steps := []dbsync.Progress{
		{Op: "pull", Phase: "download", Bytes: 123456},
		{Op: "pull", Phase: "download", Bytes: 234567},
		{Op: "pull", Phase: "apply", Operations: 10, Rows: 10},
		{Op: "pull", Phase: "done", Bytes: 97},
	}
	for _, tc := range []struct {
		redraw bool
		want   string
	}{
		{true, "\rpull download: 123456 bytes, 0 operations, 0 rows\x1b[K" +
			"\rpull download: 234567 bytes, 0 operations, 0 rows\x1b[K" +
			"\rpull apply: 0 bytes, 10 operations, 10 rows\x1b[K" +
			"\rpull done: 97 bytes, 0 operations, 0 rows\x1b[K\n"},
		{false, "pull download: 123456 bytes, 0 operations, 0 rows\n" +
			"pull apply: 0 bytes, 10 operations, 10 rows\n" +
			"pull done: 97 bytes, 0 operations, 0 rows\n"},
	} {
		var out bytes.Buffer
		p := progressPrinter(&out, tc.redraw)
		for _, s := range steps {
			p(s)
		}
		if out.String() != tc.want {
			t.Errorf("redraw=%v: %q, want %q", tc.redraw, out.String(), tc.want)
		}
	}
}

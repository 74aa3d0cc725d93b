package main

import (
	"bytes"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/go-dbsync/dbsync/examples/internal/todoapp"
	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/server"
)

// TestUpgrade: the server moves to release 2 (items get a note) while
// one of the user's devices ("ann") still runs release 1 and the other
// ("ben") upgrades; both keep syncing, ann's rename keeps ben's note, and
// when ann upgrades her next sync brings the note.
func TestUpgrade(t *testing.T) {
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
			// serve starts the server of a release on sdb.
			serve := func(v2 bool) *httptest.Server {
				setup := todoapp.Setup
				if v2 {
					setup = todoapp.SetupV2
				}
				reg, err := setup(ctx, sdb)
				if err != nil {
					t.Fatal(err)
				}
				users, err := todoapp.ParseUsers("ann:ann-token")
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
				t.Cleanup(hs.Close)
				return hs
			}
			hs := serve(false)
			todo := func(node string, args ...string) string {
				t.Helper()
				var out bytes.Buffer
				full := append([]string{"-db", filepath.Join(dir, node+".db"), "-server", hs.URL + "/sync", "-token", "ann-token"}, args...)
				if err := run(ctx, full, &out); err != nil {
					t.Fatalf("todo %s: %v\n%s", strings.Join(args, " "), err, out.String())
				}
				return out.String()
			}
			todo("ann", "add-list", "Groceries")
			id := strings.Fields(todo("ann", "add", "Groceries", "milk"))[1]
			todo("ann", "sync")
			todo("ben", "sync")

			hs = serve(true)
			todo("ben", "-v2", "sync")
			todo("ben", "-v2", "note", id, "the oat one")
			todo("ben", "-v2", "sync")
			todo("ann", "sync") // release 1: no schema_mismatch
			todo("ann", "edit", id, "oat milk")
			todo("ann", "sync")
			todo("ben", "-v2", "sync")
			want := id + " oat milk: the oat one\n"
			if got := todo("ben", "-v2", "notes"); got != want {
				t.Fatalf("ben's notes %q, want %q", got, want)
			}
			got := todo("ann", "-v2", "sync")
			if !strings.Contains(got, "synced: ") {
				t.Fatalf("ann's first sync of release 2: %q", got)
			}
			if got := todo("ann", "-v2", "notes"); got != want {
				t.Fatalf("ann's notes after her upgrade %q, want %q", got, want)
			}
		})
	}
}

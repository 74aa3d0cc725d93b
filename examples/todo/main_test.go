package main

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/examples/internal/todoapp"
	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/server"
)

// TestCLI drives two todo clients against a server over loopback HTTP.
func TestCLI(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	sdb, err := todoapp.Open(filepath.Join(dir, "server.db"))
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
		return out.String()
	}
	if err := run(ctx, []string{"-db", filepath.Join(dir, "eve.db"), "-server", hs.URL + "/sync", "-token", "guess", "sync"}, &bytes.Buffer{}); !errors.Is(err, dbsync.ErrForbidden) {
		t.Fatalf("sync with a wrong token: %v, want ErrForbidden", err)
	}
	todo("ann", "add-list", "Groceries")
	added := todo("ann", "add", "Groceries", "milk")
	id := strings.Fields(added)[1]
	if got := todo("ann", "status"); !strings.HasPrefix(got, "2 unpushed change(s)") {
		t.Fatalf("status before sync: %q", got)
	}
	if got := todo("ann", "sync"); !strings.Contains(got, "registered as node 1") || !strings.Contains(got, "synced: 1 push(es)") {
		t.Fatalf("sync: %q", got)
	}
	todo("ben", "sync")
	todo("ben", "done", id)
	todo("ben", "sync")
	todo("ann", "sync")
	want := "Groceries\n  [x] " + id + "  milk\n"
	for _, node := range []string{"ann", "ben"} {
		if got := todo(node, "show"); got != want {
			t.Fatalf("%s shows %q, want %q", node, got, want)
		}
	}
	if got := todo("ann", "repair"); !strings.Contains(got, "repaired: 2 rows, version 2") {
		t.Fatalf("repair: %q", got)
	}
	var out bytes.Buffer
	if err := run(ctx, []string{"-db", filepath.Join(dir, "ann.db"), "nonsense"}, &out); err == nil || !strings.Contains(out.String(), "usage:") {
		t.Fatalf("unknown command: err %v, output %q", err, out.String())
	}
}

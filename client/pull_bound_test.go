package client_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/server"
)

// boundParent has long text keys; boundChild makes it a referenced table,
// whose pending deletes a pull lists.
type boundParent struct {
	bun.BaseModel `bun:"table:bparents"`

	ID string `bun:"id,pk"`
}

type boundChild struct {
	bun.BaseModel `bun:"table:bchildren"`

	ID       string       `bun:"id,pk"`
	ParentID string       `bun:"parent_id,notnull"`
	Parent   *boundParent `bun:"rel:belongs-to,join:parent_id=id"`
}

// TestPullBodyUnscoped: a node whose pending deletes of referenced rows
// have long keys (40 of 30 KB) pulls from a server without scopes, which
// bounds pull bodies to 1 MiB: the client sends no pull body over 1 MiB
// (it asks for every referenced row instead of listing the keys), and
// the pull succeeds. Nodes on both databases.
func TestPullBodyUnscoped(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			models := []any{(*boundParent)(nil), (*boundChild)(nil)}
			schema := synctest.CreateTables(models...)
			srv := synctest.NewServerWith(t, synctest.ServerSQLite(t, "bound", schema, models), schema, models, nil)
			tr := &transport{}
			a := synctest.NewClientWith(t, srv, "a", synctest.ClientDB(t, kind, "bound", schema, models), schema, models, &client.Config{HTTPClient: tr.client()})
			rows := make([]boundParent, 40)
			for i := range rows {
				rows[i].ID = fmt.Sprintf("%04d", i) + strings.Repeat("k", 30000)
			}
			// Rows the node holds and pushed long ago (their log is gone:
			// syncing 1.2 MB of keys takes seconds under -race).
			if _, err := a.DB.NewInsert().Model(&rows).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			exec(t, a.DB, "DELETE FROM sync_operations")
			exec(t, a.DB, "DELETE FROM bparents")
			if _, err := a.Pull(ctx); err != nil {
				t.Fatalf("pull with 40 long pending deletes: %v", err)
			}
			pulls := tr.requests("pull")
			if len(pulls) == 0 {
				t.Fatal("no pull sent")
			}
			for _, r := range pulls {
				if len(r.body) > 1<<20 {
					t.Fatalf("a pull body of %d bytes, over the 1 MiB of a server without scopes", len(r.body))
				}
			}
		})
	}
}

// TestPullHeldScopesOff: a node that learned at its last pull that the
// server holds it to scopes sends its held keys; once the server runs
// without scopes (restarted without Config.Scopes, over the same
// database), it bounds pull bodies by MaxBodyBytes and refuses them
// (413): the client asks again without the keys, and the pull succeeds.
func TestPullHeldScopesOff(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			scoped := synctest.NewServerWith(t, synctest.ServerSQLite(t, "scoped", testmodels.CreateScoped, testmodels.Scoped()), testmodels.CreateScoped, testmodels.Scoped(),
				&server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: synctest.ScopeRules()})
			noSchema := func(context.Context, bun.IDB) error { return nil }
			plain := synctest.NewServerWith(t, scoped.DB, noSchema, testmodels.Scoped(), &server.Config{AuthorizeRegister: synctest.BearerUser})
			r := chi.NewRouter()
			r.Mount("/sync", handlers.New(plain.Srv, &handlers.Config{MaxBodyBytes: 300}))
			hs := httptest.NewServer(r)
			t.Cleanup(hs.Close)

			tr := &transport{}
			a := synctest.NewClientAs(t, scoped, "ann", "Bearer ann", synctest.ClientDB(t, kind, "scoped", testmodels.CreateScoped, testmodels.Scoped()), testmodels.CreateScoped, testmodels.Scoped(),
				&client.Config{HTTPClient: tr.client()})
			exec(t, a.DB, "INSERT INTO projects (id, owner_id, name) VALUES (1, 'ann', 'p')")
			for i := range 200 {
				exec(t, a.DB, "INSERT INTO tasks (id, project_id, title) VALUES (?, 1, 't')", i+1)
			}
			if _, err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Pull(ctx); err != nil { // sends the held keys
				t.Fatal(err)
			}
			if last := tr.requests("pull"); !strings.Contains(string(last[len(last)-1].body), `"held"`) {
				t.Fatal("the node sends no held keys to the server with scopes")
			}
			// The server restarted without scopes.
			to, err := url.Parse(hs.URL)
			if err != nil {
				t.Fatal(err)
			}
			tr.setHook(func(r *http.Request, _ []byte, forward func() (*http.Response, error)) (*http.Response, error) {
				r.URL.Scheme, r.URL.Host, r.Host = to.Scheme, to.Host, to.Host
				return forward()
			})
			before := len(tr.requests("pull"))
			if _, err := a.Pull(ctx); err != nil {
				t.Fatalf("pull from the server without scopes: %v", err)
			}
			pulls := tr.requests("pull")[before:]
			if len(pulls) != 2 || !strings.Contains(string(pulls[0].body), `"held"`) || strings.Contains(string(pulls[1].body), `"held"`) {
				t.Fatalf("%d pulls, want one with held keys (refused) then one without", len(pulls))
			}
		})
	}
}

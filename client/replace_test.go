package client_test

import (
	"context"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// TestReplaceSyncs: SQLite's REPLACE on a node deletes the rows it
// replaces (one holding the new row's unique name, the old row of a key
// replaced), and every node and the server end as the node: the deleted
// list gone, the replaced one renamed under its key. With recursive
// triggers off, the first delete was never captured (the server and the
// other nodes kept list 2), and the second was logged as an insert of a
// key the server had, which the next pull moved to a fresh key (K1): list
// 3 then stayed on the server under its old name beside a copy.
func TestReplaceSyncs(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewTemplateLocalServer(t, kind, nil)
			a := synctest.NewTemplateClient(t, srv, "a", nil)
			b := synctest.NewTemplateClient(t, srv, "b", nil)
			for _, name := range []string{"home", "work", "shop"} {
				insertList(t, a.DB, name)
			}
			if _, err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{
				"INSERT OR REPLACE INTO lists (id, name) VALUES (4, 'work')", // deletes list 2
				"REPLACE INTO lists (id, name) VALUES (3, 'market')",
			} {
				if _, err := a.DB.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			for _, c := range []*synctest.Client{a, b, a} {
				if _, err := c.Sync(ctx); err != nil {
					t.Fatalf("%s: %v", c.Name, err)
				}
			}
			ds := converged(t, srv, a, b)
			var lists []string
			if err := srv.DB.NewSelect().Model((*testmodels.List)(nil)).ColumnExpr("id || ':' || name").Order("id").Scan(ctx, &lists); err != nil {
				t.Fatal(err)
			}
			if got, want := strings.Join(lists, ","), "1:home,3:market,4:work"; got != want {
				t.Fatalf("server lists %s, want %s\n%v", got, want, ds)
			}
		})
	}
}

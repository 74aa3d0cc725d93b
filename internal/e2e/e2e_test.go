package e2e_test

import (
	"context"
	"errors"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

func TestEndToEndBasic(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewServer(t, kind, nil)
			a := synctest.NewClient(t, srv, "a", nil)
			b := synctest.NewClient(t, srv, "b", nil)

			// A creates data offline and syncs.
			if _, err := a.DB.NewInsert().Model(&testmodels.List{Name: "home"}).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := a.DB.NewInsert().Model(&[]testmodels.Todo{{ListID: 1, Title: "milk"}, {ListID: 1, Title: "eggs"}}).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Sync(ctx); err != nil {
				t.Fatalf("a sync: %v", err)
			}
			// B pulls it.
			if _, err := b.Sync(ctx); err != nil {
				t.Fatalf("b sync: %v", err)
			}
			if d := synctest.Diff(synctest.Dump(t, a.DB, a.Reg), synctest.Dump(t, b.DB, b.Reg)); d != "" {
				t.Fatalf("a and b differ:\n%s", d)
			}
			// Both edit offline; B inserts with a colliding integer key.
			if _, err := a.DB.ExecContext(ctx, "UPDATE todos SET done = true WHERE title = 'milk'"); err != nil {
				t.Fatal(err)
			}
			if _, err := a.DB.NewInsert().Model(&testmodels.Todo{ListID: 1, Title: "from a"}).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := b.DB.NewInsert().Model(&testmodels.Todo{ListID: 1, Title: "from b"}).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := b.DB.ExecContext(ctx, "DELETE FROM todos WHERE title = 'eggs'"); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Sync(ctx); err != nil {
				t.Fatalf("a sync 2: %v", err)
			}
			if _, err := b.Push(ctx); !errors.Is(err, dbsync.ErrPullNeeded) {
				t.Fatalf("b push while behind: %v, want ErrPullNeeded", err)
			}
			res, err := b.Sync(ctx)
			if err != nil {
				t.Fatalf("b sync 2: %v", err)
			}
			if _, err := a.Sync(ctx); err != nil {
				t.Fatalf("a sync 3: %v", err)
			}
			da, db, ds := synctest.Dump(t, a.DB, a.Reg), synctest.Dump(t, b.DB, b.Reg), synctest.Dump(t, srv.DB, srv.Reg)
			if d := synctest.Diff(da, ds); d != "" {
				t.Fatalf("a and server differ:\n%s", d)
			}
			if d := synctest.Diff(db, ds); d != "" {
				t.Fatalf("b and server differ:\n%s", d)
			}
			if n := len(ds["todos"]); n != 3 {
				t.Fatalf("server todos %v, want milk, from a, from b", ds["todos"])
			}
			t.Logf("b sync: %d pushes, %d pulls, conflicts %v", len(res.Pushes), len(res.Pulls), res.Pulls[0].Conflicts)
		})
	}
}

// fullProduct reports whether a table-driven test runs every combination
// of its dimensions: always, except under the race detector at default
// size (SQLite, C translated to Go, runs some 20 times slower there), where
// the tests below cover pairs instead. DBSYNC_LONG=1 runs the full product
// under the race detector too.
func fullProduct() bool { return !dbtest.Race() || dbtest.Long() }

// pairVariant reports whether item i of a table (a scenario, a policy)
// runs on the server dialect and key kind given. With the full product,
// all four; otherwise two that cover both dialects and both key kinds,
// alternating with i so that the items together run every (dialect, key
// kind) pair: even items on (SQLite, int) and (PostgreSQL, UUID), odd ones
// on (SQLite, UUID) and (PostgreSQL, int).
func pairVariant(i int, server string, kind mrKind) bool {
	if fullProduct() {
		return true
	}
	return (server == dbtest.KindSQLite) == kind.isInt() == (i%2 == 0)
}

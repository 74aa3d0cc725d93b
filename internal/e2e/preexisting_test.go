package e2e_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
	"github.com/go-dbsync/dbsync/server"
)

// TestRowsBeforeServerNew: rows already in the server's tables when
// server.New first captures them reach a new node by Sync (no Repair),
// in one version; a restart logs nothing again.
func TestRowsBeforeServerNew(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := dbtest.Open(t, kind)
			if err := testmodels.CreateSchema(ctx, db); err != nil {
				t.Fatal(err)
			}
			run(t, db, "INSERT INTO lists (id, name) VALUES (1, 'home'), (2, 'work')")
			run(t, db, "INSERT INTO todos (id, list_id, title, done) VALUES (1, 1, 'milk', false), (2, 1, 'eggs', true), (3, 2, 'mail', false)")
			srv := synctest.NewServerWith(t, db, func(context.Context, bun.IDB) error { return nil }, synctest.Models(), nil)
			if n := countOps(t, db, "version_id IS NULL"); n != 5 {
				t.Fatalf("%d pending operations after New, want 5 (one insert per row)", n)
			}
			b := synctest.NewClient(t, srv, "b", nil)
			if _, err := b.Sync(ctx); err != nil {
				t.Fatalf("sync: %v", err)
			}
			if d := synctest.Diff(synctest.Dump(t, srv.DB, srv.Reg), synctest.Dump(t, b.DB, b.Reg)); d != "" {
				t.Fatalf("b differs from the server after Sync:\n%s", d)
			}
			var versions int
			if err := db.NewSelect().Model((*models.Version)(nil)).ColumnExpr("COUNT(*)").Scan(ctx, &versions); err != nil {
				t.Fatal(err)
			}
			if versions != 1 {
				t.Fatalf("%d versions, want the one sealing the rows", versions)
			}

			// A write through the server, then a restart: nothing is
			// logged again, the rows and their history are known.
			run(t, db, "UPDATE todos SET done = true WHERE id = 1")
			before := countOps(t, db, "1 = 1")
			reg, err := dbsync.Track(db, synctest.Models()...)
			if err != nil {
				t.Fatal(err)
			}
			again, err := server.New(ctx, db, reg, synctest.OpenConfig(nil))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = again.Close() })
			if after := countOps(t, db, "1 = 1"); after != before {
				t.Fatalf("a restart logged %d operations", after-before)
			}
			if _, err := b.Sync(ctx); err != nil {
				t.Fatalf("sync 2: %v", err)
			}
			if d := synctest.Diff(synctest.Dump(t, srv.DB, srv.Reg), synctest.Dump(t, b.DB, b.Reg)); d != "" {
				t.Fatalf("b differs from the server after the update:\n%s", d)
			}
		})
	}
}

func countOps(t *testing.T, db bun.IDB, where string) int {
	t.Helper()
	n, err := db.NewSelect().Model((*models.Operation)(nil)).Where(where).Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// TestNoRelogAfterTrim: a server table tracked before, whose rows' log
// entries a trim removed, and whose triggers a migration re-creates (here
// dropped in oplog.Migrate, nothing written): Install logs nothing. Only
// a table captured for the first time has its rows logged.
func TestNoRelogAfterTrim(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := dbtest.Open(t, kind)
			srv := synctest.NewServerWith(t, db, testmodels.CreateSchema, synctest.Models(), nil)
			for i := 1; i <= 50; i++ {
				run(t, db, fmt.Sprintf("INSERT INTO lists (id, name) VALUES (%d, 'l%d')", i, i))
			}
			if _, err := srv.Srv.Seal(ctx); err != nil {
				t.Fatal(err)
			}
			b := synctest.NewClient(t, srv, "b", nil)
			mustSync(t, b)
			run(t, db, "INSERT INTO lists (id, name) VALUES (100, 'late')")
			if _, err := srv.Srv.Seal(ctx); err != nil {
				t.Fatal(err)
			}
			mustSync(t, b)
			if tr, err := srv.Srv.Trim(ctx); err != nil || tr.Operations == 0 {
				t.Fatalf("trim %+v: %v", tr, err)
			}
			_, err := oplog.Migrate(ctx, db, srv.Reg, nil, func(ctx context.Context, tx bun.Tx) error {
				q := "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'lists'"
				if kind == dbtest.KindPostgres {
					q = "SELECT tgname FROM pg_trigger WHERE tgrelid = 'lists'::regclass AND NOT tgisinternal"
				}
				var names []string
				if err := tx.NewRaw(q).Scan(ctx, &names); err != nil {
					return err
				}
				for _, n := range names {
					q := "DROP TRIGGER " + n
					if kind == dbtest.KindPostgres {
						q += " ON lists"
					}
					if _, err := tx.ExecContext(ctx, q); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if n := countOps(t, db, "version_id IS NULL"); n != 0 {
				t.Fatalf("%d operations logged by Install though no row changed", n)
			}
		})
	}
}

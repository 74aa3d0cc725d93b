package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/oplog"
	"github.com/go-dbsync/dbsync/server"
)

type h5sItem1 struct {
	bun.BaseModel `bun:"table:h5s_items"`
	Name          string `bun:"name,pk"`
	Title         string `bun:"title,notnull"`
	Prio          int64  `bun:"prio,notnull,default:0"`
}

// Release 2 makes the priority a float.
type h5sItem2 struct {
	bun.BaseModel `bun:"table:h5s_items"`
	Name          string  `bun:"name,pk"`
	Title         string  `bun:"title,notnull"`
	Prio          float64 `bun:"prio,notnull,default:0"`
}

// h5sCreate: the nodes' key column ignores case (SQLite's NOCASE).
func h5sCreate(nocase bool) func(ctx context.Context, db bun.IDB) error {
	coll := ""
	if nocase {
		coll = " COLLATE NOCASE"
	}
	return func(ctx context.Context, db bun.IDB) error {
		_, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS h5s_items (name TEXT PRIMARY KEY"+coll+", title TEXT NOT NULL, prio BIGINT NOT NULL DEFAULT 0)")
		return err
	}
}

// TestRetypedColumnPendingOtherSpelling: a node left behind (its upgrade
// resets, merge.md T8) holds, with a pending insert, the row "ABC" that
// another node inserted as "abc", its key column ignoring case. Its reset
// met the server's row before the merge (resetBackfill) and looked for
// a pending change under the server's spelling: none found, the server's
// value of the retyped column overwrote the node's, and the merge (K2,
// keep local) then pushed the node's row with it.
func TestRetypedColumnPendingOtherSpelling(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clk := dbtest.NewClock(time.Now())
			cfg := &server.Config{Now: clk.Now, ClockSkew: 100 * time.Hour, NodeHorizon: 24 * time.Hour}
			sdb := dbtest.Open(t, kind)
			v1, v2 := []any{(*h5sItem1)(nil)}, []any{(*h5sItem2)(nil)}
			srv1 := synctest.NewServerWith(t, sdb, h5sCreate(false), v1, cfg)
			dbA, dbB := dbtest.SQLite(t), dbtest.SQLite(t)
			a := synctest.NewClientWith(t, srv1, "a", dbA, h5sCreate(true), v1, nil)
			b := synctest.NewClientWith(t, srv1, "b", dbB, h5sCreate(true), v1, nil)
			h4Sync(t, "a", a.Client)
			// A, offline, inserts ABC; B inserts abc.
			lcExec(t, dbA, "INSERT INTO h5s_items (name, title, prio) VALUES ('ABC', 'a', 7)")
			lcExec(t, dbB, "INSERT INTO h5s_items (name, title, prio) VALUES ('abc', 'b', 1)")
			h4Sync(t, "b", b.Client)
			srv1.Srv.Close()
			mig := func(nocase bool) func(ctx context.Context, tx bun.Tx) error {
				return func(ctx context.Context, tx bun.Tx) error {
					qs := []string{"ALTER TABLE h5s_items ALTER COLUMN prio TYPE double precision"}
					if dialect.MustOf(tx) == dialect.SQLite {
						coll := ""
						if nocase {
							coll = " COLLATE NOCASE"
						}
						qs = []string{
							"CREATE TABLE h5s_new (name TEXT PRIMARY KEY" + coll + ", title TEXT NOT NULL, prio REAL NOT NULL DEFAULT 0)",
							"INSERT INTO h5s_new SELECT name, title, CAST(prio AS REAL) FROM h5s_items",
							"DROP TABLE h5s_items",
							"ALTER TABLE h5s_new RENAME TO h5s_items",
						}
					}
					for _, q := range qs {
						if _, err := tx.ExecContext(ctx, q); err != nil {
							return err
						}
					}
					return nil
				}
			}
			nodeMigrate := func(db *bun.DB) {
				reg, err := dbsync.Track(db, v2...)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := oplog.Migrate(ctx, db, reg, &oplog.InstallOptions{Client: true}, mig(true)); err != nil {
					t.Fatal(err)
				}
			}
			h4ServerMigrate(t, sdb, v2, mig(false))
			srv2 := synctest.NewServerWith(t, sdb, func(context.Context, bun.IDB) error { return nil }, v2, cfg)
			nodeMigrate(dbB)
			newB := h4Client(t, srv2.URL, dbB, v2...)
			h4Sync(t, "b", newB)
			// A is left behind: its upgrade resets.
			clk.Advance(25 * time.Hour)
			lcExec(t, dbB, "UPDATE h5s_items SET title = 'b2' WHERE name = 'abc'")
			h4Sync(t, "b", newB)
			h4Sync(t, "b", newB)
			if tr, err := srv2.Srv.Trim(ctx); err != nil || tr.RetiredNodes != 1 {
				t.Fatalf("trim %+v: %v", tr, err)
			}
			oldA := h4Client(t, srv2.URL, dbA, v1...)
			var se *dbsync.SchemaError
			if _, err := oldA.Sync(ctx); !errors.As(err, &se) {
				t.Fatalf("old A sync: %v, want a SchemaError", err)
			}
			nodeMigrate(dbA)
			newA := h4Client(t, srv2.URL, dbA, v2...)
			res, err := newA.Sync(ctx)
			if err != nil {
				t.Fatalf("a sync: %v", err)
			}
			if res.Reset == nil {
				t.Fatalf("a sync %v: no reset", res)
			}
			var title string
			var prio float64
			h4Row(t, sdb, "SELECT title, prio FROM h5s_items WHERE name = 'abc'", &title, &prio)
			if got := fmt.Sprintf("%s %v", title, prio); got != "a 7" {
				t.Errorf("server row abc: %s, want A's (a 7: keep local)", got)
			}
		})
	}
}

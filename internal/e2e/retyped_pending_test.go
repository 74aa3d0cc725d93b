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

type h4rItem1 struct {
	bun.BaseModel `bun:"table:h4r_items"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Title         string `bun:"title,notnull"`
	Prio          int64  `bun:"prio,notnull,default:0"`
}

// Release 2 makes the priority a float.
type h4rItem2 struct {
	bun.BaseModel `bun:"table:h4r_items"`
	ID            int64   `bun:"id,pk,autoincrement"`
	Title         string  `bun:"title,notnull"`
	Prio          float64 `bun:"prio,notnull,default:0"`
}

func h4rCreate(ctx context.Context, db bun.IDB) error {
	_, err := db.NewCreateTable().Model((*h4rItem1)(nil)).IfNotExists().Exec(ctx)
	return err
}

// A release changes a column's type class, every node upgrading with the
// server. A node that wrote the column offline, refused until it upgrades
// (SchemaError), keeps what it wrote: the column is not new to it, so its
// backfill does not overwrite a row with a pending change (before, the
// server's value did, without a conflict); its rows without one take the
// server's values.
func TestRetypedColumnKeepsPendingWrites(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, trim := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/trim=%v", kind, trim), func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				clk := dbtest.NewClock(time.Now())
				cfg := &server.Config{Now: clk.Now, ClockSkew: 100 * time.Hour, NodeHorizon: 24 * time.Hour}
				sdb := dbtest.Open(t, kind)
				v1, v2 := []any{(*h4rItem1)(nil)}, []any{(*h4rItem2)(nil)}
				srv1 := synctest.NewServerWith(t, sdb, h4rCreate, v1, cfg)
				dbA, dbB := dbtest.SQLite(t), dbtest.SQLite(t)
				a := synctest.NewClientWith(t, srv1, "a", dbA, h4rCreate, v1, nil)
				b := synctest.NewClientWith(t, srv1, "b", dbB, h4rCreate, v1, nil)
				lcExec(t, dbA, "INSERT INTO h4r_items (id, title, prio) VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3)")
				h4Sync(t, "a", a.Client)
				h4Sync(t, "b", b.Client)
				// A, offline: a priority, and a title.
				lcExec(t, dbA, "UPDATE h4r_items SET prio = 7 WHERE id = 1", "UPDATE h4r_items SET title = 'two-a' WHERE id = 2")
				srv1.Srv.Close()
				mig := func(ctx context.Context, tx bun.Tx) error {
					qs := []string{"ALTER TABLE h4r_items ALTER COLUMN prio TYPE double precision"}
					if dialect.MustOf(tx) == dialect.SQLite {
						qs = []string{
							"CREATE TABLE h4r_new (id INTEGER PRIMARY KEY AUTOINCREMENT, title VARCHAR NOT NULL, prio REAL NOT NULL DEFAULT 0)",
							"INSERT INTO h4r_new SELECT id, title, CAST(prio AS REAL) FROM h4r_items",
							"DROP TABLE h4r_items",
							"ALTER TABLE h4r_new RENAME TO h4r_items",
						}
					}
					for _, q := range qs {
						if _, err := tx.ExecContext(ctx, q); err != nil {
							return err
						}
					}
					return nil
				}
				nodeMigrate := func(db *bun.DB) {
					reg, err := dbsync.Track(db, v2...)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := oplog.Migrate(ctx, db, reg, &oplog.InstallOptions{Client: true}, mig); err != nil {
						t.Fatal(err)
					}
				}
				h4ServerMigrate(t, sdb, v2, mig)
				srv2 := synctest.NewServerWith(t, sdb, func(context.Context, bun.IDB) error { return nil }, v2, cfg)
				// B upgrades first and changes item 3's priority.
				nodeMigrate(dbB)
				newB := h4Client(t, srv2.URL, dbB, v2...)
				h4Sync(t, "b", newB)
				lcExec(t, dbB, "UPDATE h4r_items SET prio = 3.5 WHERE id = 3")
				h4Sync(t, "b", newB)
				if trim {
					// A is left behind: its upgrade resets (merge.md T8).
					clk.Advance(25 * time.Hour)
					lcExec(t, dbB, "UPDATE h4r_items SET title = 'three-b' WHERE id = 3")
					h4Sync(t, "b", newB)
					h4Sync(t, "b", newB)
					if tr, err := srv2.Srv.Trim(ctx); err != nil || tr.RetiredNodes != 1 {
						t.Fatalf("trim %+v: %v", tr, err)
					}
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
				if trim != (res.Reset != nil) {
					t.Fatalf("a sync %v: reset %v, want %v", res, res.Reset != nil, trim)
				}
				h4Sync(t, "b", newB)
				var prio []float64
				if err := sdb.NewRaw("SELECT prio FROM h4r_items ORDER BY id").Scan(ctx, &prio); err != nil {
					t.Fatal(err)
				}
				if len(prio) != 3 || prio[0] != 7 || prio[1] != 2 || prio[2] != 3.5 {
					t.Errorf("server priorities %v, want [7 2 3.5]", prio)
				}
				var title string
				h4Row(t, sdb, "SELECT title FROM h4r_items WHERE id = 2", &title)
				if title != "two-a" {
					t.Errorf("server item 2: %q, want two-a", title)
				}
				want := synctest.Dump(t, sdb, srv2.Reg)
				for name, db := range map[string]*bun.DB{"a": dbA, "b": dbB} {
					if d := synctest.Diff(want, synctest.Dump(t, db, srv2.Reg)); d != "" {
						t.Errorf("%s differs:\n%s", name, d)
					}
				}
			})
		}
	}
}

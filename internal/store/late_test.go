package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/store"
)

// lateNode is a tree: each row references its parent ON DELETE CASCADE.
type lateNode struct {
	bun.BaseModel `bun:"table:late_nodes"`

	ID       int64     `bun:"id,pk,autoincrement"`
	ParentID *int64    `bun:"parent_id"`
	Parent   *lateNode `bun:"rel:belongs-to,join:parent_id=id,on_delete:CASCADE"`
}

// TestLateDeletes: rows a referencing row outside the deletes holds on to
// wait, up the tree, until that row moves away; none is deleted before,
// so no ON DELETE CASCADE reaches the row that moves. A row still
// referencing a held one at the end fails Finish with dbsync.ErrForeignKey.
func TestLateDeletes(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		ctx := context.Background()
		if _, err := db.NewCreateTable().Model((*lateNode)(nil)).WithForeignKeys().Exec(ctx); err != nil {
			t.Fatal(err)
		}
		reg, err := dbsync.Track(db, (*lateNode)(nil))
		if err != nil {
			t.Fatal(err)
		}
		tbl := reg.Table("late_nodes")
		exec := func(q string, args ...any) {
			t.Helper()
			if _, err := db.ExecContext(ctx, q, args...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		left := func() int {
			t.Helper()
			var n int
			if err := db.NewRaw("SELECT COUNT(*) FROM late_nodes").Scan(ctx, &n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		// A chain 1 ← 2 ← 3 ← 4, and 5 under 1.
		exec("INSERT INTO late_nodes (id, parent_id) VALUES (1, NULL), (2, 1), (3, 2), (4, 3), (5, 1)")
		l := &store.LateDeletes{}
		// 4 (not deleted) holds 3, 3 holds 2, 2 holds 1; 5 goes at once.
		if err := l.Delete(ctx, db, reg, map[*dbsync.Table][]string{tbl: {"1", "2", "3", "5"}}); err != nil {
			t.Fatal(err)
		}
		if n := left(); n != 4 {
			t.Fatalf("%d rows left after the deletes, want 4 (1, 2 and 3 held, 4)", n)
		}
		for _, k := range []string{"1", "2", "3"} {
			if !l.Held(tbl, k) {
				t.Errorf("row %s not held", k)
			}
		}
		exec("UPDATE late_nodes SET parent_id = NULL WHERE id = 4") // the write
		if err := l.Finish(ctx, db, reg); err != nil {
			t.Fatal(err)
		}
		var ids []int64
		if err := db.NewRaw("SELECT id FROM late_nodes").Scan(ctx, &ids); err != nil {
			t.Fatal(err)
		}
		if len(ids) != 1 || ids[0] != 4 {
			t.Fatalf("rows %v left, want [4]", ids)
		}

		// A row that never moves away: Finish refuses.
		exec("INSERT INTO late_nodes (id, parent_id) VALUES (6, 4)")
		l = &store.LateDeletes{}
		if err := l.Delete(ctx, db, reg, map[*dbsync.Table][]string{tbl: {"4"}}); err != nil {
			t.Fatal(err)
		}
		if err := l.Finish(ctx, db, reg); !errors.Is(err, dbsync.ErrForeignKey) {
			t.Fatalf("finish with row 6 under held row 4: %v, want dbsync.ErrForeignKey", err)
		}
		if n := left(); n != 2 {
			t.Fatalf("%d rows left, want 2: nothing deleted by a cascade", n)
		}
	})
}

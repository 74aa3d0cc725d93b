package oplog_test

import (
	"slices"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
)

type archiveItem struct {
	bun.BaseModel `bun:"table:arch_items"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Title         string `bun:"title,notnull"`
}

type archiveOld struct {
	bun.BaseModel `bun:"table:arch_items_old"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Title         string `bun:"title,notnull"`
}

// TestInstallRenamedTableRecreated: a release renames a tracked table
// (arch_items to arch_items_old, which keeps its SQLite triggers) and
// creates a new table of the old name, both tracked. Install drops the
// old name's triggers from the renamed table and gives the new table its
// own; it refused, reading the triggers it had just dropped as another
// table's of the same names. The second round renames onto a name
// tracked before: on PostgreSQL its capture function is still there, and
// Install took the renamed table's triggers, which call the old name's
// function, for its own.
func TestInstallRenamedTableRecreated(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		ctx := t.Context()
		if _, err := db.NewCreateTable().Model((*archiveItem)(nil)).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		for _, client := range []bool{false, true} {
			if _, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS arch_items_old"); err != nil {
				t.Fatal(err)
			}
			v1, err := dbsync.Track(db, (*archiveItem)(nil))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := oplog.Install(ctx, db, v1, &oplog.InstallOptions{Client: client}); err != nil {
				t.Fatal(err)
			}
			v2, err := dbsync.Track(db, (*archiveItem)(nil), (*archiveOld)(nil))
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{
				"ALTER TABLE arch_items RENAME TO arch_items_old",
				"CREATE TABLE arch_items (id INTEGER PRIMARY KEY, title TEXT NOT NULL)",
			} {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := oplog.Install(ctx, db, v2, &oplog.InstallOptions{Client: client}); err != nil {
				t.Fatalf("client %v: install after the rename: %v", client, err)
			}
			if _, err := db.NewDelete().Model((*models.Operation)(nil)).Where("1 = 1").Exec(ctx); err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{
				"INSERT INTO arch_items (id, title) VALUES (7, 'new')",
				"INSERT INTO arch_items_old (id, title) VALUES (8, 'old')",
			} {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			var ops []models.Operation
			if err := db.NewSelect().Model(&ops).OrderExpr(`"order"`).Scan(ctx); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, op := range ops {
				got = append(got, v2.ByContentType(op.ContentTypeID).Name+":"+string(op.Command)+":"+op.RowID)
			}
			if want := []string{"arch_items:i:7", "arch_items_old:i:8"}; !slices.Equal(got, want) {
				t.Errorf("client %v: logged %q, want %q", client, got, want)
			}
		}
	})
}

package e2e_test

import (
	"context"
	"errors"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/protocol"
)

type h4TagPlain struct {
	bun.BaseModel `bun:"table:h4_tags"`
	ID            int64  `bun:"id,pk,autoincrement"`
	ItemID        int64  `bun:"item_id,notnull"`
	Text          string `bun:"text,notnull"`
}

type h4TagFK struct {
	bun.BaseModel `bun:"table:h4_tags"`
	ID            int64    `bun:"id,pk,autoincrement"`
	ItemID        int64    `bun:"item_id,notnull"`
	Text          string   `bun:"text,notnull"`
	Item          *h4Item1 `bun:"rel:belongs-to,join:item_id=id,on_delete:CASCADE"`
}

func h4CreateTags(ctx context.Context, db bun.IDB) error {
	if err := h4Create(ctx, db); err != nil {
		return err
	}
	_, err := db.NewCreateTable().Model((*h4TagPlain)(nil)).IfNotExists().Exec(ctx)
	return err
}

// Release 2 adds a foreign key (tags.item_id references items, ON DELETE
// CASCADE) on a column both releases know. An old node, whose database
// lacks the key, deletes an item with tags and no cascade runs: each of
// its Syncs is refused 409 foreign_key naming the rows, its other changes
// held back, until it gives the delete up (DiscardPending).
func TestAddedForeignKeyOldNodeDelete(t *testing.T) {
	t.Parallel()
	v1 := []any{(*h4Item1)(nil), (*h4TagPlain)(nil)}
	v2 := []any{(*h4Item1)(nil), (*h4TagFK)(nil)}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			sdb := dbtest.Open(t, kind)
			srv1 := synctest.NewServerWith(t, sdb, h4CreateTags, v1, nil)
			dbA := dbtest.SQLite(t)
			a := synctest.NewClientWith(t, srv1, "a", dbA, h4CreateTags, v1, nil)
			lcExec(t, dbA, "INSERT INTO h4_items (id, title) VALUES (1, 'one'), (2, 'two')",
				"INSERT INTO h4_tags (id, item_id, text) VALUES (1, 1, 't1'), (2, 2, 't2')")
			h4Sync(t, "a", a.Client)
			srv1.Srv.Close()
			h4ServerMigrate(t, sdb, v2, func(ctx context.Context, tx bun.Tx) error {
				qs := []string{"ALTER TABLE h4_tags ADD FOREIGN KEY (item_id) REFERENCES h4_items (id) ON DELETE CASCADE"}
				if kind == dbtest.KindSQLite {
					qs = []string{
						"CREATE TABLE h4_tags_new (id INTEGER PRIMARY KEY AUTOINCREMENT, item_id INTEGER NOT NULL REFERENCES h4_items (id) ON DELETE CASCADE, text VARCHAR NOT NULL)",
						"INSERT INTO h4_tags_new SELECT id, item_id, text FROM h4_tags",
						"DROP TABLE h4_tags",
						"ALTER TABLE h4_tags_new RENAME TO h4_tags",
					}
				}
				for _, q := range qs {
					if _, err := tx.ExecContext(ctx, q); err != nil {
						return err
					}
				}
				return nil
			})
			srv2 := synctest.NewServerWith(t, sdb, func(context.Context, bun.IDB) error { return nil }, v2, nil)
			oldA := h4Client(t, srv2.URL, dbA, v1...)
			lcExec(t, dbA, "DELETE FROM h4_items WHERE id = 1", "UPDATE h4_items SET title = 'two-a' WHERE id = 2")
			for i := range 2 {
				if _, err := oldA.Sync(ctx); !errors.Is(err, dbsync.ErrForeignKey) {
					t.Fatalf("old A sync %d: %v, want foreign_key", i, err)
				}
			}
			if err := oldA.DiscardPending(ctx, []protocol.ScopeEntry{{Table: "h4_items", PK: "1"}}); err != nil {
				t.Fatal(err)
			}
			h4Sync(t, "a", oldA)
			var title string
			h4Row(t, sdb, "SELECT title FROM h4_items WHERE id = 2", &title)
			if title != "two-a" {
				t.Errorf("server item 2: %q, want two-a", title)
			}
			if d := synctest.Diff(synctest.Dump(t, sdb, srv2.Reg), synctest.Dump(t, dbA, srv2.Reg)); d != "" {
				t.Errorf("a differs:\n%s", d)
			}
		})
	}
}

package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestDiscardDropsEveryNamedChange: DiscardPending is given two rows:
// item 3, which the server no longer has (a deleted it), and item 2,
// whose server copy references node 5, which b lacks. Both changes are
// dropped; before, fetching node 5 overwrote the list of named rows, item
// 3's update stayed pending, and b's next push brought back the row a
// deleted.
func TestDiscardDropsEveryNamedChange(t *testing.T) {
	h2Run(t, h2Plain, 2, func(e *h2Env) {
		h2Seed(e)
		a, b := e.ns[0], e.ns[1]
		e.exec(a, "INSERT INTO h2_nodes (id, parent_id, code) VALUES (5, NULL, 'v')",
			"UPDATE h2_items SET node_id = 5 WHERE id = 2",
			"DELETE FROM h2_items WHERE id = 3")
		e.sync(a)
		e.exec(b, "UPDATE h2_items SET sku = 'b3' WHERE id = 3", "UPDATE h2_items SET sku = 'b2' WHERE id = 2")
		if err := b.DiscardPending(e.ctx, []protocol.ScopeEntry{{Table: "h2_items", PK: "3"}, {Table: "h2_items", PK: "2"}}); err != nil {
			e.t.Fatal(err)
		}
		p, err := b.Pending(e.ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		if len(p) > 0 {
			e.t.Errorf("after DiscardPending of items 3 and 2, b still has pending %v", p)
		}
		e.sync(b)
		if n := e.count(e.srv.DB, "SELECT COUNT(*) FROM h2_items WHERE id = 3"); n != 0 {
			e.t.Errorf("item 3, deleted by a and whose change b gave up, is back on the server")
		}
	})
}

// Release 1 of an application knows tags and items; release 2 adds
// items.tag_id referencing tags.
type rv3Tag struct {
	bun.BaseModel `bun:"table:rv3_tags"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name,notnull"`
}

type rv3ItemV1 struct {
	bun.BaseModel `bun:"table:rv3_items"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name,notnull"`
}

type rv3ItemV2 struct {
	bun.BaseModel `bun:"table:rv3_items"`
	ID            int64   `bun:"id,pk,autoincrement"`
	Name          string  `bun:"name,notnull"`
	TagID         *int64  `bun:"tag_id"`
	Tag           *rv3Tag `bun:"rel:belongs-to,join:tag_id=id"`
}

var (
	rv3V1 = []any{(*rv3Tag)(nil), (*rv3ItemV1)(nil)}
	rv3V2 = []any{(*rv3Tag)(nil), (*rv3ItemV2)(nil)}
)

func rv3Create(models []any) func(context.Context, bun.IDB) error {
	return func(ctx context.Context, db bun.IDB) error {
		for _, m := range models {
			if _, err := db.NewCreateTable().Model(m).IfNotExists().WithForeignKeys().Exec(ctx); err != nil {
				return err
			}
		}
		return nil
	}
}

// TestOldNodeDeletesRowReferencedThroughUnknownColumn: a node of release
// 1 deletes tag 1, which item 1 references through tag_id, a column of
// release 2 that the node does not know. No pull can help (the node holds
// item 1, without the column): the refusal is a ScopeError naming the
// node's row (merge.md E1), as for a table it does not know, not a
// push_rejected at every sync.
func TestOldNodeDeletesRowReferencedThroughUnknownColumn(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			srv := synctest.NewServerWith(t, synctest.ServerDB(t, kind, "rv3v2", rv3Create(rv3V2), rv3V2), rv3Create(rv3V2), rv3V2, nil)
			b := synctest.NewClientWith(t, srv, "b", synctest.ClientDB(t, kind, "rv3v2", rv3Create(rv3V2), rv3V2), rv3Create(rv3V2), rv3V2, nil)
			a := synctest.NewClientWith(t, srv, "a", synctest.ClientDB(t, kind, "rv3v1", rv3Create(rv3V1), rv3V1), rv3Create(rv3V1), rv3V1, nil)
			lcExec(t, b.DB, "INSERT INTO rv3_tags (id, name) VALUES (1, 't1')", "INSERT INTO rv3_items (id, name) VALUES (1, 'i1'), (2, 'i2')")
			mustSync(t, b)
			mustSync(t, a)
			lcExec(t, b.DB, "UPDATE rv3_items SET tag_id = 1 WHERE id = 1")
			mustSync(t, b)
			mustSync(t, a)
			lcExec(t, a.DB, "DELETE FROM rv3_tags WHERE id = 1", "UPDATE rv3_items SET name = 'i2-a' WHERE id = 2")
			var errs []error
			for range 3 {
				_, err := a.Sync(ctx)
				errs = append(errs, err)
				var se *dbsync.ScopeError
				if errors.As(err, &se) {
					if err := a.DiscardPending(ctx, se.Entries); err != nil {
						t.Fatal(err)
					}
				}
			}
			if errs[2] != nil {
				t.Fatalf("the old node's syncs: %v; its other change never reaches the server", errs)
			}
		})
	}
}

// TestOldNodeUnknownColumnScoped: the same on a scoped server (both
// tables global): a ScopeError too, not pull_needed, which would make
// every Sync pull in vain MaxSyncRounds times.
func TestOldNodeUnknownColumnScoped(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			cfg := &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: server.Scopes{
				"rv3_tags":  server.GlobalWritable(),
				"rv3_items": server.GlobalWritable(),
			}}
			srv := synctest.NewServerWith(t, synctest.ServerDB(t, kind, "rv3v2", rv3Create(rv3V2), rv3V2), rv3Create(rv3V2), rv3V2, cfg)
			b := synctest.NewClientAs(t, srv, "b", "Bearer bob", synctest.ClientDB(t, kind, "rv3v2", rv3Create(rv3V2), rv3V2), rv3Create(rv3V2), rv3V2, nil)
			a := synctest.NewClientAs(t, srv, "a", "Bearer ann", synctest.ClientDB(t, kind, "rv3v1", rv3Create(rv3V1), rv3V1), rv3Create(rv3V1), rv3V1, nil)
			lcExec(t, b.DB, "INSERT INTO rv3_tags (id, name) VALUES (1, 't1')", "INSERT INTO rv3_items (id, name) VALUES (1, 'i1'), (2, 'i2')")
			mustSync(t, b)
			mustSync(t, a)
			lcExec(t, b.DB, "UPDATE rv3_items SET tag_id = 1 WHERE id = 1")
			mustSync(t, b)
			mustSync(t, a)
			lcExec(t, a.DB, "DELETE FROM rv3_tags WHERE id = 1", "UPDATE rv3_items SET name = 'i2-a' WHERE id = 2")
			var errs []error
			for range 3 {
				_, err := a.Sync(ctx)
				errs = append(errs, err)
				var se *dbsync.ScopeError
				if errors.As(err, &se) {
					if err := a.DiscardPending(ctx, se.Entries); err != nil {
						t.Fatal(err)
					}
				}
			}
			if errs[2] != nil {
				t.Fatalf("the old node's syncs: %v", errs)
			}
		})
	}
}

// TestDiscardCountsDistinctRows: 5001 items whose server copies all
// reference node 5, which b lacks: DiscardPending needs 5002 rows, within
// its bound of 10,000 (it counted node 5 once per item, and gave up).
// DBSYNC_LONG=1 runs it: 5001 queries.
func TestDiscardCountsDistinctRows(t *testing.T) {
	if !dbtest.Long() {
		t.Skip("DBSYNC_LONG=1 runs it")
	}
	h2Run(t, map[string]*client.Config{"whole": nil}, 2, func(e *h2Env) {
		h2Seed(e)
		a, b := e.ns[0], e.ns[1]
		e.exec(a, `WITH RECURSIVE s(i) AS (SELECT 100 UNION ALL SELECT i + 1 FROM s WHERE i < 5100)
INSERT INTO h2_items (id, node_id, sku) SELECT i, 2, 'k' || i FROM s`)
		e.sync(a)
		e.sync(b)
		e.exec(a, "INSERT INTO h2_nodes (id, parent_id, code) VALUES (5, NULL, 'v')", "UPDATE h2_items SET node_id = 5 WHERE id >= 100")
		e.sync(a)
		e.exec(b, "UPDATE h2_items SET sku = sku || '-b' WHERE id >= 100")
		var named []protocol.ScopeEntry
		for i := 100; i <= 5100; i++ {
			named = append(named, protocol.ScopeEntry{Table: "h2_items", PK: fmt.Sprint(i)})
		}
		if err := b.DiscardPending(e.ctx, named); err != nil {
			e.t.Fatalf("DiscardPending of %d rows needing %d: %v", len(named), len(named)+1, err)
		}
	})
}

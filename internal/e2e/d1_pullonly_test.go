package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// h6Category is a pull-only table (the server's own rows); h6Item, both
// ways, belongs to a category.
type h6Category struct {
	bun.BaseModel `bun:"table:h6_categories"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name,notnull"`
}

type h6Item struct {
	bun.BaseModel `bun:"table:h6_items"`
	ID            int64       `bun:"id,pk,autoincrement"`
	CategoryID    int64       `bun:"category_id,notnull"`
	Title         string      `bun:"title,notnull"`
	Category      *h6Category `bun:"rel:belongs-to,join:category_id=id,on_delete:CASCADE"`
}

func h6Models() []any { return []any{dbsync.PullOnly((*h6Category)(nil)), (*h6Item)(nil)} }

func h6Create(ctx context.Context, db bun.IDB) error {
	for _, m := range []any{(*h6Category)(nil), (*h6Item)(nil)} {
		if _, err := db.NewCreateTable().Model(m).IfNotExists().WithForeignKeys().Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

// TestD1PullOnlyParentDeleted, servers and nodes of both dialects, over
// HTTP, whole and chunked pulls (merge.md D1): the server deletes a
// category (a pull-only table) while a node has an unpushed item in it.
// The node cannot keep the category (no push of it is accepted), so its
// pull is refused, nothing applied, with dbsync.ErrPendingChanges and a
// *dbsync.ScopeError naming the item. Re-pointed to another category, or
// given up with DiscardPending, the item no longer holds the category,
// and the next Sync deletes it: the node matches the server. Before, the
// merge kept the category and logged an insert of it, which the server
// refuses; after giving the item up, the category stayed on the node for
// good.
func TestD1PullOnlyParentDeleted(t *testing.T) {
	t.Parallel()
	for _, chunk := range []int{0, 1} {
		for _, kind := range dbtest.Kinds {
			for _, settle := range []string{"repoint", "discard"} {
				t.Run(fmt.Sprintf("chunk%d/%s/%s", chunk, kind, settle), func(t *testing.T) {
					t.Parallel()
					ctx := context.Background()
					mods := h6Models()
					srv := synctest.NewServerWith(t, synctest.ServerDB(t, kind, "h6d1", h6Create, mods), h6Create, mods, nil)
					a := synctest.NewClientWith(t, srv, "a", synctest.ClientDB(t, kind, "h6d1", h6Create, mods), h6Create, mods, &client.Config{ChunkSize: chunk})
					lcExec(t, srv.DB, "INSERT INTO h6_categories (id, name) VALUES (1, 'one'), (2, 'two')")
					mustSync(t, a)
					wantKeys(t, a, "h6_categories", "1", "2")
					before, err := a.Version(ctx)
					if err != nil {
						t.Fatal(err)
					}

					lcExec(t, a.DB, "INSERT INTO h6_items (id, category_id, title) VALUES (10, 1, 'ten')")
					// The server's versions: a category renamed, one added,
					// then category 1 deleted.
					lcExec(t, srv.DB, "UPDATE h6_categories SET name = 'deux' WHERE id = 2")
					lcExec(t, srv.DB, "INSERT INTO h6_categories (id, name) VALUES (3, 'three')")
					lcExec(t, srv.DB, "DELETE FROM h6_categories WHERE id = 1")

					_, err = a.Sync(ctx)
					var se *dbsync.ScopeError
					if !errors.Is(err, dbsync.ErrPendingChanges) || !errors.As(err, &se) {
						t.Fatalf("sync: %v, want dbsync.ErrPendingChanges with a *dbsync.ScopeError", err)
					}
					if want := []protocol.ScopeEntry{{Table: "h6_items", PK: "10"}}; len(se.Entries) != 1 || se.Entries[0] != want[0] {
						t.Fatalf("refused rows %v, want %v", se.Entries, want)
					}
					// Nothing of the pull applied.
					wantKeys(t, a, "h6_categories", "1", "2")
					wantKeys(t, a, "h6_items", "10")
					if v, err := a.Version(ctx); err != nil || v != before {
						t.Fatalf("version %d, %v after the refused pull; want %d", v, err, before)
					}
					pend, err := a.Pending(ctx)
					if err != nil {
						t.Fatal(err)
					}
					if len(pend) != 1 || pend[0].Table != "h6_items" || pend[0].RowID != "10" {
						t.Fatalf("pending %+v, want the item's insert alone", pend)
					}

					switch settle {
					case "repoint":
						lcExec(t, a.DB, "UPDATE h6_items SET category_id = 2 WHERE id = 10")
						mustSync(t, a)
						wantKeys(t, a, "h6_items", "10")
						if got := keys(t, srv.DB, "h6_items"); len(got) != 1 || got[0] != "10" {
							t.Fatalf("server items %v, want 10", got)
						}
					case "discard":
						if err := a.DiscardPending(ctx, se.Entries); err != nil {
							t.Fatal(err)
						}
						mustSync(t, a)
						wantKeys(t, a, "h6_items")
					}
					wantKeys(t, a, "h6_categories", "2", "3")
					if n := pendingCount(t, a); n != 0 {
						t.Fatalf("a holds %d pending operations, want none", n)
					}
					if d := synctest.Diff(synctest.Dump(t, a.DB, a.Reg), synctest.Dump(t, srv.DB, srv.Reg)); d != "" {
						t.Fatalf("node and server differ:\n%s", d)
					}
				})
			}
		}
	}
}

// TestD1PullOnlyParentDeletedReset is TestD1PullOnlyParentDeleted for a
// node the server's trim left behind (merge.md T4): its reset merges the
// server's rows as a pull would, and a category the server no longer has
// that the node's unpushed item references refuses the reset the same
// way, nothing applied. Once the item is re-pointed or given up, the next
// Sync resets the node.
func TestD1PullOnlyParentDeletedReset(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, settle := range []string{"repoint", "discard"} {
			t.Run(kind+"/"+settle, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				mods := h6Models()
				clk := dbtest.NewClock(time.Now())
				srv := synctest.NewServerWith(t, synctest.ServerDB(t, kind, "h6d1", h6Create, mods), h6Create, mods,
					&server.Config{Now: clk.Now, ClockSkew: 100 * time.Hour, NodeHorizon: 24 * time.Hour})
				node := func(name string) *synctest.Client {
					return synctest.NewClientWith(t, srv, name, synctest.ClientDB(t, kind, "h6d1", h6Create, mods), h6Create, mods, nil)
				}
				a, b := node("a"), node("b")
				lcExec(t, srv.DB, "INSERT INTO h6_categories (id, name) VALUES (1, 'one'), (2, 'two')")
				mustSync(t, a)
				mustSync(t, b)

				lcExec(t, a.DB, "INSERT INTO h6_items (id, category_id, title) VALUES (10, 1, 'ten')")
				lcExec(t, srv.DB, "DELETE FROM h6_categories WHERE id = 1")
				mustSync(t, b)
				clk.Advance(25 * time.Hour)
				lcExec(t, srv.DB, "INSERT INTO h6_categories (id, name) VALUES (3, 'three')")
				lcExec(t, b.DB, "INSERT INTO h6_items (id, category_id, title) VALUES (1, 2, 'one')")
				for range 2 {
					mustSync(t, b)
				}
				tr, err := srv.Srv.Trim(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if av, err := a.Version(ctx); err != nil || tr.Floor <= av {
					t.Fatalf("trim %+v does not leave a (version %d, %v) behind", tr, av, err)
				}

				before := synctest.Dump(t, a.DB, a.Reg)
				_, err = a.Sync(ctx)
				var se *dbsync.ScopeError
				if !errors.Is(err, dbsync.ErrPendingChanges) || !errors.As(err, &se) {
					t.Fatalf("sync: %v, want dbsync.ErrPendingChanges with a *dbsync.ScopeError", err)
				}
				if want := (protocol.ScopeEntry{Table: "h6_items", PK: "10"}); len(se.Entries) != 1 || se.Entries[0] != want {
					t.Fatalf("refused rows %v, want %v", se.Entries, want)
				}
				if d := synctest.Diff(before, synctest.Dump(t, a.DB, a.Reg)); d != "" {
					t.Fatalf("the refused reset changed a:\n%s", d)
				}

				wantItems := []string{"1"}
				switch settle {
				case "repoint":
					lcExec(t, a.DB, "UPDATE h6_items SET category_id = 2 WHERE id = 10")
					wantItems = []string{"1", "10"}
				case "discard":
					if err := a.DiscardPending(ctx, se.Entries); err != nil {
						t.Fatal(err)
					}
				}
				mustSync(t, a)
				wantKeys(t, a, "h6_categories", "2", "3")
				wantKeys(t, a, "h6_items", wantItems...)
				if n := pendingCount(t, a); n != 0 {
					t.Fatalf("a holds %d pending operations, want none", n)
				}
				if d := synctest.Diff(synctest.Dump(t, a.DB, a.Reg), synctest.Dump(t, srv.DB, srv.Reg)); d != "" {
					t.Fatalf("node and server differ:\n%s", d)
				}
			})
		}
	}
}

package peer_test

import (
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
)

// swapListNames swaps the unique names x and y of two lists on n in one
// transaction, through a temporary name (no state ever collides).
func swapListNames(t *testing.T, n *peer.Node) {
	t.Helper()
	tx, err := n.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"UPDATE lists SET name = 'tmp' WHERE name = 'x'",
		"UPDATE lists SET name = 'x' WHERE name = 'y'",
		"UPDATE lists SET name = 'y' WHERE name = 'tmp'",
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestSwapSplitAcrossPages: the two rows of a swap written in one
// transaction on A reach B in two pages of A's feed (a page ends at
// MaxBatchBytes, or at the batch size). B's Apply reads both pages in one
// transaction: the first page's row parks the second page's row (still
// holding the old value), which the second page rewrites. Before, parking
// looked at one page only: ErrConstraint at every sync (pages split at
// the same place every time), blocking every change behind the swap.
func TestSwapSplitAcrossPages(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		sender *peer.Config
		recv   *peer.Config
	}{
		// Each page of A's feed holds one change (rows are far over 1 byte).
		{"max_batch_bytes", &peer.Config{MaxBatchBytes: 1}, nil},
		// The receiver asks for pages of one change.
		{"batch_size", nil, &peer.Config{BatchSize: 1}},
	}
	for _, kind := range dbtest.Kinds {
		for _, c := range cases {
			t.Run(kind+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				a, b := newNode(t, kind, c.sender), newNode(t, kind, c.recv)
				insert(t, a, &testmodels.List{Name: "x"})
				insert(t, a, &testmodels.List{Name: "y"})
				mustSync(t, a, b.AsPeer())
				tick()
				swapListNames(t, a)
				insert(t, a, newNote("rides along"))
				for i := 0; i < 3; i++ {
					if _, err := b.Sync(ctx, a.AsPeer()); err != nil {
						t.Fatalf("sync %d after a swap of unique values split across pages: %v", i, err)
					}
				}
				sameDigests(t, a, b)
			})
		}
	}
}

// Cat is an integer-keyed table that references itself, with a unique
// name: its rows of a batch are written in layers (selfLayers), parents
// first.
type Cat struct {
	bun.BaseModel `bun:"table:cats"`
	ID            int64  `bun:"id,pk,autoincrement"`
	ParentID      *int64 `bun:"parent_id"`
	Name          string `bun:"name,notnull,unique"`
	Parent        *Cat   `bun:"rel:belongs-to,join:parent_id=id,on_delete:CASCADE"`
}

// TestSwapAcrossSelfLayers: a parent and its child (integer keys,
// one table) swap their unique names on A in one transaction. On B the
// batch's rows of the table are written in two layers (the child after
// its parent, whose local key it needs): the parent's write parks the
// child, which the next layer rewrites (before, ErrConstraint at every
// sync).
func TestSwapAcrossSelfLayers(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a, b := modelNode(t, kind, nil, (*Cat)(nil)), modelNode(t, kind, nil, (*Cat)(nil))
			root := &Cat{Name: "x"}
			insert(t, a, root)
			insert(t, a, &Cat{Name: "y", ParentID: &root.ID})
			mustSync(t, a, b.AsPeer())
			tick()
			tx, err := a.DB().BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{
				"UPDATE cats SET name = 'tmp' WHERE name = 'x'",
				"UPDATE cats SET name = 'x' WHERE name = 'y'",
				"UPDATE cats SET name = 'y' WHERE name = 'tmp'",
			} {
				if _, err := tx.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				if _, err := b.Sync(ctx, a.AsPeer()); err != nil {
					t.Fatalf("sync %d after a parent and its child swapped unique names: %v", i, err)
				}
			}
			sameDigests(t, a, b)
		})
	}
}

package peer_test

import (
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// TestUniqueSwap: node A swaps the unique names of two lists in one
// transaction (through a temporary name): no state of either node ever has
// a collision, and B applies the swap (its rows are parked first). Before,
// B's apply failed with ErrConstraint at every sync, blocking every change
// behind it in A's feed.
func TestUniqueSwap(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a, b := newNode(t, kind, nil), newNode(t, kind, nil)
			insert(t, a, &testmodels.List{Name: "x"})
			insert(t, a, &testmodels.List{Name: "y"})
			mustSync(t, a, b.AsPeer())
			tick()
			tx, err := a.DB().BeginTx(ctx, nil)
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
			insert(t, a, newNote("rides along"))
			for i := 0; i < 3; i++ {
				if _, err := b.Sync(ctx, a.AsPeer()); err != nil {
					t.Fatalf("sync %d after a swap of unique values: %v", i, err)
				}
			}
			sameDigests(t, a, b)
		})
	}
}

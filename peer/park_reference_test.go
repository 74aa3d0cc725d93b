package peer_test

import (
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/peer"
)

type rvList struct {
	bun.BaseModel `bun:"table:rv_lists"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name,notnull"`
}

// rvBadge: one badge per list (a unique reference, NOT NULL: store.Park
// can only give it a reference placeholder, a number above the column's
// values, which may be the key of a real list).
type rvBadge struct {
	bun.BaseModel `bun:"table:rv_badges"`
	ID            int64   `bun:"id,pk,autoincrement"`
	ListID        int64   `bun:"list_id,notnull,unique"`
	Label         string  `bun:"label,notnull"`
	List          *rvList `bun:"rel:belongs-to,join:list_id=id,on_delete:CASCADE"`
}

type rvStamp struct {
	bun.BaseModel `bun:"table:rv_stamps"`
	ID            int64    `bun:"id,pk,autoincrement"`
	BadgeID       int64    `bun:"badge_id,notnull"`
	Body          string   `bun:"body,notnull"`
	Badge         *rvBadge `bun:"rel:belongs-to,join:badge_id=id,on_delete:CASCADE"`
}

// TestParkedReferencePlaceholder: badges X (list 1) and Y (list 2)
// swap lists on A in one transaction; then A deletes list 3, which no
// badge references, and edits Y's label. A's feed: X, list 3's delete,
// Y. B reads it one change a page (MaxBatchBytes 1) in one apply: X's
// write parks Y. Its list_id took the placeholder 3 (above the column's
// values only): list 3 on B. The next page deleted list 3: the delete
// rule found Y among its children and deleted it, and Y's stamp S with
// it, with tombstones newer than their versions (the nil node). Y came
// back with the last page, S did not, and B's tombstone then deleted it
// on A; nobody deleted S. A reference's placeholder is now also outside
// the referenced keys: it references nothing.
func TestParkedReferencePlaceholder(t *testing.T) {
	t.Parallel()
	models := []any{(*rvList)(nil), (*rvBadge)(nil), (*rvStamp)(nil)}
	// "one_page" is the control: the same changes in one page (deletes
	// first, so list 3 goes before Y is parked) keep S.
	cases := []struct {
		name string
		cfg  *peer.Config
	}{{"pages", &peer.Config{MaxBatchBytes: 1}}, {"one_page", nil}}
	for _, kind := range dbtest.Kinds {
		for _, c := range cases {
			t.Run(kind+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				a := cfgNode(t, kind, c.cfg, nil, models...)
				b := cfgNode(t, kind, nil, nil, models...)
				for _, name := range []string{"l1", "l2", "l3"} {
					insert(t, a, &rvList{Name: name})
				}
				insert(t, a, &rvBadge{ListID: 1, Label: "x"})
				insert(t, a, &rvBadge{ListID: 2, Label: "y"})
				var y rvBadge
				if err := a.DB().NewSelect().Model(&y).Where("label = 'y'").Scan(ctx); err != nil {
					t.Fatal(err)
				}
				insert(t, a, &rvStamp{BadgeID: y.ID, Body: "keep me"})
				mustSync(t, b, a.AsPeer())
				tick()
				tx, err := a.DB().BeginTx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, q := range []string{
					"UPDATE rv_badges SET list_id = 3 WHERE label = 'y'",
					"UPDATE rv_badges SET list_id = 2 WHERE label = 'x'",
					"UPDATE rv_badges SET list_id = 1 WHERE label = 'y'",
				} {
					if _, err := tx.ExecContext(ctx, q); err != nil {
						t.Fatal(err)
					}
				}
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
				tick()
				exec(t, a, "DELETE FROM rv_lists WHERE name = 'l3'")
				tick()
				exec(t, a, "UPDATE rv_badges SET label = 'y2' WHERE label = 'y'")
				for i := 0; i < 2; i++ {
					if _, err := b.Sync(ctx, a.AsPeer()); err != nil {
						t.Fatalf("b pulls a (%d): %v", i, err)
					}
					if _, err := a.Sync(ctx, b.AsPeer()); err != nil {
						t.Fatalf("a pulls b (%d): %v", i, err)
					}
				}
				for _, n := range []*peer.Node{a, b} {
					if c := count(t, n, "rv_stamps"); c != 1 {
						t.Errorf("node %s holds %d stamps, want 1 (nobody deleted S)", n.ID(), c)
					}
				}
				sameDigests(t, a, b)
			})
		}
	}
}

package peer_test

import (
	"math"
	"strconv"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
)

// A float changed from 0 to -0 (and back) on one node reads back with the
// new sign on its peers, though = calls the two equal: the write is a
// new version (the capture trigger tells them apart), and the apply
// writes -0 as the database keeps it (bun writes -0, the integer 0).
// PostgreSQL only: SQLite's REAL columns keep no -0.0.
func TestZeroSignReachesPeers(t *testing.T) {
	t.Parallel()
	a, b := newNode(t, dbtest.KindPostgres, nil), newNode(t, dbtest.KindPostgres, nil)
	n := newNote("milk")
	zero := 0.0
	n.Score = &zero
	insert(t, a, n)
	mustSync(t, b, a.AsPeer())
	for _, v := range []string{"'-0'", "0"} {
		exec(t, a, "UPDATE notes SET score = "+v+" WHERE id = ?", n.ID)
		mustSync(t, b, a.AsPeer())
		for name, node := range map[string]*peer.Node{"a": a, "b": b} {
			var got testmodels.Note
			if err := node.DB().NewSelect().Model(&got).Where("id = ?", n.ID).Scan(ctx); err != nil {
				t.Fatal(err)
			}
			if got.Score == nil || *got.Score != 0 || math.Signbit(*got.Score) != (v == "'-0'") {
				var text string
				if got.Score != nil {
					text = strconv.FormatFloat(*got.Score, 'g', -1, 64)
				}
				t.Fatalf("after score = %s, %s reads %q", v, name, text)
			}
		}
	}
}

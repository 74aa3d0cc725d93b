package peer_test

import (
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
)

// An UPDATE that changes nothing (the same values written again) is no
// new version: written after another node's edit it has not received, it
// would win with the node's unchanged values and undo the edit
// everywhere. A real change still wins by its clock.
func TestNoOpUpdateIsNoVersion(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a, b := newNode(t, kind, nil), newNode(t, kind, nil)
			n := newNote("milk")
			insert(t, a, n)
			exec(t, a, "INSERT INTO lists (name) VALUES ('home')")
			mustSync(t, a, b.AsPeer())

			exec(t, a, "UPDATE notes SET body = 'oat milk' WHERE id = ?", n.ID)
			exec(t, a, "UPDATE lists SET name = 'house'")
			exec(t, b, "UPDATE notes SET body = body, count = count")
			exec(t, b, "UPDATE lists SET name = name")
			mustSync(t, b, a.AsPeer())
			sameLive(t, a, b)
			for _, row := range live(t, a) {
				if row != "lists "+row[6:42]+" house" && row != "notes "+n.ID.String()+" oat milk|0" {
					t.Fatalf("a row lost a's edit: %q\n%v", row, live(t, a))
				}
			}
		})
	}
}

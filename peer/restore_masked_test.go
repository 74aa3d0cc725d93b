package peer_test

import (
	"fmt"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

// A restore is found whatever the restored node received meanwhile: b
// read a's writes "lost" and X and edited X; c got b's edit; a, restored,
// wrote three notes and pulled b's edit of X from c (c never read past the
// backup) before b asked for its feed. a still gets "lost" back, and b
// every write of a after the restore. (A check of the last version b read,
// X, was blind here: a held a newer one.)
func TestRestoreFoundWhateverTheNodeReceived(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		for _, relay := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/b-c sync %v", kind, relay), func(t *testing.T) {
				t.Parallel()
				a, b, c := newNode(t, kind, nil), newNode(t, kind, nil), newNode(t, kind, nil)
				insert(t, a, newNote("before the backup"))
				mustSync(t, b, a.AsPeer())
				mustSync(t, c, a.AsPeer())
				mustSync(t, c, b.AsPeer())
				restore := synctest.Backup(t, a.DB())

				lost := newNote("lost: written after the backup")
				insert(t, a, lost)
				x := newNote("x: written after the backup")
				insert(t, a, x) // the last change b reads: b's mark
				mustSync(t, b, a.AsPeer())
				exec(t, b, "UPDATE notes SET body = ? WHERE id = ?", "x: edited on b", x.ID)
				mustSync(t, c, b.AsPeer())

				restore()
				a = reopen(t, a)
				for i := range 3 {
					insert(t, a, newNote(fmt.Sprintf("written after the restore %d", i)))
				}
				mustSync(t, a, c.AsPeer()) // c never read past the backup: a holds its mark

				for range 2 {
					mustSync(t, a, b.AsPeer())
					mustSync(t, a, c.AsPeer())
					if relay {
						mustSync(t, b, c.AsPeer())
					}
				}
				if got := len(live(t, a)); got != 6 {
					t.Errorf("a holds %d notes, want 6 (its lost write back):\n%v", got, live(t, a))
				}
				sameLive(t, a, b, c)
			})
		}
	}
}

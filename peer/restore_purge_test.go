package peer_test

import (
	"fmt"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

// A restore is found also when the restored node's purge point passed its
// peer's cursor since (it purged old tombstones it received after the
// restore): the peer's resynchronization must not hide it, or the node
// never gets its lost writes back.
func TestRestoreFoundPastThePurgePoint(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a, b := newNode(t, kind, nil), newNode(t, kind, nil)
			kept := newNote("before the backup")
			insert(t, a, kept)
			mustSync(t, a, b.AsPeer())
			restore := synctest.Backup(t, a.DB())
			insert(t, a, newNote("written after the backup"))
			mustSync(t, b, a.AsPeer())
			restore()
			a = reopen(t, a)
			for i := range 4 {
				insert(t, a, newNote(fmt.Sprintf("after the restore %d", i)))
			}
			// As a Purge of old tombstones received since the restore does:
			// the purge point passes b's cursor (the horizon stays old).
			exec(t, a, "UPDATE sync_lww_node SET purged_seq = seq WHERE id = 1")
			mustSync(t, b, a.AsPeer())
			mustSync(t, b, a.AsPeer())
			mustSync(t, a, b.AsPeer())
			sameLive(t, a, b)
			if got := len(live(t, a)); got != 6 {
				t.Fatalf("a holds %d rows, want 6:\n%v", got, live(t, a))
			}
		})
	}
}

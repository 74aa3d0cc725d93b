package peer_test

import (
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/peer"
)

// TestResyncDropReachesTheWriter: w writes a note, which reaches a, then
// hub (chain w – a – hub). a goes out of reach; hub deletes the note and
// purges the tombstone. a resynchronizes from hub and drops the note. w,
// which syncs only with a, must then lose the note too: the tombstone a
// wrote for it must travel to w, whose feed wrote the row.
func TestResyncDropReachesTheWriter(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			w, a, hub := newNode(t, dbtest.KindSQLite, nil), newNode(t, kind, nil), newNode(t, dbtest.KindSQLite, nil)
			x := newNote("doomed")
			insert(t, w, x)
			mustSync(t, w, a.AsPeer())
			mustSync(t, a, hub.AsPeer())
			// a goes out of reach; hub deletes the note and forgets.
			exec(t, hub, "DELETE FROM notes WHERE id = ?", x.ID)
			tick()
			if k, err := hub.Purge(ctx, time.Millisecond); err != nil || k != 1 {
				t.Fatalf("purge: %d, %v", k, err)
			}
			if rep := mustSync(t, a, hub.AsPeer()); !rep.Resynced {
				t.Fatal("a did not resynchronize")
			}
			if body(t, a, x.ID) != "(none)" {
				t.Fatal("a kept the note hub deleted and forgot")
			}
			for range 2 {
				mustSync(t, w, a.AsPeer())
				mustSync(t, a, w.AsPeer())
			}
			for i, n := range []*peer.Node{w, a, hub} {
				if got := body(t, n, x.ID); got != "(none)" {
					t.Errorf("node %d holds the note: %q", i, got)
				}
			}
			sameLive(t, w, a, hub)
		})
	}
}

package peer_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
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

// TestFeedPastUntrackedTables: a table leaves the registry (the mesh
// stops syncing it, the application keeps it). Its versions stay in the
// node's feed, and its capture triggers may add more; a page of the feed
// full of them must not end the feed: the tracked changes after them
// still reach the peer.
func TestFeedPastUntrackedTables(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			notesOnly := []any{(*testmodels.Note)(nil)}
			db := synctest.NodeDB(t, kind, "testmodels", testmodels.CreateSchema)
			all := synctest.NewNodeWith(t, db, testmodels.All(), nil)
			for i := range 25 {
				insert(t, all, &testmodels.List{Name: fmt.Sprintf("l%d", i)})
			}
			// The next release syncs notes only.
			a := synctest.NewNodeWith(t, db, notesOnly, &peer.Config{BatchSize: 10})
			x := newNote("after the lists")
			insert(t, a, x)
			b := synctest.NewNodeWith(t, synctest.NodeDB(t, dbtest.KindSQLite, "testmodels", testmodels.CreateSchema), notesOnly, nil)
			mustSync(t, b, a.AsPeer())
			if got := body(t, b, x.ID); got != "after the lists" {
				t.Fatalf("b holds %q, want the note a wrote after the untracked rows", got)
			}
		})
	}
}

// TestResyncPastUntrackedTables: the same feed (a page full of versions
// of a table no longer tracked) answers a resynchronization: the full
// state must not end there, or the resynchronizing node takes every row
// after it for one its peer deleted and forgot, and deletes it, on every
// node: here a note b wrote and nobody deleted.
func TestResyncPastUntrackedTables(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			notesOnly := []any{(*testmodels.Note)(nil)}
			db := synctest.NodeDB(t, kind, "testmodels", testmodels.CreateSchema)
			all := synctest.NewNodeWith(t, db, testmodels.All(), nil)
			for i := range 25 {
				insert(t, all, &testmodels.List{Name: fmt.Sprintf("l%d", i)})
			}
			a := synctest.NewNodeWith(t, db, notesOnly, &peer.Config{BatchSize: 10})
			b := synctest.NewNodeWith(t, synctest.NodeDB(t, dbtest.KindSQLite, "testmodels", testmodels.CreateSchema), notesOnly, nil)
			w := newNote("b's note")
			insert(t, b, w)
			mustSync(t, b, a.AsPeer())
			if body(t, a, w.ID) != "b's note" {
				t.Fatal("b's note did not reach a")
			}
			// a deletes another note and forgets its tombstone.
			d := newNote("deleted")
			insert(t, a, d)
			exec(t, a, "DELETE FROM notes WHERE id = ?", d.ID)
			tick()
			if k, err := a.Purge(ctx, time.Millisecond); err != nil || k != 1 {
				t.Fatalf("purge: %d, %v", k, err)
			}
			mustSync(t, b, a.AsPeer())
			for i, n := range []*peer.Node{a, b} {
				if got := body(t, n, w.ID); got != "b's note" {
					t.Errorf("node %d: b's note is %q", i, got)
				}
			}
		})
	}
}

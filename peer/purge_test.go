package peer_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/peer"
)

// TestPurgeChildOfForgottenParent: b deletes folder F and purges the
// tombstone before a (which holds F, out of reach longer than the horizon)
// learns of it; a then adds a doc in F. b's sync with a, whichever node
// starts it, must not fail for ever on the doc's reference to a folder b
// forgot: a resynchronizes, drops F, and the doc follows it (a delete wins).
func TestPurgeChildOfForgottenParent(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a := cfgNode(t, kind, nil, nil, stressModels()...)
			b := cfgNode(t, kind, nil, nil, stressModels()...)
			f := uuid.New()
			insert(t, a, &Folder{ID: f, Name: "f"})
			mustSync(t, b, a.AsPeer())
			exec(t, b, "DELETE FROM folders WHERE id = ?", f)
			tick()
			if k, err := b.Purge(ctx, time.Millisecond); err != nil || k != 1 {
				t.Fatalf("purge: %d, %v; want 1 tombstone", k, err)
			}
			insert(t, a, &Doc{ID: uuid.New(), FolderID: f, Body: "d"})
			mustSync(t, b, a.AsPeer())
			mustSync(t, a, b.AsPeer())
			for i, n := range []*peer.Node{a, b} {
				if folders, docs := count(t, n, "folders"), count(t, n, "docs"); folders != 0 || docs != 0 {
					t.Errorf("node %d holds %d folders and %d docs, want none", i, folders, docs)
				}
			}
			sameDigests(t, a, b)
		})
	}
}

// TestPurgeKeepsWriteNeverReceived: a writes a note offline that b never
// received, stamped older than b's tombstone horizon: a was out of reach
// longer than the horizon, or (a device whose clock reset) a's clock was
// 60 days behind when it wrote, b's horizon 30 days back. b purged. Before,
// b took the note for one it had deleted and forgotten: whichever node
// started, the resynchronization deleted it on a, or b's apply turned it
// into a tombstone at its horizon that deleted it on a, both syncs
// reporting success; the note was lost on every node (with the clock
// behind, a write made minutes before). Now both nodes keep it, and a note
// b had received from a and deleted is still dropped on a.
func TestPurgeKeepsWriteNeverReceived(t *testing.T) {
	t.Parallel()
	const day = 24 * time.Hour
	for _, kind := range dbtest.Kinds {
		for _, clockBehind := range []bool{false, true} {
			for _, writerStarts := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/clock_behind=%v/writer_starts=%v", kind, clockBehind, writerStarts), func(t *testing.T) {
					t.Parallel()
					a, b := newNode(t, kind, nil), newNode(t, dbtest.KindSQLite, nil)
					// deleted: a's note that b received, deleted and forgot.
					deleted := newNote("deleted on b")
					insert(t, a, deleted)
					mustSync(t, a, b.AsPeer())
					exec(t, b, "DELETE FROM notes WHERE id = ?", deleted.ID)
					mine := newNote("written offline")
					insert(t, a, mine)
					if clockBehind {
						// a's versions stamped 60 days back, b's tombstone
						// 40 days back; b forgets what is older than 30.
						exec(t, a, "UPDATE sync_lww SET hlc = hlc - ?", (60*day).Milliseconds()<<16)
						exec(t, b, "UPDATE sync_lww SET hlc = hlc - ? WHERE deleted", (40*day).Milliseconds()<<16)
						if k, err := b.Purge(ctx, 30*day); err != nil || k != 1 {
							t.Fatalf("purge: %d, %v; want 1 tombstone", k, err)
						}
					} else {
						tick()
						if k, err := b.Purge(ctx, time.Millisecond); err != nil || k != 1 {
							t.Fatalf("purge: %d, %v; want 1 tombstone", k, err)
						}
					}
					for range 2 {
						if writerStarts {
							mustSync(t, a, b.AsPeer())
						} else {
							mustSync(t, b, a.AsPeer())
						}
					}
					for i, n := range []*peer.Node{a, b} {
						if got := body(t, n, mine.ID); got != "written offline" {
							t.Errorf("node %d: the note b never received is %q", i, got)
						}
						if got := body(t, n, deleted.ID); got != "(none)" {
							t.Errorf("node %d: the note b deleted and forgot is %q", i, got)
						}
					}
					sameDigests(t, a, b)
				})
			}
		}
	}
}

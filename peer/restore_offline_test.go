package peer_test

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
)

// TestRestoredNodeOfflinePastHorizon: a is restored from a backup, then
// writes a note while out of reach longer than b's tombstone horizon (its
// version stamped 60 days back, b forgetting what is older than 30); b
// purged past a's cursor, so a resynchronizes. b's cursor of a's feed was
// read past the backup: it names positions a's restored feed reuses for
// the writes made since. Before, the note, whose position is within that
// stale cursor, was taken for one b had received from a and deleted and
// forgot: whichever node started, the note was deleted on every node,
// both syncs reporting success. It must stay, and the writes a lost come
// back from b. With reopened, a was opened anew after the backup, before
// b last read its feed: b's cursor is of an epoch the restored a does not
// know, which counts for none of a's feed (a's versions b deleted and
// forgot would come back; the one here b deleted is b's own).
func TestRestoredNodeOfflinePastHorizon(t *testing.T) {
	t.Parallel()
	secret := []byte("restore offline test secret")
	transports := []struct {
		name   string
		remote func(t *testing.T, self, other *peer.Node) peer.Peer
	}{
		{"in process", func(_ *testing.T, _, other *peer.Node) peer.Peer { return other.AsPeer() }},
		{"http", func(t *testing.T, self, other *peer.Node) peer.Peer {
			srv := httptest.NewServer(peerhttp.NewHandler(other, &peerhttp.Config{Secret: secret}))
			t.Cleanup(srv.Close)
			return &peerhttp.Peer{URL: srv.URL, Secret: secret, Self: self}
		}},
	}
	for _, kind := range dbtest.Kinds {
		for _, tr := range transports {
			for _, restoredStarts := range []bool{true, false} {
				for _, reopened := range []bool{false, true} {
					t.Run(fmt.Sprintf("%s/%s/restored_starts=%v/reopened=%v", kind, tr.name, restoredStarts, reopened), func(t *testing.T) {
						t.Parallel()
						restoredOffline(t, kind, tr.remote, restoredStarts, reopened)
					})
				}
			}
		}
	}
}

func restoredOffline(t *testing.T, kind string, remote func(t *testing.T, self, other *peer.Node) peer.Peer, restoredStarts, reopened bool) {
	const day = 24 * time.Hour
	a, b := newNode(t, kind, nil), newNode(t, kind, nil)
	// gone: a's note b received and deletes (b's own when reopened: a's
	// would come back, b's cursor counting for none of a's feed).
	gone := newNote("deleted on b")
	if reopened {
		insert(t, b, gone)
	} else {
		insert(t, a, gone)
	}
	mustSync(t, a, b.AsPeer())
	restore := synctest.Backup(t, a.DB())
	if reopened {
		a = reopen(t, a)
	}
	for i := range 3 {
		insert(t, a, newNote(fmt.Sprintf("after the backup %d", i)))
	}
	mustSync(t, a, b.AsPeer())
	restore()
	a = reopen(t, a)
	mine := newNote("written offline after the restore")
	insert(t, a, mine)
	// a out of reach 60 days since; b deleted a note 40 days
	// ago and forgets what is older than 30.
	exec(t, a, "UPDATE sync_lww SET hlc = hlc - ?", (60*day).Milliseconds()<<16)
	exec(t, b, "DELETE FROM notes WHERE id = ?", gone.ID)
	exec(t, b, "UPDATE sync_lww SET hlc = hlc - ? WHERE deleted", (40*day).Milliseconds()<<16)
	if k, err := b.Purge(ctx, 30*day); err != nil || k != 1 {
		t.Fatalf("purge: %d, %v; want 1 tombstone", k, err)
	}
	for range 2 {
		if restoredStarts {
			mustSync(t, a, remote(t, a, b))
		} else {
			mustSync(t, b, remote(t, b, a))
		}
	}
	for i, n := range []*peer.Node{a, b} {
		if got := body(t, n, mine.ID); got != "written offline after the restore" {
			t.Errorf("node %d: the note a wrote after its restore is %q", i, got)
		}
		if got := body(t, n, gone.ID); got != "(none)" {
			t.Errorf("node %d: the note b deleted is %q", i, got)
		}
	}
	sameLive(t, a, b)
	sameDigests(t, a, b)
	if got := len(live(t, a)); got != 4 {
		t.Errorf("a holds %d rows, want 4 (the 3 it lost back, and its note):\n%v", got, live(t, a))
	}
}

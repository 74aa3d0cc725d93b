package peer_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
)

// A node restored from a backup lost the writes it made after the backup,
// which its peers hold, and reuses positions of its feed that its peers
// have read past. Whichever side starts the next sync, the peer gets the
// node's writes made since the restore (here more of them than it lost,
// so the feed grew past the peer's cursor again) and the node gets its
// lost writes back: both hold the same rows.
func TestRestoredFromBackup(t *testing.T) {
	t.Parallel()
	secret := []byte("restore test secret")
	transports := map[string]func(t *testing.T, self, other *peer.Node) peer.Peer{
		"in process": func(_ *testing.T, _, other *peer.Node) peer.Peer { return other.AsPeer() },
		"http": func(t *testing.T, self, other *peer.Node) peer.Peer {
			srv := httptest.NewServer(peerhttp.NewHandler(other, &peerhttp.Config{Secret: secret}))
			t.Cleanup(srv.Close)
			return &peerhttp.Peer{URL: srv.URL, Secret: secret, Self: self}
		},
	}
	for _, kind := range dbtest.Kinds {
		for via, remote := range transports {
			for _, starter := range []string{"restored node", "its peer"} {
				for _, empty := range []bool{false, true} {
					for _, writes := range []int{0, 4} {
						name := fmt.Sprintf("%s/%s/%s syncs/%d writes after the restore", kind, via, starter, writes)
						if empty {
							name += "/backup of the empty node"
						}
						t.Run(name, func(t *testing.T) {
							t.Parallel()
							restoredFromBackup(t, kind, remote, starter == "restored node", empty, writes)
						})
					}
				}
			}
		}
	}
}

// restoredFromBackup backs a up (before its first write when empty: a
// node re-created on an empty database with the same ID is alike),
// restores it after writes b read, lets a write writes rows (4: more than
// it lost, so that its feed grows past b's cursor again; 0: b's cursor
// stays past a's feed), and syncs (a first when aFirst).
func restoredFromBackup(t *testing.T, kind string, remote func(t *testing.T, self, other *peer.Node) peer.Peer, aFirst, empty bool, writes int) {
	t.Helper()
	a, b := newNode(t, kind, nil), newNode(t, kind, nil)
	aToB, bToA := remote(t, a, b), remote(t, b, a)
	var restore func()
	if empty {
		restore = synctest.Backup(t, a.DB())
	}
	kept := newNote("before the backup")
	insert(t, a, kept)
	mustSync(t, a, aToB)
	held := 0 // the rows a holds once restored
	if !empty {
		restore, held = synctest.Backup(t, a.DB()), 1
	}

	// After the backup: a new row and an edit, which b reads.
	insert(t, a, newNote("written after the backup"))
	exec(t, a, "UPDATE notes SET body = ? WHERE id = ?", "edited after the backup", kept.ID)
	mustSync(t, b, bToA)

	restore()
	a = reopen(t, a) // a restored database is opened anew
	aToB, bToA = remote(t, a, b), remote(t, b, a)
	if got := len(live(t, a)); got != held {
		t.Fatalf("restored node holds %d rows, want %d", got, held)
	}
	for i := range writes {
		insert(t, a, newNote(fmt.Sprintf("written after the restore %d", i)))
	}

	if aFirst {
		mustSync(t, a, aToB)
	} else {
		mustSync(t, b, bToA)
	}
	sameLive(t, a, b)
	sameDigests(t, a, b)
	if got := len(live(t, a)); got != 2+writes {
		t.Fatalf("nodes hold %d rows, want %d:\n%v", got, 2+writes, live(t, a))
	}
	// Settled: the next syncs move nothing.
	for _, rep := range []*peer.Report{mustSync(t, a, aToB), mustSync(t, b, bToA)} {
		if rep.Pulled != 0 || rep.Pushed != 0 || rep.Resynced {
			t.Fatalf("sync after convergence: %+v", rep)
		}
	}
}

// reopen opens n's database as a node again, as a process that starts
// does (peer.New).
func reopen(t testing.TB, n *peer.Node) *peer.Node {
	t.Helper()
	return synctest.NewNodeWith(t, n.DB(), testmodels.All(), nil)
}

// olderPeer is a peer of a release before Position.Own: its pages never
// hold the asking node's own versions, whatever it asks.
type olderPeer struct{ peer.Peer }

func (p olderPeer) Changes(ctx context.Context, after peer.Position, limit int, except uuid.UUID, full bool) (*peer.Batch, error) {
	after.Own = false
	b, err := p.Peer.Changes(ctx, after, limit, except, full)
	if b != nil {
		b.Own = false
	}
	return b, err
}

// A restored node asks each peer once for its own versions; a peer of an
// older release cannot send them, and the node does not ask it again at
// every sync.
func TestReclaimFromAnOlderPeerEnds(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a, b := newNode(t, kind, nil), newNode(t, kind, nil)
			insert(t, a, newNote("before the backup"))
			mustSync(t, a, b.AsPeer())
			restore := synctest.Backup(t, a.DB())
			insert(t, a, newNote("written after the backup"))
			mustSync(t, b, a.AsPeer())
			restore()
			a = reopen(t, a)
			mustSync(t, a, olderPeer{b.AsPeer()}) // finds the restore, asks
			pos, err := a.Cursor(ctx, b.ID())
			if err != nil {
				t.Fatal(err)
			}
			if pos.Own {
				t.Fatalf("after a sync with an older peer, a still asks it for its own versions: %+v", pos)
			}
		})
	}
}

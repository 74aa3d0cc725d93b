package stream

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/peer"
)

// TestMalformedDoneRefused: a DONE frame whose payload is not a JSON
// object (docs/protocol.md: `{}`) ends the session with ErrFrame before
// the pages before it are applied, as a page that is not JSON does.
// Before, its payload was never read: the pages were applied and the
// session succeeded.
func TestMalformedDoneRefused(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			victim := synctest.NewNode(t, kind, nil)
			page, _ := json.Marshal(peer.Batch{Changes: []peer.Change{}, Last: 1})
			applied, _ := json.Marshal(commit{})
			for _, done := range []string{"{{{", "[]", "1", `"done"`, ""} {
				// (The wait only bounds a hang.)
				err := hostilePeer(t, victim, &Config{Secret: hostileSecret}, time.Minute, func(send func(byte, []byte) error) {
					for _, f := range []struct {
						typ     byte
						payload []byte
					}{{frameBatch, page}, {frameDone, []byte(done)}, {frameCommit, applied}} {
						if send(f.typ, f.payload) != nil {
							return // the victim hung up
						}
					}
				})
				if !errors.Is(err, ErrFrame) {
					t.Errorf("DONE %q: victim: %v, want ErrFrame", done, err)
				}
				var cursors int
				if err := victim.DB().QueryRowContext(context.Background(), "SELECT count(*) FROM sync_lww_peers").Scan(&cursors); err != nil {
					t.Fatal(err)
				}
				if cursors != 0 {
					t.Fatalf("DONE %q: the victim applied the page before it", done)
				}
			}
		})
	}
}

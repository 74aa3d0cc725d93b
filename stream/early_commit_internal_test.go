package stream

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
)

// TestEarlyCommitFailedSend: an authenticated other end that sends its
// COMMIT before this end's pages are all sent, then stops reading: the
// send fails (its context cancelled), and Sync returns. Before, it waited
// a second time for the answer it had already read, for ever, its
// context cancelled or not.
func TestEarlyCommitFailedSend(t *testing.T) {
	t.Parallel()
	victim := synctest.NewNode(t, dbtest.KindSQLite, &peer.Config{BatchSize: 5})
	notes := make([]*testmodels.Note, 3000)
	for i := range notes {
		notes[i] = &testmodels.Note{ID: uuid.New(), Body: fmt.Sprintf("%04d %s", i, strings.Repeat("x", 2000)), Created: time.Now().UTC().Truncate(time.Microsecond)}
	}
	if _, err := victim.DB().NewInsert().Model(&notes).Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Secret: hostileSecret}
	c1, c2 := net.Pipe()
	defer c2.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Sync(ctx, c1, victim, cfg)
		done <- err
	}()
	r, send := hostileHandshake(t, c2, victim)
	// The victim's CURSOR, then nothing more is read: its pages (15 MB)
	// fill the pipe.
	if typ, _, err := ReadFrame(r, DefaultMaxFrame); err != nil || typ != frameCursor {
		t.Fatalf("cursor %q %v", typ, err)
	}
	position, err := json.Marshal(peer.Position{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		typ     byte
		payload []byte
	}{{frameCursor, position}, {frameDone, []byte("{}")}, {frameCommit, []byte(`{"applied":0}`)}} {
		if err := send(f.typ, f.payload); err != nil {
			t.Fatal(err)
		}
	}
	// The victim has read the COMMIT (its reader waits for nothing else)
	// while its sender is blocked on the pipe; a cancel fails the send.
	time.Sleep(500 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Sync succeeded, its pages never read")
		}
	case <-time.After(time.Minute):
		t.Fatal("Sync still running a minute after its context was cancelled")
	}
}

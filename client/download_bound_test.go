package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
)

// testMaxDownload is the bound on an answer's download the tests below
// set (client.Config.MaxDownloadBytes), not to send gigabytes.
const testMaxDownload = 4 << 20

// endlessAnswer answers with head's lines, then line over and over, up to
// 64 MiB (a bound for the test, far past testMaxDownload), counting what
// it sent in sent; it never sends an end line.
func endlessAnswer(sent *atomic.Int64, line string, head ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-ndjson")
		for _, l := range head {
			fmt.Fprintln(w, l)
		}
		block := []byte(strings.Repeat(line+"\n", (64<<10)/(len(line)+1)+1))
		for sent.Load() < 64<<20 {
			n, err := w.Write(block)
			sent.Add(int64(n))
			if err != nil {
				return // the client hung up
			}
		}
	}
}

// TestRepairRefusesEndlessAnswer: a server that answers a repair with an
// endless stream of valid rows lines gets dbsync.ErrTooLarge naming
// Config.MaxDownloadBytes once the download passes it, not a client
// that spools the stream until its disk is full; the client stops
// downloading; the node keeps its rows.
func TestRepairRefusesEndlessAnswer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFake(t)
	cl, db := newHostileClient(t, f, &client.Config{MaxDownloadBytes: testMaxDownload, SpoolDir: t.TempDir()})
	insertList(t, db, "mine")
	var sent atomic.Int64
	f.on("repair", endlessAnswer(&sent, `{"type":"rows","table":"lists","rows":[{"id":1,"name":"theirs"}]}`,
		`{"type":"header","latest_version_id":1,"tables":["lists","notes","todos"]}`))
	_, err := cl.Repair(ctx, &client.RepairOptions{Force: true})
	if !errors.Is(err, dbsync.ErrTooLarge) || !strings.Contains(err.Error(), "MaxDownloadBytes") {
		t.Fatalf("repair: %v, want ErrTooLarge naming Config.MaxDownloadBytes", err)
	}
	// The client hung up well before the end (kernel buffers take a few
	// MiB more than it read).
	if n := sent.Load(); n >= 64<<20 {
		t.Fatalf("the server sent all %d bytes: the client downloaded past its bound", n)
	}
	if n := count(t, db, "lists", "name = 'mine'"); n != 1 {
		t.Fatalf("the refused repair left %d of the node's lists, want 1", n)
	}
	if n := count(t, db, "lists", "name <> 'mine'"); n != 0 {
		t.Fatalf("the refused repair wrote %d lists", n)
	}
}

// TestPullRefusesEndlessAnswer: a pull's answer, applied as it downloads,
// is bound as a repair's: an endless stream of valid (empty) chunks gets
// dbsync.ErrTooLarge once the download passes Config.MaxDownloadBytes;
// the node keeps its state.
func TestPullRefusesEndlessAnswer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFake(t)
	cl, db := newHostileClient(t, f, &client.Config{MaxDownloadBytes: testMaxDownload, SpoolDir: t.TempDir()})
	list := insertList(t, db, "mine")
	insertTodos(t, db, list, "mine", 2)
	before := fmt.Sprint(titles(t, db), count(t, db, "sync_operations", ""))
	var sent atomic.Int64
	f.on("pull", endlessAnswer(&sent, `{"type":"chunk","operations":[],"payload":{}}`,
		`{"type":"header","latest_version_id":1}`,
		`{"type":"versions","versions":[{"version_id":1,"node_id":null,"created":"2024-01-01T00:00:00Z"}]}`))
	_, err := cl.Pull(ctx)
	if !errors.Is(err, dbsync.ErrTooLarge) || !strings.Contains(err.Error(), "MaxDownloadBytes") {
		t.Fatalf("pull: %v, want ErrTooLarge naming Config.MaxDownloadBytes", err)
	}
	if n := sent.Load(); n >= 64<<20 {
		t.Fatalf("the server sent all %d bytes: the client downloaded past its bound", n)
	}
	if after := fmt.Sprint(titles(t, db), count(t, db, "sync_operations", "")); after != before {
		t.Fatalf("the refused pull changed the node: %s, before %s", after, before)
	}
	if v, err := cl.Version(ctx); err != nil || v != 0 {
		t.Fatalf("version %d (%v), want 0", v, err)
	}
}

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

// The client reads a pull or repair answer a line at a time; a line
// longer than protocol.MaxLineBytes is refused rather than read into
// memory. The tests set the bound to 1 MiB (client.SetMaxLine), not to
// send hundreds of MiB.
const testMaxLine = 1 << 20

// TestPullRefusesEndlessLine: a server that sends a line that never ends
// (here, up to 64 MiB) gets dbsync.ErrBadResponse once the line passes
// the bound, not a client whose memory grows with the line; the client
// stops downloading the rest; the node keeps its state.
func TestPullRefusesEndlessLine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFake(t)
	cl, db := newHostileClient(t, f, nil)
	client.SetMaxLine(cl, testMaxLine)
	list := insertList(t, db, "mine")
	insertTodos(t, db, list, "mine", 2)
	before := fmt.Sprint(titles(t, db), count(t, db, "sync_operations", ""))
	const endless = 64 << 20
	var sent atomic.Int64
	f.on("pull", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprintln(w, `{"type":"header","latest_version_id":1}`)
		fmt.Fprintln(w, `{"type":"versions","versions":[{"version_id":1,"node_id":null,"created":"2024-01-01T00:00:00Z"}]}`)
		fmt.Fprint(w, `{"type":"chunk","operations":[],"payload":{"lists":[{"id":1,"name":"`)
		block := []byte(strings.Repeat("x", 64<<10))
		for sent.Load() < endless {
			n, err := w.Write(block)
			sent.Add(int64(n))
			if err != nil {
				return // the client hung up
			}
		}
	})
	_, err := cl.Pull(ctx)
	if !errors.Is(err, dbsync.ErrBadResponse) || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("pull: %v, want ErrBadResponse for a line too long", err)
	}
	// The client hung up well before the end (kernel buffers take a few
	// MiB more than it read).
	if n := sent.Load(); n >= endless {
		t.Fatalf("the server sent all %d bytes: the client read on after it refused the line", n)
	}
	if after := fmt.Sprint(titles(t, db), count(t, db, "sync_operations", "")); after != before {
		t.Fatalf("the refused pull changed the node: %s, before %s", after, before)
	}
	if v, err := cl.Version(ctx); err != nil || v != 0 {
		t.Fatalf("version %d (%v), want 0", v, err)
	}
}

// TestRepairRefusesLongLine: a repair answer whose rows line is longer
// than the bound is refused with dbsync.ErrBadResponse, though it is
// valid otherwise (a repair downloads its answer before it applies it: the
// line is read from the file), and nothing is written.
func TestRepairRefusesLongLine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFake(t)
	cl, db := newHostileClient(t, f, nil)
	client.SetMaxLine(cl, testMaxLine)
	insertList(t, db, "mine")
	long := strings.Repeat("x", testMaxLine)
	f.on("repair", ndjson(`{"type":"header","latest_version_id":1,"tables":["lists","notes","todos"]}`,
		`{"type":"rows","table":"lists","rows":[{"id":1,"name":"`+long+`"}]}`,
		`{"type":"end","row_count":1}`))
	_, err := cl.Repair(ctx, &client.RepairOptions{Force: true})
	if !errors.Is(err, dbsync.ErrBadResponse) {
		t.Fatalf("repair: %v, want ErrBadResponse", err)
	}
	if n := count(t, db, "lists", "name = 'mine'"); n != 1 {
		t.Fatalf("the refused repair left %d of the node's lists, want 1", n)
	}
	if n := count(t, db, "lists", "name <> 'mine'"); n != 0 {
		t.Fatalf("the refused repair wrote %d lists", n)
	}
}

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
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
)

// endlessLine answers with lines, then a line that does not end: up to
// limit bytes of it, sent in blocks, each after pause (the first after
// first bytes, sent at once). sent counts its bytes.
func endlessLine(lines []string, open string, first int, pause time.Duration, limit int64, sent *atomic.Int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-ndjson")
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
		fmt.Fprint(w, open)
		if first > 0 {
			n, _ := w.Write([]byte(strings.Repeat("x", first)))
			sent.Add(int64(n))
			w.(http.Flusher).Flush()
			select {
			case <-time.After(pause):
			case <-r.Context().Done():
				return
			}
		}
		block := []byte(strings.Repeat("x", 64<<10))
		for sent.Load() < limit {
			n, err := w.Write(block)
			sent.Add(int64(n))
			if err != nil {
				return // the client hung up
			}
		}
	}
}

// TestRepairStopsEndlessLine: a repair (and a reset, which downloads its
// answer the same way) downloads its answer whole before it reads a line;
// a line that never ends must still be refused once it passes the bound,
// not downloaded to disk without end.
func TestRepairStopsEndlessLine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFake(t)
	cl, db := newHostileClient(t, f, nil)
	client.SetMaxLine(cl, testMaxLine)
	insertList(t, db, "mine")
	const endless = 64 << 20
	var sent atomic.Int64
	f.on("repair", endlessLine([]string{`{"type":"header","latest_version_id":1,"tables":["lists","notes","todos"]}`},
		`{"type":"rows","table":"lists","rows":[{"id":1,"name":"`, 0, 0, endless, &sent))
	_, err := cl.Repair(ctx, &client.RepairOptions{Force: true})
	if !errors.Is(err, dbsync.ErrBadResponse) || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("repair: %v, want ErrBadResponse for a line too long", err)
	}
	if n := sent.Load(); n >= endless {
		t.Fatalf("the server sent all %d bytes: the repair downloaded on past the bound", n)
	}
	if n := count(t, db, "lists", "name = 'mine'"); n != 1 {
		t.Fatalf("the refused repair left %d of the node's lists, want 1", n)
	}
}

// TestPullStopsSlowEndlessLine: a pull whose answer comes slower than it
// is applied gives the apply up and downloads the answer whole first
// (downloadApply); a line that never ends must still stop the download.
func TestPullStopsSlowEndlessLine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFake(t)
	cl, _ := newHostileClient(t, f, nil)
	client.SetMaxLine(cl, testMaxLine)
	const endless = 64 << 20
	var sent atomic.Int64
	f.on("pull", endlessLine([]string{`{"type":"header","latest_version_id":1}`,
		`{"type":"versions","versions":[{"version_id":1,"node_id":null,"created":"2024-01-01T00:00:00Z"}]}`},
		`{"type":"chunk","operations":[],"payload":{"lists":[{"id":1,"name":"`, 300<<10, time.Second, endless, &sent))
	_, err := cl.Pull(ctx)
	if !errors.Is(err, dbsync.ErrBadResponse) || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("pull: %v, want ErrBadResponse for a line too long", err)
	}
	if n := sent.Load(); n >= endless {
		t.Fatalf("the server sent all %d bytes: the pull downloaded on past the bound", n)
	}
}

// TestPullFailedApplyStalledServer: once the apply of an answer still
// downloading fails, the pull returns its error, though the server has
// stopped sending without ending the answer: the download waiting on the
// network is cut, not waited for.
func TestPullFailedApplyStalledServer(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	cl, _ := newHostileClient(t, f, nil)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	f.on("pull", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprintln(w, `{"type":"header","latest_version_id":1}`)
		fmt.Fprintln(w, `{"type":"versions","versions":[{"version_id":1,"node_id":null,"created":"2024-01-01T00:00:00Z"}]}`)
		fmt.Fprintln(w, strings.Repeat("x", 300<<10)) // not JSON: the apply fails
		w.(http.Flusher).Flush()
		select { // stalls, the answer unfinished
		case <-r.Context().Done():
		case <-release:
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	_, err := cl.Pull(ctx)
	if !errors.Is(err, dbsync.ErrBadResponse) {
		t.Fatalf("pull: %v after %s, want ErrBadResponse", err, time.Since(start).Round(time.Millisecond))
	}
	// Far from the context's end (what it waited for before), with room
	// for a busy machine.
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("the pull took %s: it waited for the stalled download", d)
	}
}

package peerhttp_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
)

// TestApplyBodySpooled: a push's apply body over 1 MiB is written to a
// file in Peer.SpoolDir while it is hashed, sent from there, and applied
// by the receiver from its own spool file a page at a time (before, both
// ends held it whole in memory); a smaller one stays in memory. A
// SpoolDir that does not exist shows which: the small push goes through,
// the large one fails naming the spool, and with a real directory it is
// applied whole, leaving no file behind.
func TestApplyBodySpooled(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a := newPeerNode(t, kind)
			c := newPeerNode(t, kind)
			srv := httptest.NewServer(peerhttp.NewHandler(c, &peerhttp.Config{Secret: meshSecret}))
			t.Cleanup(srv.Close)
			insert := func(n, size int) { synctest.InsertNotes(t, a.DB(), n, size) }
			missing := filepath.Join(t.TempDir(), "missing")
			to := func(dir string) *peerhttp.Peer {
				return &peerhttp.Peer{URL: srv.URL, Secret: meshSecret, Self: a, SpoolDir: dir}
			}
			// No page at all: an empty body, sent with a length of 0.
			if n, err := to(missing).Apply(ctx, a.ID(), func() (*peer.Batch, error) { return nil, nil }); err != nil || n != 0 {
				t.Fatalf("empty apply: %d, %v", n, err)
			}
			insert(10, 1000)
			if rep, err := a.Sync(ctx, to(missing)); err != nil || rep.Pushed != 10 {
				t.Fatalf("small push: %+v, %v", rep, err)
			}
			insert(300, 8<<10) // 2.4 MB
			if _, err := a.Sync(ctx, to(missing)); err == nil || !strings.Contains(err.Error(), "spool") {
				t.Fatalf("large push with a missing spool directory: %v, want a spool error", err)
			}
			dir := t.TempDir()
			if rep, err := a.Sync(ctx, to(dir)); err != nil || rep.Pushed != 300 {
				t.Fatalf("large push: %+v, %v", rep, err)
			}
			if n := peerCount(t, c, "notes"); n != 310 {
				t.Fatalf("the receiver holds %d notes, want 310", n)
			}
			if n := dbtest.OpenIn(t, dir); n != 0 {
				t.Fatalf("%d spool files still open after the push", n)
			}
		})
	}
}

// TestApplyPanicReleasesBody: a request whose authentication panics (here
// the node's clock) is answered 500 and gives back the budgets and the
// spool file its body took: the next body that needs them is accepted,
// not refused 503 busy until the process restarts.
func TestApplyPanicReleasesBody(t *testing.T) {
	t.Parallel()
	var panicking atomic.Bool
	n := synctest.NewNode(t, dbtest.KindSQLite, &peer.Config{Now: func() time.Time {
		if panicking.Load() {
			panic("clock")
		}
		return time.Now()
	}})
	dir := t.TempDir()
	srv := httptest.NewServer(peerhttp.NewHandler(n, &peerhttp.Config{Secret: meshSecret,
		MaxBodyBytes: 2 << 20, PreauthDisk: 2 << 20, SpoolDir: dir}))
	t.Cleanup(srv.Close)
	e := &peerEnv{t: t, node: n, url: srv.URL, from: uuid.New()}
	var many []peer.Change
	for i := range 300 { // over 1 MiB: spooled
		many = append(many, noteChange(t, n, e.from, fmt.Sprint(i, strings.Repeat("p", 4<<10)), time.Now()))
	}
	body := applyBody(t, n, many...)
	panicking.Store(true)
	if status, raw, _ := e.do(e.request(http.MethodPost, "apply", "", body)); status != http.StatusInternalServerError {
		t.Fatalf("apply with a panicking clock: %d %s, want 500", status, raw)
	}
	panicking.Store(false)
	if status, raw, _ := e.do(e.request(http.MethodPost, "apply", "", body)); status != http.StatusOK {
		t.Fatalf("apply after the panic: %d %s, want 200", status, raw)
	}
	if n := dbtest.OpenIn(t, dir); n != 0 {
		t.Fatalf("%d spool files still open", n)
	}
}

// TestApplyAuthenticatedFreesPreauth: once a request is authenticated,
// its body no longer counts against the budgets for bodies not yet
// authenticated, though its apply reads it from its spool file until the
// answer: a second push while the first is still being answered gets
// through. Before, the first held the disk budget (2 MiB here) until its
// answer, and the second was refused 503 busy.
func TestApplyAuthenticatedFreesPreauth(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	var blocked atomic.Bool
	n := synctest.NewNode(t, dbtest.KindSQLite, &peer.Config{OnEvent: func(_ context.Context, e dbsync.Event) {
		if e.Op == "apply" && blocked.CompareAndSwap(false, true) {
			close(entered)
			<-release
		}
	}})
	dir := t.TempDir()
	srv := httptest.NewServer(peerhttp.NewHandler(n, &peerhttp.Config{Secret: meshSecret,
		MaxBodyBytes: 2 << 20, PreauthDisk: 2 << 20, SpoolDir: dir}))
	t.Cleanup(srv.Close)
	e := &peerEnv{t: t, node: n, url: srv.URL, from: uuid.New()}
	body := func(tag string) []byte {
		var many []peer.Change
		for i := range 250 { // about 1.3 MB: spooled, and two do not fit in 2 MiB
			many = append(many, noteChange(t, n, e.from, fmt.Sprint(tag, i, strings.Repeat("q", 5<<10)), time.Now()))
		}
		return applyBody(t, n, many...)
	}
	first, second := body("first"), body("second")
	done := make(chan int, 1)
	go func() {
		status, _, _ := e.do(e.request(http.MethodPost, "apply", "", first))
		done <- status
	}()
	select {
	case <-entered: // applied, its answer waiting, its body still open
	case status := <-done:
		t.Fatalf("first apply answered %d before its event", status)
	}
	status, raw, _ := e.do(e.request(http.MethodPost, "apply", "", second))
	close(release)
	if status != http.StatusOK {
		t.Fatalf("second apply while the first is answered: %d %s, want 200", status, raw)
	}
	if status := <-done; status != http.StatusOK {
		t.Fatalf("first apply: %d", status)
	}
	if got := peerCount(t, n, "notes"); got != 500 {
		t.Fatalf("%d notes, want 500", got)
	}
	if n := dbtest.OpenIn(t, dir); n != 0 {
		t.Fatalf("%d spool files still open", n)
	}
}

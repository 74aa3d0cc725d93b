package stream_test

import (
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/peer"
)

// TestCursorPastFeed: the other end's cursor for this node is past this
// node's feed (this node was restored, or the other end is wrong: here b's
// cursor is set by hand). The session takes it for a restore: b gets a's
// whole state once and the two converge; a warns once, naming b (so that
// an operator who restored nothing can tell which peer it is), and the
// next session, b's cursor at a's head, is an ordinary one.
func TestCursorPastFeed(t *testing.T) {
	t.Parallel()
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var warnings []map[string]string
			log := slog.New(logCapture{fn: func(msg string, attrs map[string]string) {
				if strings.Contains(msg, "restored from a backup") {
					mu.Lock()
					warnings = append(warnings, attrs)
					mu.Unlock()
				}
			}})
			a := synctest.NewNode(t, p.a, &peer.Config{Logger: log})
			b := newNode(t, p.b)
			insert(t, a, note("one"))
			insert(t, a, note("two"))
			pipeSession(t, a, b, cfg(), cfg()).ok(t)
			exec(t, b, "UPDATE sync_lww_peers SET pulled_seq = 1000000 WHERE peer = ?", a.ID().String())
			for range 3 {
				pipeSession(t, a, b, cfg(), cfg()).ok(t)
			}
			converged(t, a, b)
			if got := cursor(t, b, a); got != feedEnd(t, a) {
				t.Errorf("b's cursor for a is %d, want a's feed's end %d", got, feedEnd(t, a))
			}
			mu.Lock()
			defer mu.Unlock()
			if len(warnings) != 1 {
				t.Fatalf("a warned %d times in 3 sessions (%v), want once", len(warnings), warnings)
			}
			if w := warnings[0]; w["peer"] != b.ID().String() || !strings.Contains(w["error"], "1000000") {
				t.Fatalf("a's warning %v, want it to name b (%s) and the position", w, b.ID())
			}
		})
	}
}

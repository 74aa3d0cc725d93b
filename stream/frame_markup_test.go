package stream_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/stream"
)

// TestPageOfMarkupUnderMaxFrame: a stream frame is json.Marshal of the
// page, which re-escapes every '<', '>' and '&' of a row as \u003c,
// \u003e, \u0026 (6 bytes each): Node.Changes counts them so when it
// ends a page at MaxBatchBytes. The sizes keep the defaults' ratio
// (MaxBatchBytes 32 MiB, MaxFrame 64 MiB: 2x); rows of HTML-like text
// grow over 2x on the wire, and a page measured by its rows' length was
// over the receiver's MaxFrame, at every session.
func TestPageOfMarkupUnderMaxFrame(t *testing.T) {
	t.Parallel()
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			small := &peer.Config{MaxBatchBytes: 128 << 10}
			a, b := synctest.NewNode(t, p.a, small), synctest.NewNode(t, p.b, small)
			markup := strings.Repeat("<p>a&amp;b</p>", 4<<10/14) // ~4 KiB a row
			notes := make([]*testmodels.Note, 100)
			for i := range notes {
				notes[i] = &testmodels.Note{ID: uuid.New(), Body: fmt.Sprintf("%d %s", i, markup), Created: time.Now().UTC().Truncate(time.Microsecond)}
			}
			insert(t, a, &notes)
			c := &stream.Config{Secret: secret, MaxFrame: 256 << 10} // 2x MaxBatchBytes, as the defaults
			var last outcome
			for range 3 {
				last = pipeSession(t, a, b, c, c)
				if last.a.err == nil && last.b.err == nil {
					break
				}
			}
			last.ok(t)
			converged(t, a, b)
		})
	}
}

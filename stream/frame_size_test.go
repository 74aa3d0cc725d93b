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

// TestPageUnderMaxFrame: every row is far below the receiving end's
// MaxFrame, but a page of BatchSize rows (1000 by default) would be over
// it: the sender's pages end at its peer.Config.MaxBatchBytes, and the
// sessions converge. Before, every session failed on the frame's size.
func TestPageUnderMaxFrame(t *testing.T) {
	t.Parallel()
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			small := &peer.Config{MaxBatchBytes: 128 << 10}
			a, b := synctest.NewNode(t, p.a, small), synctest.NewNode(t, p.b, small)
			big := strings.Repeat("x", 4<<10) // 4 KiB a row
			notes := make([]*testmodels.Note, 200)
			for i := range notes {
				notes[i] = &testmodels.Note{ID: uuid.New(), Body: fmt.Sprintf("%d %s", i, big), Created: time.Now().UTC().Truncate(time.Microsecond)}
			}
			insert(t, a, &notes)
			c := &stream.Config{Secret: secret, MaxFrame: 256 << 10} // 64 rows' worth
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

package stream_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/stream"
)

// TestOverLimit: pages over a bound of the receiving end (a row larger
// than its MaxFrame, a backlog larger than its MaxReceive) fail every
// session at once, nothing applied there: the receiving end with a
// *peer.LimitError naming the bound and the row (still ErrFrame), the
// sending end with ErrRemote and dbsync.ErrTooLarge, the message naming
// the bound. Before, the receiver's ErrFrame named no row, and the sender,
// still sending when the receiver stopped reading, ended with a network
// error that did not say why.
func TestOverLimit(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, limit string
		rows, size  int
		set         func(*stream.Config)
	}{
		{"a row over MaxFrame", "stream.Config.MaxFrame", 1, 16 << 10, func(c *stream.Config) { c.MaxFrame = 8 << 10 }},
		{"a backlog far over MaxReceive", "stream.Config.MaxReceive", 3000, 2000, func(c *stream.Config) { c.MaxReceive = 4 << 10 }},
		{"a backlog over MaxReceive", "stream.Config.MaxReceive", 300, 200, func(c *stream.Config) { c.MaxReceive = 4 << 10 }},
	}
	for _, p := range pairs {
		for _, tc := range cases {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				a, b := newNode(t, p.a), newNode(t, p.b)
				notes := make([]*testmodels.Note, tc.rows)
				for i := range notes {
					notes[i] = note(fmt.Sprintf("%04d %s", i, strings.Repeat("x", tc.size)))
				}
				insert(t, a, &notes)
				cb := cfg()
				tc.set(cb)
				for range 2 { // the same each time
					o := pipeSession(t, a, b, cfg(), cb)
					var le *peer.LimitError
					if !errors.As(o.b.err, &le) || !errors.Is(o.b.err, stream.ErrFrame) || !errors.Is(o.b.err, dbsync.ErrTooLarge) {
						t.Fatalf("receiver: %v, want a *peer.LimitError (ErrFrame, dbsync.ErrTooLarge)", o.b.err)
					}
					if le.Limit != tc.limit || le.Table != "notes" || le.ID == "" {
						t.Fatalf("receiver: %+v, want %s and a row of notes", le, tc.limit)
					}
					if tc.rows == 1 && le.ID != notes[0].ID.String() {
						t.Fatalf("receiver: the error names row %s, want %s", le.ID, notes[0].ID)
					}
					if !errors.Is(o.a.err, stream.ErrRemote) || !errors.Is(o.a.err, dbsync.ErrTooLarge) || !strings.Contains(o.a.err.Error(), tc.limit) {
						t.Fatalf("sender: %v, want ErrRemote and dbsync.ErrTooLarge naming %s", o.a.err, tc.limit)
					}
					if s := stateOf(t, b); s.Counts["notes"] != 0 {
						t.Fatalf("the receiver applied %d notes", s.Counts["notes"])
					}
				}
			})
		}
	}
}

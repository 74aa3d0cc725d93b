package peer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
)

// stuckPeer is a peer (broken, or hostile) whose pages say more follow
// but do not move the position.
type stuckPeer struct {
	id    uuid.UUID
	last  func(after int64) int64 // the page's Last after a position
	calls int
}

func (p *stuckPeer) ID(context.Context) (uuid.UUID, error) { return p.id, nil }

func (p *stuckPeer) Changes(_ context.Context, after peer.Position, _ int, _ uuid.UUID, _ bool) (*peer.Batch, error) {
	if p.calls++; p.calls > 1000 {
		return nil, fmt.Errorf("asked %d times for pages that do not move", p.calls)
	}
	return &peer.Batch{Changes: []peer.Change{}, Last: p.last(after.Seq), More: true}, nil
}

func (p *stuckPeer) Cursor(context.Context, uuid.UUID) (peer.Position, error) {
	return peer.Position{}, nil
}

func (p *stuckPeer) Apply(_ context.Context, _ uuid.UUID, next func() (*peer.Batch, error)) (int, error) {
	for {
		b, err := next()
		if b == nil || err != nil {
			return 0, err
		}
	}
}

// TestPagesMustMove: a peer's page that says more follow (More) must end
// past the position asked (Last): else the pull fails with
// dbsync.ErrBadResponse at once, nothing applied, rather than ask for the
// same page for ever (spooling each on a SQLite node). Before, the pull
// never ended.
func TestPagesMustMove(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		last func(after int64) int64
	}{
		{"the same position", func(after int64) int64 { return after }},
		{"back to the start", func(int64) int64 { return 0 }},
		{"backwards", func(after int64) int64 { return after - 1 }},
	}
	for _, kind := range dbtest.Kinds {
		for _, tc := range cases {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				n := newNode(t, kind, nil)
				p := &stuckPeer{id: uuid.New(), last: tc.last}
				_, err := n.Sync(ctx, p)
				if !errors.Is(err, dbsync.ErrBadResponse) || p.calls > 1 {
					t.Fatalf("sync: %v after %d pages, want dbsync.ErrBadResponse after one", err, p.calls)
				}
			})
		}
	}
}

// TestPullBounded: a peer (broken, or hostile) whose pages move but never
// end fails the pull once it read Config.MaxPullBytes, with a
// *peer.LimitError naming it, nothing applied. Before, the pull never
// ended: a SQLite node spooled its pages to disk for ever.
func TestPullBounded(t *testing.T) {
	t.Parallel()
	const bound = 64 << 10
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			n := newNode(t, kind, &peer.Config{MaxPullBytes: bound})
			p := &endlessPeer{stuckPeer: stuckPeer{id: uuid.New()}, row: func(note *testmodels.Note) []byte { return noteRow(t, n, note) }}
			_, err := n.Sync(ctx, p)
			var le *peer.LimitError
			if !errors.As(err, &le) || le.Limit != "peer.Config.MaxPullBytes" || le.Max != bound || !errors.Is(err, dbsync.ErrTooLarge) {
				t.Fatalf("sync: %v after %d pages, want a *peer.LimitError naming peer.Config.MaxPullBytes", err, p.calls)
			}
			var notes int
			if err := n.DB().QueryRowContext(ctx, "SELECT count(*) FROM notes").Scan(&notes); err != nil || notes != 0 {
				t.Fatalf("%d notes applied (%v)", notes, err)
			}
		})
	}
}

// endlessPeer's pages each hold a new note and move the position by one,
// saying more follow, without end.
type endlessPeer struct {
	stuckPeer
	row func(*testmodels.Note) []byte // a note's row on the wire
}

func (p *endlessPeer) Changes(_ context.Context, after peer.Position, _ int, _ uuid.UUID, _ bool) (*peer.Batch, error) {
	if p.calls++; p.calls > 3000 {
		return nil, fmt.Errorf("asked %d times for pages that never end", p.calls)
	}
	note := newNote(fmt.Sprint("endless ", p.calls))
	return &peer.Batch{Changes: []peer.Change{{Table: "notes", ID: note.ID.String(), HLC: time.Now().UnixMilli() << 16,
		Node: p.id.String(), Row: json.RawMessage(p.row(note)), Seq: after.Seq + 1}}, Last: after.Seq + 1, More: true}, nil
}

package peer_test

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
)

func hlcOf(t time.Time) int64 { return t.UnixMilli() << 16 }

func TestHLCTime(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 3, 4, 5, 6, 7, 891_000_000, time.UTC)
	for _, logical := range []int64{0, 1, 0xffff} {
		if got := peer.HLC(hlcOf(at) + logical).Time(); !got.Equal(at) {
			t.Fatalf("HLC(%d).Time() = %s, want %s", logical, got, at)
		}
	}
}

// feed returns a node's versions in feed order.
func feed(t *testing.T, n *peer.Node) []version {
	t.Helper()
	rows, err := n.DB().QueryContext(ctx, "SELECT hlc, node, deleted, seq FROM sync_lww ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []version
	for rows.Next() {
		var v version
		if err := rows.Scan(&v.HLC, &v.Node, &v.Deleted, &v.Seq); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// TestHLCLocalWrites: the versions of local writes, in the order they were
// written, have strictly increasing clocks close to the wall clock and
// strictly increasing feed positions, and carry the node's identity; so
// do writes of many rows in one statement.
func TestHLCLocalWrites(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			n := newNode(t, kind, nil)
			start := time.Now()
			var notes []*testmodels.Note
			for i := range 30 {
				x := newNote(fmt.Sprintf("n%d", i))
				notes = append(notes, x)
				insert(t, n, x)
				switch i % 3 {
				case 1:
					exec(t, n, "UPDATE notes SET body = 'u' WHERE id = ?", notes[i/2].ID)
				case 2:
					exec(t, n, "DELETE FROM notes WHERE id = ?", notes[i-1].ID)
				}
				insert(t, n, &testmodels.List{Name: fmt.Sprintf("l%d", i)})
			}
			exec(t, n, "UPDATE lists SET name = name || '!'") // 30 rows in one statement
			end := time.Now()
			var prev version
			for i, v := range feed(t, n) {
				if i > 0 && (v.HLC <= prev.HLC || v.Seq <= prev.Seq) {
					t.Fatalf("version %d (%d, seq %d) does not follow (%d, seq %d)", i, v.HLC, v.Seq, prev.HLC, prev.Seq)
				}
				if v.Node != n.ID().String() {
					t.Fatalf("version written by %s, want %s", v.Node, n.ID())
				}
				if at := peer.HLC(v.HLC).Time(); at.Before(start.Add(-time.Second)) || at.After(end.Add(time.Second)) {
					t.Fatalf("clock %s outside the writes' time %s–%s", at, start, end)
				}
				prev = v
			}
		})
	}
}

// TestHLCPassesSeenClocks: after receiving a version whose clock is ahead
// of its own (within MaxSkew), a node's next writes, local or received,
// are ordered after it.
func TestHLCPassesSeenClocks(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			n := newNode(t, kind, nil)
			ahead := hlcOf(time.Now().Add(40*time.Second)) + 7
			x := newNote("from the future")
			page := &peer.Batch{Last: 1, Changes: []peer.Change{{Table: "notes", ID: x.ID.String(), HLC: ahead, Node: uuid.NewString(), Row: noteRow(t, n, x), Seq: 1}}}
			if k, err := n.Apply(ctx, uuid.New(), batchOf(page)); err != nil || k != 1 {
				t.Fatalf("apply: %d, %v", k, err)
			}
			y := newNote("local")
			insert(t, n, y)
			exec(t, n, "UPDATE notes SET body = 'local edit' WHERE id = ?", x.ID)
			vy, _ := versionOf(t, n.DB(), "notes", y.ID.String())
			vx, _ := versionOf(t, n.DB(), "notes", x.ID.String())
			if vy.HLC <= ahead || vx.HLC <= vy.HLC {
				t.Fatalf("local writes at %d and %d after seeing %d", vy.HLC, vx.HLC, ahead)
			}
			if vx.Node != n.ID().String() {
				t.Fatal("the local edit did not take over the row's version")
			}
		})
	}
}

// TestHLCTieBreak: two versions of a row with the same clock from two
// nodes; every node keeps the one of the greater node identity, whatever
// the order it receives them in, one page or two, one transaction or two.
func TestHLCTieBreak(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			nodes := []string{uuid.NewString(), uuid.NewString()}
			sort.Strings(nodes)
			id := uuid.New()
			at := hlcOf(time.Now()) + 3
			enc := newNode(t, dbtest.KindSQLite, nil)
			mk := func(i int) peer.Change {
				x := &testmodels.Note{ID: id, Body: "by " + nodes[i][:8], Created: time.Now().UTC().Truncate(time.Microsecond)}
				return peer.Change{Table: "notes", ID: id.String(), HLC: at, Node: nodes[i], Row: noteRow(t, enc, x), Seq: int64(i + 1)}
			}
			lo, hi := mk(0), mk(1)
			orders := []struct {
				name  string
				apply func(n *peer.Node) error
			}{
				{"low then high, two transactions", func(n *peer.Node) error {
					if _, err := n.Apply(ctx, uuid.New(), batchOf(&peer.Batch{Changes: []peer.Change{lo}, Last: 1})); err != nil {
						return err
					}
					_, err := n.Apply(ctx, uuid.New(), batchOf(&peer.Batch{Changes: []peer.Change{hi}, Last: 1}))
					return err
				}},
				{"high then low, two transactions", func(n *peer.Node) error {
					if _, err := n.Apply(ctx, uuid.New(), batchOf(&peer.Batch{Changes: []peer.Change{hi}, Last: 1})); err != nil {
						return err
					}
					_, err := n.Apply(ctx, uuid.New(), batchOf(&peer.Batch{Changes: []peer.Change{lo}, Last: 1}))
					return err
				}},
				{"high then low, one page", func(n *peer.Node) error {
					_, err := n.Apply(ctx, uuid.New(), batchOf(&peer.Batch{Changes: []peer.Change{hi, lo}, Last: 2}))
					return err
				}},
				{"low then high, two pages", func(n *peer.Node) error {
					_, err := n.Apply(ctx, uuid.New(), batchOf(&peer.Batch{Changes: []peer.Change{lo}, Last: 1}, &peer.Batch{Changes: []peer.Change{hi}, Last: 2}))
					return err
				}},
			}
			var all []*peer.Node
			for _, o := range orders {
				n := newNode(t, kind, nil)
				if err := o.apply(n); err != nil {
					t.Fatalf("%s: %v", o.name, err)
				}
				v, _ := versionOf(t, n.DB(), "notes", id.String())
				if v.Node != nodes[1] || v.HLC != at || body(t, n, id) != "by "+nodes[1][:8] {
					t.Fatalf("%s: kept %s %q, want node %s", o.name, fmtVersion(v), body(t, n, id), nodes[1])
				}
				// The same version again is not a change.
				if k, err := n.Apply(ctx, uuid.New(), batchOf(&peer.Batch{Changes: []peer.Change{hi}, Last: 1})); err != nil || k != 0 {
					t.Fatalf("%s: the same version again applied %d (%v)", o.name, k, err)
				}
				all = append(all, n)
			}
			sameDigests(t, all...)
		})
	}
}

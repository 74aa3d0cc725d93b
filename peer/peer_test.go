package peer_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
)

// TestSyncBothWays: inserts, updates and deletes of every table travel
// both ways between in-process nodes; a repeated sync transfers nothing.
func TestSyncBothWays(t *testing.T) {
	t.Parallel()
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			a, b := newNode(t, dbtest.KindSQLite, nil), newNode(t, k.other, nil)
			insert(t, a, &testmodels.List{Name: "home"})
			insert(t, a, &testmodels.Todo{ListID: 1, Title: "milk"})
			n1, n2 := newNote("a note"), newNote("b note")
			insert(t, a, n1)
			insert(t, b, n2)
			rep := mustSync(t, a, b.AsPeer())
			if rep.Peer != b.ID() || rep.Pulled != 1 || rep.Pushed != 3 || rep.Resynced {
				t.Fatalf("report %+v, want 1 pulled, 3 pushed", rep)
			}
			sameDigests(t, a, b)
			if rep := mustSync(t, b, a.AsPeer()); rep.Pulled != 0 || rep.Pushed != 0 {
				t.Fatalf("a repeated sync moved %d and %d versions", rep.Pulled, rep.Pushed)
			}
			exec(t, b, "UPDATE notes SET body = 'changed by b' WHERE id = ?", n1.ID)
			exec(t, b, "UPDATE todos SET done = ?", true)
			exec(t, a, "DELETE FROM notes WHERE id = ?", n2.ID)
			if rep := mustSync(t, b, a.AsPeer()); rep.Pulled != 1 || rep.Pushed != 2 {
				t.Fatalf("report %+v, want 1 pulled, 2 pushed", rep)
			}
			sameDigests(t, a, b)
			if body(t, a, n1.ID) != "changed by b" || body(t, b, n2.ID) != "(none)" || count(t, a, "todos") != 1 {
				t.Fatal("wrong state after the second sync")
			}
			var done bool
			if err := a.DB().QueryRowContext(ctx, "SELECT done FROM todos").Scan(&done); err != nil || !done {
				t.Fatalf("todo done %v, %v", done, err)
			}
			if _, err := a.Sync(ctx, a.AsPeer()); err == nil {
				t.Fatal("a node synced with itself")
			}
		})
	}
}

// TestNodeIdentity: a node keeps its identity across New calls on the
// same database and refuses another one.
func TestNodeIdentity(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			db := dbtest.Open(t, kind)
			id := uuid.New()
			n := nodeOn(t, db, &peer.Config{ID: id})
			if n.ID() != id {
				t.Fatalf("id %s, want %s", n.ID(), id)
			}
			insert(t, n, newNote("x"))
			before := digest(t, n)
			again := nodeOn(t, db, nil)
			if again.ID() != id || digest(t, again) != before {
				t.Fatal("a second New changed the node")
			}
			reg, _ := dbsync.Track(db, testmodels.All()...)
			if _, err := peer.New(ctx, db, reg, &peer.Config{ID: uuid.New()}); err == nil {
				t.Fatal("New accepted another identity for the database")
			}
		})
	}
}

// TestDeleteVersusUpdate: a delete and a concurrent update of the same row
// on two nodes; the later (higher HLC, node) wins on both, whichever it is.
func TestDeleteVersusUpdate(t *testing.T) {
	t.Parallel()
	for _, k := range kinds {
		for _, deleteLast := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/delete_last=%v", k.name, deleteLast), func(t *testing.T) {
				t.Parallel()
				a, b := newNode(t, dbtest.KindSQLite, nil), newNode(t, k.other, nil)
				n := newNote("shared")
				insert(t, a, n)
				insert(t, a, &testmodels.List{Name: "shared list"})
				mustSync(t, a, b.AsPeer())
				del := func() {
					exec(t, a, "DELETE FROM notes WHERE id = ?", n.ID)
					exec(t, a, "DELETE FROM lists")
				}
				upd := func() {
					exec(t, b, "UPDATE notes SET body = 'updated' WHERE id = ?", n.ID)
					exec(t, b, "UPDATE lists SET name = 'updated list'")
				}
				if deleteLast {
					upd()
					time.Sleep(5 * time.Millisecond)
					del()
				} else {
					del()
					time.Sleep(5 * time.Millisecond)
					upd()
				}
				va, _ := versionOf(t, a.DB(), "notes", n.ID.String())
				vb, _ := versionOf(t, b.DB(), "notes", n.ID.String())
				if !va.Deleted || vb.Deleted || va.newer(vb) != deleteLast {
					t.Fatalf("versions a %s, b %s: the later write should be the higher", fmtVersion(va), fmtVersion(vb))
				}
				mustSync(t, b, a.AsPeer())
				sameDigests(t, a, b)
				want, wantLists := "updated", 1
				if deleteLast {
					want, wantLists = "(none)", 0
				}
				for _, x := range []*peer.Node{a, b} {
					if got := body(t, x, n.ID); got != want {
						t.Fatalf("note %q, want %q", got, want)
					}
					if got := count(t, x, "lists"); got != wantLists {
						t.Fatalf("%d lists, want %d", got, wantLists)
					}
				}
			})
		}
	}
}

// TestClockSkew: changes written more than MaxSkew ahead of the receiving
// node's clock are refused with ErrClockSkew, in either direction of a
// sync, and nothing of the transaction is applied; within MaxSkew they are
// accepted.
func TestClockSkew(t *testing.T) {
	t.Parallel()
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			a := newNode(t, dbtest.KindSQLite, nil)
			// b's clock is two minutes slow: a's writes look two minutes
			// ahead, beyond the default MaxSkew of one minute.
			b := newNode(t, k.other, &peer.Config{Now: func() time.Time { return time.Now().Add(-2 * time.Minute) }})
			for i := range 3 {
				insert(t, a, newNote(fmt.Sprintf("n%d", i)))
			}
			insert(t, a, &testmodels.List{Name: "l"})
			before := digest(t, b)
			if _, err := b.Sync(ctx, a.AsPeer()); !errors.Is(err, peer.ErrClockSkew) {
				t.Fatalf("pull: %v, want ErrClockSkew", err)
			}
			if _, err := a.Sync(ctx, b.AsPeer()); !errors.Is(err, peer.ErrClockSkew) {
				t.Fatalf("push: %v, want ErrClockSkew", err)
			}
			if digest(t, b) != before || count(t, b, "notes") != 0 || cursor(t, b, a) != 0 {
				t.Fatal("refused changes were applied")
			}
			// A page with a good change and a skewed one: nothing applied.
			good, bad := newNote("good"), newNote("bad")
			now := time.Now()
			page := &peer.Batch{Last: 7, Changes: []peer.Change{
				{Table: "notes", ID: good.ID.String(), HLC: int64(now.UnixMilli() << 16), Node: uuid.NewString(), Row: noteRow(t, b, good), Seq: 1},
				{Table: "notes", ID: bad.ID.String(), HLC: int64(now.Add(5*time.Minute).UnixMilli() << 16), Node: uuid.NewString(), Row: noteRow(t, b, bad), Seq: 7},
			}}
			c := newNode(t, k.other, nil)
			if _, err := c.Apply(ctx, uuid.New(), batchOf(page)); !errors.Is(err, peer.ErrClockSkew) {
				t.Fatalf("apply: %v, want ErrClockSkew", err)
			}
			if count(t, c, "notes") != 0 {
				t.Fatal("part of a refused page was applied")
			}
			// A resynchronization's purge horizon is held to the same
			// bound: ahead, it would tombstone every row of c.
			insert(t, c, newNote("kept"))
			full := &peer.Batch{Last: 1, Full: true, PurgedHLC: int64(now.Add(5*time.Minute).UnixMilli() << 16)}
			if _, err := c.Apply(ctx, uuid.New(), batchOf(full)); !errors.Is(err, peer.ErrClockSkew) {
				t.Fatalf("apply full batch: %v, want ErrClockSkew", err)
			}
			if count(t, c, "notes") != 1 {
				t.Fatal("a purge horizon beyond MaxSkew dropped rows")
			}
			// Within MaxSkew: accepted.
			d := newNode(t, k.other, &peer.Config{Now: func() time.Time { return time.Now().Add(-30 * time.Second) }})
			mustSync(t, d, a.AsPeer())
			sameDigests(t, a, d)
		})
	}
}

// TestRelay is reldatasync's multi-hop bug (seeds §2.3): hub B's feed is
// far ahead of A's when B relays A's write to C; C must still receive it,
// also when B's feed is read in small pages with the relayed row among
// them.
func TestRelay(t *testing.T) {
	t.Parallel()
	for _, k := range kinds {
		for _, page := range []int{1000, 3} {
			t.Run(fmt.Sprintf("%s/page=%d", k.name, page), func(t *testing.T) {
				t.Parallel()
				cfg := &peer.Config{BatchSize: page}
				a, b, c := newNode(t, dbtest.KindSQLite, cfg), newNode(t, k.other, cfg), newNode(t, dbtest.KindSQLite, cfg)
				notes := make([]*testmodels.Note, 20)
				for i := range notes {
					notes[i] = newNote(fmt.Sprintf("b%d", i))
				}
				insert(t, b, &notes)
				mustSync(t, c, b.AsPeer())
				if cursor(t, c, b) < 20 {
					t.Fatalf("c's cursor for b is %d", cursor(t, c, b))
				}
				x := newNote("written on a")
				insert(t, a, x) // a's feed: position 1
				insert(t, b, newNote("b after"))
				mustSync(t, b, a.AsPeer()) // b relays x at a position after c's cursor
				insert(t, b, newNote("b last"))
				mustSync(t, c, b.AsPeer())
				if body(t, c, x.ID) != "written on a" {
					t.Fatal("c never received a's row through b")
				}
				// And an update of x on a travels the same way.
				exec(t, a, "UPDATE notes SET body = 'again' WHERE id = ?", x.ID)
				mustSync(t, a, b.AsPeer())
				mustSync(t, b, c.AsPeer())
				if body(t, c, x.ID) != "again" {
					t.Fatal("c never received a's update through b")
				}
				sameDigests(t, a, b, c)
			})
		}
	}
}

// failingPeer adds a change of an unknown table to the page number
// failChanges of the peer's feed (pull) or failApply of the pages pushed
// to it.
type failingPeer struct {
	peer.Peer
	mu                     sync.Mutex
	calls                  int
	failChanges, failApply int
}

func badChange() peer.Change {
	return peer.Change{Table: "no_such_table", ID: uuid.NewString(), HLC: 1, Node: uuid.NewString(), Deleted: true}
}

func (f *failingPeer) Changes(ctx context.Context, after peer.Position, limit int, except uuid.UUID, full bool) (*peer.Batch, error) {
	b, err := f.Peer.Changes(ctx, after, limit, except, full)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.calls++
	inject := f.calls == f.failChanges
	f.mu.Unlock()
	if inject {
		mid := len(b.Changes) / 2
		b.Changes = append(b.Changes[:mid:mid], append([]peer.Change{badChange()}, b.Changes[mid:]...)...)
	}
	return b, nil
}

func (f *failingPeer) Apply(ctx context.Context, from uuid.UUID, next func() (*peer.Batch, error)) (int, error) {
	page := 0
	return f.Peer.Apply(ctx, from, func() (*peer.Batch, error) {
		b, err := next()
		if b == nil || err != nil {
			return b, err
		}
		page++
		if page == f.failApply {
			mid := len(b.Changes) / 2
			b.Changes = append(b.Changes[:mid:mid], append([]peer.Change{badChange()}, b.Changes[mid:]...)...)
		}
		return b, nil
	})
}

// TestFailedApply: a page that fails in the middle of a sync (here an
// unknown table, on the third page) leaves the receiving node's rows and
// its cursor as they were, in both directions; the next sync completes.
func TestFailedApply(t *testing.T) {
	t.Parallel()
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			cfg := &peer.Config{BatchSize: 10}
			a, b := newNode(t, dbtest.KindSQLite, cfg), newNode(t, k.other, cfg)
			for j, n := range []*peer.Node{a, b} {
				notes := make([]*testmodels.Note, 45)
				for i := range notes {
					notes[i] = newNote(fmt.Sprintf("%c%d", "ab"[j], i))
				}
				insert(t, n, &notes)
			}
			da, db := digest(t, a), digest(t, b)
			// Pull fails: a keeps its rows and cursor.
			_, err := a.Sync(ctx, &failingPeer{Peer: b.AsPeer(), failChanges: 3})
			if !errors.Is(err, dbsync.ErrUnknownTable) {
				t.Fatalf("sync: %v, want ErrUnknownTable", err)
			}
			if digest(t, a) != da || count(t, a, "notes") != 45 || cursor(t, a, b) != 0 {
				t.Fatalf("a failed pull changed a: %d notes, cursor %d", count(t, a, "notes"), cursor(t, a, b))
			}
			// Push fails: b keeps its rows and cursor (the pull part of this
			// sync succeeds first).
			rep, err := b.Sync(ctx, &failingPeer{Peer: a.AsPeer(), failApply: 3})
			if !errors.Is(err, dbsync.ErrUnknownTable) || rep.Pulled != 45 {
				t.Fatalf("sync: %v (report %+v), want ErrUnknownTable after 45 pulled", err, rep)
			}
			if digest(t, a) != da || cursor(t, a, b) != 0 {
				t.Fatal("a failed push changed the receiving node")
			}
			if digest(t, b) == db || count(t, b, "notes") != 90 {
				t.Fatal("the pull before the failed push was lost")
			}
			rep = mustSync(t, a, b.AsPeer())
			if rep.Pulled != 45 || rep.Pushed != 0 {
				t.Fatalf("report %+v, want 45 pulled, 0 pushed", rep)
			}
			sameDigests(t, a, b)
		})
	}
}

// TestPurgeResync: tombstones older than the horizon are purged; a peer
// whose cursor is older gets ErrResync, and Sync resynchronizes, whichever
// node starts it: the lagging node drops the rows deleted (and forgotten)
// by the other, and keeps the rows written after the horizon.
func TestPurgeResync(t *testing.T) {
	t.Parallel()
	for _, k := range kinds {
		for _, laggingStarts := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/lagging_starts=%v", k.name, laggingStarts), func(t *testing.T) {
				t.Parallel()
				p, lag := newNode(t, k.other, nil), newNode(t, dbtest.KindSQLite, nil)
				var notes []*testmodels.Note
				for i := range 6 {
					notes = append(notes, newNote(fmt.Sprintf("n%d", i)))
					insert(t, []*peer.Node{p, lag}[i%2], notes[i])
				}
				insert(t, p, &testmodels.List{Name: "gone"})
				insert(t, p, &testmodels.List{Name: "stays"})
				mustSync(t, lag, p.AsPeer())
				sameDigests(t, p, lag)
				// lag goes offline; p deletes rows written on either node.
				exec(t, p, "DELETE FROM notes WHERE id IN (?, ?)", notes[0].ID, notes[1].ID)
				exec(t, p, "DELETE FROM lists WHERE name = 'gone'")
				h := horizonAfter(t)
				// Newer than the horizon: a write on each side.
				exec(t, p, "UPDATE notes SET body = 'p recent' WHERE id = ?", notes[2].ID)
				exec(t, lag, "UPDATE notes SET body = 'lag recent' WHERE id = ?", notes[3].ID)
				recent := newNote("lag new")
				insert(t, lag, recent)
				purged, err := p.Purge(ctx, h.olderThan())
				if err != nil || purged != 3 {
					t.Fatalf("purged %d tombstones (%v), want 3", purged, err)
				}
				if _, err := p.Changes(ctx, peer.Position{Seq: cursor(t, lag, p)}, 10, lag.ID(), false); !errors.Is(err, peer.ErrResync) {
					t.Fatalf("changes after an old cursor: %v, want ErrResync", err)
				}
				var rep *peer.Report
				if laggingStarts {
					rep = mustSync(t, lag, p.AsPeer())
					if !rep.Resynced {
						t.Fatal("the report does not tell the resynchronization")
					}
				} else {
					mustSync(t, p, lag.AsPeer())
				}
				for _, n := range []*peer.Node{p, lag} {
					for i, want := range []string{"(none)", "(none)", "p recent", "lag recent", "n4", "n5"} {
						if got := body(t, n, notes[i].ID); got != want {
							t.Fatalf("note %d is %q, want %q", i, got, want)
						}
					}
					if body(t, n, recent.ID) != "lag new" || count(t, n, "lists") != 1 {
						t.Fatal("rows written after the horizon were lost")
					}
				}
				sameLive(t, p, lag)
				// The next syncs change no data and end quiet (the lagging
				// node may send back tombstones of rows the other forgot).
				mustSync(t, lag, p.AsPeer())
				sameLive(t, p, lag)
				if rep := mustSync(t, lag, p.AsPeer()); rep.Pulled != 0 || rep.Pushed != 0 || rep.Resynced {
					t.Fatalf("the sync after the resynchronization: %+v", rep)
				}
			})
		}
	}
}

// TestNoResurrectionAfterPurge: a node offline for longer than the horizon
// still holds a row the others deleted and have since forgotten (purged
// tombstones). A third node that never synced with it before pulls from it
// first: the stale row must not come back to life there, nor spread.
func TestNoResurrectionAfterPurge(t *testing.T) {
	t.Parallel()
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			p, q, lag := newNode(t, k.other, nil), newNode(t, dbtest.KindSQLite, nil), newNode(t, dbtest.KindSQLite, nil)
			doomed, kept := newNote("doomed"), newNote("kept")
			insert(t, p, doomed)
			insert(t, p, kept)
			mustSync(t, lag, p.AsPeer())
			mustSync(t, q, p.AsPeer())
			// lag goes offline; p deletes, q learns it; both forget.
			exec(t, p, "DELETE FROM notes WHERE id = ?", doomed.ID)
			mustSync(t, q, p.AsPeer())
			h := horizonAfter(t)
			fresh := newNote("lag, after the horizon")
			insert(t, lag, fresh)
			for _, n := range []*peer.Node{p, q} {
				if k, err := n.Purge(ctx, h.olderThan()); err != nil || k != 1 {
					t.Fatalf("purge: %d, %v", k, err)
				}
			}
			// q meets lag for the first time, and pulls first.
			mustSync(t, q, lag.AsPeer())
			mustSync(t, q, p.AsPeer())
			mustSync(t, lag, p.AsPeer())
			for i, n := range []*peer.Node{p, q, lag} {
				if got := body(t, n, doomed.ID); got != "(none)" {
					t.Fatalf("node %d: the deleted row came back: %q", i, got)
				}
				if body(t, n, kept.ID) != "kept" || body(t, n, fresh.ID) != "lag, after the horizon" {
					t.Fatalf("node %d lost a live row", i)
				}
			}
			sameLive(t, p, q, lag)
		})
	}
}

// horizon is a purge horizon between the writes before horizonAfter and
// those after it, with 200 ms on either side however slow the writes.
type horizon struct{ at time.Time }

func horizonAfter(t *testing.T) horizon {
	t.Helper()
	time.Sleep(200 * time.Millisecond)
	h := horizon{time.Now()}
	time.Sleep(200 * time.Millisecond)
	return h
}

// olderThan is the argument of Purge that puts its horizon at h.
func (h horizon) olderThan() time.Duration { return time.Since(h.at) }

// TestFeedNoGaps: a reader of the feed while a writer's transaction is
// open never sees a later write without the earlier one (reldatasync's
// "in-flight gap": a cursor moved past a row not yet committed, which is
// then never sent).
func TestFeedNoGaps(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			n := newNode(t, kind, nil)
			tx, err := n.DB().BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			first, second := newNote("first, committed last"), newNote("second")
			if _, err := tx.NewInsert().Model(first).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := n.DB().NewInsert().Model(second).Exec(ctx)
				done <- err
			}()
			time.Sleep(200 * time.Millisecond)
			b, err := n.Changes(ctx, peer.Position{}, 10, uuid.Nil, false)
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Changes) != 0 || b.Last != 0 {
				t.Fatalf("while the first write is open the feed shows %d changes up to %d", len(b.Changes), b.Last)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			b, err = n.Changes(ctx, peer.Position{}, 10, uuid.Nil, false)
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Changes) != 2 || b.Changes[0].ID != first.ID.String() || b.Changes[1].ID != second.ID.String() || b.Changes[0].Seq >= b.Changes[1].Seq {
				t.Fatalf("feed %+v, want first then second", b.Changes)
			}
		})
	}
}

// TestApplySourceErrorPassedOn: an error of the page source (a network
// error, a remote peer's refusal) comes out of Apply as it is, never
// relabelled as this node's ErrConstraint even when its text reads like a
// database's constraint error, and the pages read before it are rolled
// back.
func TestApplySourceErrorPassedOn(t *testing.T) {
	t.Parallel()
	n := newNode(t, dbtest.KindSQLite, nil)
	other := newNode(t, dbtest.KindSQLite, nil)
	insert(t, other, newNote("x"))
	page, err := other.Changes(ctx, peer.Position{}, 10, uuid.Nil, false)
	if err != nil {
		t.Fatal(err)
	}
	remote := errors.New("remote: FOREIGN KEY constraint failed (SQLSTATE 23503)")
	pages := 0
	_, err = n.Apply(ctx, other.ID(), func() (*peer.Batch, error) {
		if pages++; pages == 1 {
			return page, nil
		}
		return nil, remote
	})
	if !errors.Is(err, remote) || errors.Is(err, peer.ErrConstraint) {
		t.Fatalf("apply: %v, want the source's error and not ErrConstraint", err)
	}
	if count(t, n, "notes") != 0 || cursor(t, n, other) != 0 {
		t.Fatal("the page before the source's error was kept")
	}
}

// TestDigestTextNotTime: Digest reads a time column's values in UTC,
// whichever zone the database hands them back in (PostgreSQL "+00:00",
// SQLite "Z"), and text as it is. Before, it rewrote every `+00:00"` of a
// row's content into `Z"`, text columns included: two nodes holding, under
// one version, the bodies "x+00:00" and "xZ" had equal digests.
func TestDigestTextNotTime(t *testing.T) {
	t.Parallel()
	// The rewrite of a row's wire form Digest hashes: times in UTC, the
	// rest as it is.
	times := map[string]bool{"created": true}
	for _, c := range []struct{ row, want string }{
		{`{"body":"x+00:00","created":"2026-01-02T03:04:05.5+00:00"}`, `{"body":"x+00:00","created":"2026-01-02T03:04:05.5Z"}`},
		{`{"body":"xZ","created":"2026-01-02T05:04:05+02:00"}`, `{"body":"xZ","created":"2026-01-02T03:04:05Z"}`},
		{`{"body":"2026-01-02T03:04:05+00:00","created":null}`, `{"body":"2026-01-02T03:04:05+00:00","created":null}`},
	} {
		if got, err := peer.UTCTimes([]byte(c.row), times); err != nil || string(got) != c.want {
			t.Errorf("%s: %s, %v; want %s", c.row, got, err, c.want)
		}
	}
	for _, k := range kinds {
		for _, c := range []struct{ a, b string }{
			{"xZ", "xZ"},
			{"xZ", "x+00:00"},
			{"2026-01-02T03:04:05Z", "2026-01-02T03:04:05+00:00"},
		} {
			t.Run(fmt.Sprintf("%s/%q-%q", k.name, c.a, c.b), func(t *testing.T) {
				t.Parallel()
				a, b := newNode(t, dbtest.KindSQLite, nil), newNode(t, k.other, nil)
				note := newNote(c.a)
				insert(t, a, note)
				mustSync(t, a, b.AsPeer())
				// The same data, its time column read back in each
				// database's zone: equal digests.
				sameDigests(t, a, b)
				v, _ := versionOf(t, b.DB(), "notes", note.ID.String())
				exec(t, b, "UPDATE notes SET body = ? WHERE id = ?", c.b, note.ID)
				// (The version as it was: one version, two contents.)
				exec(t, b, "UPDATE sync_lww SET hlc = ?, node = ?, seq = ? WHERE row_id = ?", v.HLC, v.Node, v.Seq, note.ID.String())
				if same := digest(t, a) == digest(t, b); same != (c.a == c.b) {
					t.Fatalf("bodies %q and %q: digests equal %v", body(t, a, note.ID), body(t, b, note.ID), same)
				}
			})
		}
	}
}

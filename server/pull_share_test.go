package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestPullShared checks that pulls sharing an answer (server.Pull, the
// nodes woken together by the change feed) each get exactly what a pull
// of their own gets (PullUnshared), and which pulls share: the same
// version, latest version, chunk size and parents asked for, no version
// of the node's own after its version (a rebased push), no unanswered
// push, an answer within the bound; a new version starts afresh.
func TestPullShared(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			rec := &events{}
			f := newFixture(t, kind, &server.Config{OnEvent: rec.on})
			nodes := []node{f.register(), f.register(), f.register(), f.register()}
			const a, b, c, d = 0, 1, 2, 3
			mustPush := func(n int, p *push) {
				t.Helper()
				if _, err := f.Srv.Push(ctx, nodes[n].id, p.Ptr()); err != nil {
					t.Fatal(err)
				}
			}
			// Versions 1 (c), 2 (d), and 3 (c, rebased on 2).
			mustPush(c, newPush(nil).list(models.Insert, 1, "home").list(models.Insert, 2, "work").todo(models.Insert, 1, 1, "t1"))
			mustPush(d, newPush(ptr(1)).todo(models.Insert, 2, 2, "t2").list(models.Update, 1, "home!"))
			mustPush(c, newPush(ptr(1)).todo(models.Update, 1, 1, "t1!").list(models.Insert, 3, "gym"))
			rec.take()
			none := map[string][]string{}
			steps := []struct {
				name   string
				node   int
				req    protocol.PullRequest
				shared bool // answered from another pull's answer
			}{
				{name: "first from 0", node: a, req: protocol.PullRequest{LatestVersionID: ptr(0), Deleted: none}},
				{name: "same from 0", node: b, req: protocol.PullRequest{LatestVersionID: ptr(0), Deleted: none}, shared: true},
				{name: "the node's own versions after its own", node: c, req: protocol.PullRequest{LatestVersionID: ptr(0), Deleted: none}},
				{name: "d's version at 2, not after 2", node: d, req: protocol.PullRequest{LatestVersionID: ptr(2), Deleted: none}},
				{name: "same from 2", node: a, req: protocol.PullRequest{LatestVersionID: ptr(2), Deleted: none}, shared: true},
				{name: "c's own version after 2", node: c, req: protocol.PullRequest{LatestVersionID: ptr(2), Deleted: none}},
				{name: "every parent", node: a, req: protocol.PullRequest{LatestVersionID: ptr(0)}},
				{name: "every parent again", node: b, req: protocol.PullRequest{LatestVersionID: ptr(0)}, shared: true},
				{name: "other chunk size", node: b, req: protocol.PullRequest{LatestVersionID: ptr(0), Deleted: none, ChunkSize: 1}},
				{name: "other chunk size again", node: a, req: protocol.PullRequest{LatestVersionID: ptr(0), Deleted: none, ChunkSize: 1}, shared: true},
				{name: "deleted rows named", node: b, req: protocol.PullRequest{LatestVersionID: ptr(0), Deleted: map[string][]string{"lists": {"2"}}}},
				{name: "nothing new", node: a, req: protocol.PullRequest{LatestVersionID: ptr(3), Deleted: none}},
				{name: "nothing new again", node: b, req: protocol.PullRequest{LatestVersionID: ptr(3), Deleted: none}, shared: true},
			}
			check := func(name string, n int, req protocol.PullRequest, shared bool) {
				t.Helper()
				got := mustPull(t, f.Srv, nodes[n].id, &req)
				evs := rec.take()
				if len(evs) != 1 || evs[0].Op != "pull" || evs[0].Shared != shared {
					t.Fatalf("%s: events %+v, want one pull, shared %v", name, evs, shared)
				}
				var want []*protocol.Message
				if err := f.Srv.PullUnshared(ctx, nodes[n].id, &req, func(m *protocol.Message) error {
					want = append(want, m)
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				if g, w := messagesJSON(t, got), messagesJSON(t, want); g != w {
					t.Fatalf("%s: pull answered\n%s\nwant (a pull of its own)\n%s", name, g, w)
				}
				if e := evs[0]; e.VersionID != *want[0].LatestVersionID || e.Operations != want[len(want)-1].OperationCount {
					t.Fatalf("%s: event %+v, want version %d, %d operations", name, e, *want[0].LatestVersionID, want[len(want)-1].OperationCount)
				}
			}
			for _, s := range steps {
				check(s.name, s.node, s.req, s.shared)
			}
			// An unanswered push is asked about by the node alone.
			check("an unanswered push", a, protocol.PullRequest{LatestVersionID: ptr(0), Deleted: none, PushID: "6f1c7a52-8a43-4c52-9b4e-3c1f0b5a9e11"}, false)
			rec.take()

			// A new version: the answers kept are the old latest's.
			mustPush(d, newPush(ptr(3)).list(models.Insert, 4, "d4"))
			rec.take()
			check("from 0 after a new version", b, protocol.PullRequest{LatestVersionID: ptr(0), Deleted: none}, false)

			// Pulls at once from the same version: one computes, the others
			// share it, and each gets its own answer.
			var wg sync.WaitGroup
			answers := make([][]*protocol.Message, 8)
			for i := range answers {
				wg.Go(func() {
					n := []int{a, b}[i%2]
					msgs, err := pull(t, f.Srv, nodes[n].id, &protocol.PullRequest{LatestVersionID: ptr(3), Deleted: none})
					if err != nil {
						t.Errorf("pull %d: %v", i, err)
					}
					answers[i] = msgs
				})
			}
			wg.Wait()
			var want []*protocol.Message
			if err := f.Srv.PullUnshared(ctx, nodes[a].id, &protocol.PullRequest{LatestVersionID: ptr(3), Deleted: none}, func(m *protocol.Message) error {
				want = append(want, m)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			for i, got := range answers {
				if g, w := messagesJSON(t, got), messagesJSON(t, want); g != w {
					t.Fatalf("concurrent pull %d answered\n%s\nwant\n%s", i, g, w)
				}
			}
			leaders := 0
			for _, e := range rec.take() {
				if e.Op == "pull" && !e.Shared {
					leaders++
				}
			}
			if leaders != 1 {
				t.Fatalf("%d of %d concurrent pulls computed their answer, want 1", leaders, len(answers))
			}

			// An answer beyond the bound is not recorded: each pull makes
			// its own.
			f.Srv.SetMaxSharedBytes(100)
			check("beyond the bound", a, protocol.PullRequest{LatestVersionID: ptr(1), Deleted: none}, false)
			check("beyond the bound again", b, protocol.PullRequest{LatestVersionID: ptr(1), Deleted: none}, false)
		})
	}
}

// messagesJSON is a pull's messages, a line each.
func messagesJSON(t *testing.T, msgs []*protocol.Message) string {
	t.Helper()
	out := ""
	for _, m := range msgs {
		raw, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out += fmt.Sprintf("%s\n", raw)
	}
	return out
}

// TestPullSharedPerSchema: a view of the server for an older node's
// schema (ForSchema) never replays the full schema's answer, nor the
// full server the view's.
func TestPullSharedPerSchema(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			a, b := f.register(), f.register()
			if _, err := f.Srv.Push(ctx, a.id, newPush(nil).list(models.Insert, 1, "home").todo(models.Insert, 1, 1, "t1").Ptr()); err != nil {
				t.Fatal(err)
			}
			older := f.Srv.Registry().NodeSchema()
			older.Tables = slices.DeleteFunc(older.Tables, func(t protocol.SchemaTable) bool { return t.Name == "todos" })
			view, err := f.Srv.ForSchema("", older.String())
			if err != nil {
				t.Fatal(err)
			}
			none := map[string][]string{}
			for round, order := range [][]*server.Server{{f.Srv, view}, {view, f.Srv}} {
				chunk := 100 + round // a fresh key per round
				for _, srv := range order {
					req := protocol.PullRequest{LatestVersionID: ptr(0), Deleted: none, ChunkSize: chunk}
					got := mustPull(t, srv, b.id, &req)
					var want []*protocol.Message
					if err := srv.PullUnshared(ctx, b.id, &req, func(m *protocol.Message) error {
						want = append(want, m)
						return nil
					}); err != nil {
						t.Fatal(err)
					}
					if g, w := messagesJSON(t, got), messagesJSON(t, want); g != w {
						t.Fatalf("round %d, view %v: pull answered\n%s\nwant\n%s", round, srv == view, g, w)
					}
				}
			}
		})
	}
}

// TestPullSharedSlowLeader: the pulls sharing an answer do not wait for
// the node whose pull computes it to read it. The leader's node here
// reads nothing until the other pull has its answer; without the answer
// being published before it goes to the leader's node, the two would wait
// on each other (the deadline below only turns that into a failure).
func TestPullSharedSlowLeader(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, tc := range []struct {
			name     string
			maxBytes int  // the bound of a recorded answer; 0: the default
			shared   bool // the other pull replays the leader's answer
		}{
			{name: "within the bound", shared: true},
			{name: "beyond the bound", maxBytes: 100},
		} {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				rec := &events{}
				f := newFixture(t, kind, &server.Config{OnEvent: rec.on})
				if tc.maxBytes > 0 {
					f.Srv.SetMaxSharedBytes(tc.maxBytes)
				}
				a, b, c := f.register(), f.register(), f.register()
				if _, err := f.Srv.Push(ctx, a.id, newPush(nil).list(models.Insert, 1, "home").todo(models.Insert, 1, 1, "t1").Ptr()); err != nil {
					t.Fatal(err)
				}
				rec.take()
				none := map[string][]string{}
				reading, release := make(chan struct{}), make(chan struct{})
				leaderDone := make(chan error, 1)
				go func() {
					first := true
					leaderDone <- f.Srv.Pull(ctx, b.id, &protocol.PullRequest{LatestVersionID: ptr(0), Deleted: none}, func(*protocol.Message) error {
						if first {
							first = false
							close(reading)
							<-release
						}
						return nil
					})
				}()
				<-reading
				fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				var got []*protocol.Message
				err := f.Srv.Pull(fctx, c.id, &protocol.PullRequest{LatestVersionID: ptr(0), Deleted: none}, func(m *protocol.Message) error {
					got = append(got, m)
					return nil
				})
				close(release)
				if err != nil {
					t.Fatalf("the other pull, while the leader's node reads nothing: %v", err)
				}
				if err := <-leaderDone; err != nil {
					t.Fatalf("leader: %v", err)
				}
				var want []*protocol.Message
				if err := f.Srv.PullUnshared(ctx, c.id, &protocol.PullRequest{LatestVersionID: ptr(0), Deleted: none}, func(m *protocol.Message) error {
					want = append(want, m)
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				if g, w := messagesJSON(t, got), messagesJSON(t, want); g != w {
					t.Fatalf("the other pull answered\n%s\nwant\n%s", g, w)
				}
				var shared []bool
				for _, e := range rec.take() {
					if e.Op == "pull" && e.NodeID == c.id {
						shared = append(shared, e.Shared)
					}
				}
				if len(shared) != 1 || shared[0] != tc.shared {
					t.Fatalf("the other pull's events: shared %v, want [%v]", shared, tc.shared)
				}
			})
		}
	}
}

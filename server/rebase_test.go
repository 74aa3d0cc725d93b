package server_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestPushRebase walks the push rule with pushes based on an old version:
// rows no later version changed are rebased, rows another node changed
// are refused with pull_needed naming them, the pushing node's own
// versions do not count, and a rebased push that the reference or unique
// checks refuse answers pull_needed (the rows at fault changed since its
// base), where a push based on the latest version gets the refusal
// itself. A fast-forward-only server refuses every push behind.
func TestPushRebase(t *testing.T) {
	t.Parallel()
	type step struct {
		name string
		node int // index in nodes
		push *push
		want error // nil: accepted
		// names: what a pull_needed refusal names; rebased: the accepted
		// push's base is older than the latest.
		names   string
		rebased bool
		// only: names is all the refusal names.
		only bool
	}
	for _, kind := range dbtest.Kinds {
		for _, mode := range []struct{ ffOnly, chunked bool }{{false, false}, {true, false}, {false, true}} {
			ffOnly := mode.ffOnly
			t.Run(fmt.Sprintf("%s/fastforward=%v/chunked=%v", kind, ffOnly, mode.chunked), func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, kind, &server.Config{FastForwardOnly: ffOnly})
				// A chunked commit (one operation per chunk) checks a
				// rebased push chunk by chunk, not from a plan of it all.
				push := f.Srv.Push
				if mode.chunked {
					push = func(_ context.Context, id int64, req *protocol.PushRequest) (*protocol.PushResponse, error) {
						return f.commitChunked(node{id: id}, req)
					}
				}
				nodes := []node{f.register(), f.register(), f.register()}
				const a, b, c = 0, 1, 2
				// Version 1, the base of every push below but the last.
				if _, err := f.Srv.Push(ctx, nodes[a].id, newPush(nil).list(models.Insert, 1, "home").list(models.Insert, 2, "work").
					todo(models.Insert, 1, 1, "t1").todo(models.Insert, 2, 2, "t2").Ptr()); err != nil {
					t.Fatal(err)
				}
				base := ptr(1)
				behind := func(accepted error) error {
					if ffOnly {
						return dbsync.ErrPullNeeded
					}
					return accepted
				}
				steps := []step{
					{name: "fast-forward", node: a, push: newPush(base).list(models.Insert, 3, "a3")},
					{name: "disjoint rows", node: b, push: newPush(base).list(models.Insert, 4, "b4"), want: behind(nil), rebased: true},
					{name: "a row another node changed", node: b, push: newPush(base).list(models.Update, 3, "b3"), want: dbsync.ErrPullNeeded, names: "lists 3"},
					{name: "a row the node itself changed since", node: a, push: newPush(base).list(models.Update, 3, "a3!"), want: behind(nil), rebased: true},
					// Changed twice since the base (inserted, then updated):
					// named once, not once per operation.
					{name: "a row changed twice", node: c, push: newPush(base).list(models.Update, 3, "c3"), want: dbsync.ErrPullNeeded, names: "lists 3", only: true},
					{name: "a delete", node: c, push: newPush(base).del("todos", 1), want: behind(nil), rebased: true},
					{name: "a deleted row, named", node: b, push: newPush(base).todo(models.Update, 1, 1, "b1"), want: dbsync.ErrPullNeeded, names: "todos 1"},
					{name: "a parent and child deleted", node: a, push: newPush(base).del("todos", 2).del("lists", 2), want: behind(nil), rebased: true},
					// A reference to a row deleted since the base.
					{name: "a child of a deleted parent", node: b, push: newPush(base).todo(models.Insert, 11, 2, "orphan"), want: dbsync.ErrPullNeeded},
					// A child created since under a row the push deletes.
					{name: "a new child", node: a, push: newPush(base).todo(models.Insert, 12, 1, "t12"), want: behind(nil), rebased: true},
					{name: "a parent with a new child", node: c, push: newPush(base).del("lists", 1), want: dbsync.ErrPullNeeded},
					// A unique value taken since the base.
					{name: "a unique value", node: a, push: newPush(base).list(models.Insert, 8, "gym"), want: behind(nil), rebased: true},
					{name: "the same unique value", node: b, push: newPush(base).list(models.Insert, 9, "gym"), want: dbsync.ErrPullNeeded},
				}
				var latest int64 = 1
				for _, st := range steps {
					before := f.state()
					resp, err := push(ctx, nodes[st.node].id, st.push.Ptr())
					if st.want == nil {
						if err != nil || resp.NewVersionID != latest+1 || resp.Duplicate || resp.Empty {
							t.Fatalf("%s: %+v, %v, want version %d", st.name, resp, err, latest+1)
						}
						if rebased := *st.push.req.LatestVersionID < latest; rebased != st.rebased {
							t.Fatalf("%s: rebased %v, want %v", st.name, rebased, st.rebased)
						}
						latest++
						continue
					}
					if !errors.Is(err, st.want) {
						t.Fatalf("%s: %v, want %v", st.name, err, st.want)
					}
					if st.names != "" && !ffOnly && !strings.Contains(err.Error(), "changed since: "+st.names) {
						t.Fatalf("%s: %v does not name %s", st.name, err, st.names)
					}
					if st.only && !ffOnly && !strings.HasSuffix(err.Error(), "changed since: "+st.names) {
						t.Fatalf("%s: %v names more than %s", st.name, err, st.names)
					}
					f.mustUnchanged(before, st.name)
				}
				// A push with no base (a node holding no version, new or
				// not) is never rebased: the node pulls first.
				for _, base := range []*int64{nil, ptr(0)} {
					before := f.state()
					_, err := push(ctx, f.register().id, newPush(base).list(models.Insert, 20, "new node").Ptr())
					if !errors.Is(err, dbsync.ErrPullNeeded) || !ffOnly && !strings.Contains(err.Error(), "holds no version") {
						t.Fatalf("push with base %v from a new node: %v, want ErrPullNeeded (holds no version)", base, err)
					}
					f.mustUnchanged(before, "push with no base")
				}
				if ffOnly {
					return
				}
				// Based on the latest version, the same pushes get the
				// refusals themselves.
				at := ptr(latest)
				before := f.state()
				_, err := f.Srv.Push(ctx, nodes[b].id, newPush(at).todo(models.Insert, 11, 2, "orphan").Ptr())
				if !errors.Is(err, dbsync.ErrPushRejected) || errors.Is(err, dbsync.ErrPullNeeded) {
					t.Fatalf("child of a deleted parent, at the latest version: %v, want ErrPushRejected", err)
				}
				_, err = f.Srv.Push(ctx, nodes[c].id, newPush(at).del("lists", 1).Ptr())
				if !errors.Is(err, dbsync.ErrPushRejected) || errors.Is(err, dbsync.ErrPullNeeded) {
					t.Fatalf("parent with a child, at the latest version: %v, want ErrPushRejected", err)
				}
				var uc *dbsync.UniqueConstraintError
				if _, err = f.Srv.Push(ctx, nodes[b].id, newPush(at).list(models.Insert, 9, "gym").Ptr()); !errors.As(err, &uc) || errors.Is(err, dbsync.ErrPullNeeded) {
					t.Fatalf("taken unique value, at the latest version: %v, want *UniqueConstraintError", err)
				}
				f.mustUnchanged(before, "refusals at the latest version")

				// One log entry per row and version; a node pulling from the
				// base gets every version but the operations of its own.
				var dups int
				if err := f.DB.NewRaw(`SELECT COUNT(*) FROM (SELECT version_id, content_type_id, row_id FROM sync_operations
GROUP BY version_id, content_type_id, row_id HAVING COUNT(*) > 1) d`).Scan(ctx, &dups); err != nil || dups != 0 {
					t.Fatalf("%d rows logged twice in a version (%v)", dups, err)
				}
				msgs := mustPull(t, f.Srv, nodes[b].id, &protocol.PullRequest{LatestVersionID: base})
				if got := len(versionsOf(msgs)); int64(got) != latest-1 {
					t.Fatalf("b pulled %d versions, want %d", got, latest-1)
				}
				for _, op := range pulledOps(msgs) {
					if *op.VersionID == 3 {
						t.Fatalf("b pulled %+v of its own version 3", op)
					}
				}
			})
		}
	}
}

func versionsOf(msgs []*protocol.Message) []int64 {
	var out []int64
	for _, m := range msgs {
		for _, v := range m.Versions {
			out = append(out, v.VersionID)
		}
	}
	return out
}

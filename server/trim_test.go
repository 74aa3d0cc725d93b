package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestTrim follows the log floor through nodes going quiet: a trim keeps
// what the live nodes need, a node past the horizon no longer holds it
// back and is answered reset_required (pull, push, over HTTP 410), and a
// node at or above the floor pulls every version it lacks.
func TestTrim(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			clk := dbtest.NewClock(time.Now())
			// The clock moves days ahead; signed requests keep the real time.
			f := newFixture(t, kind, &server.Config{Now: clk.Now, ClockSkew: 100 * time.Hour, NodeHorizon: 24 * time.Hour, TrimBatch: 3})
			writer, reader, quiet := f.register(), f.register(), f.register()
			for i := range int64(10) {
				var base *int64
				if i > 0 {
					base = ptr(i)
				}
				if _, err := f.Srv.Push(ctx, writer.id, newPush(base).list(models.Insert, i+1, "l"+strconv.FormatInt(i+1, 10)).Ptr()); err != nil {
					t.Fatal(err)
				}
			}
			mustPull(t, f.Srv, reader.id, &protocol.PullRequest{LatestVersionID: ptr(4)})
			mustPull(t, f.Srv, quiet.id, &protocol.PullRequest{LatestVersionID: ptr(2)})

			steps := []struct {
				name       string
				before     func()
				floor      int64
				operations int64 // deleted
				retired    int
			}{
				{"every node live: the lowest holds the floor", nil, 2, 2, 0},
				{"nothing new: a second trim deletes nothing", nil, 2, 0, 0},
				{"the quiet node is retired", func() {
					clk.Advance(25 * time.Hour)
					mustPull(t, f.Srv, reader.id, &protocol.PullRequest{LatestVersionID: ptr(6)})
					if _, err := f.Srv.Push(ctx, writer.id, newPush(ptr(10)).list(models.Update, 1, "l1 again").Ptr()); err != nil {
						t.Fatal(err)
					}
				}, 6, 4, 1},
			}
			for _, st := range steps {
				if st.before != nil {
					st.before()
				}
				res, err := f.Srv.Trim(ctx)
				if err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				if res.Floor != st.floor || res.Operations != st.operations || res.RetiredNodes != st.retired {
					t.Fatalf("%s: %+v, want floor %d, %d operations deleted, %d retired", st.name, res, st.floor, st.operations, st.retired)
				}
				var below int
				if err := f.DB.NewRaw("SELECT COUNT(*) FROM sync_operations WHERE version_id <= ?", st.floor).Scan(ctx, &below); err != nil {
					t.Fatal(err)
				}
				if below != 0 || f.latest() != 11 && st.floor == 6 {
					t.Fatalf("%s: %d operations at or below the floor, latest %d", st.name, below, f.latest())
				}
			}

			// Below the floor: reset_required everywhere, nothing written.
			before := f.state()
			if _, err := pull(t, f.Srv, quiet.id, &protocol.PullRequest{LatestVersionID: ptr(2)}); !errors.Is(err, dbsync.ErrResetRequired) {
				t.Fatalf("pull below the floor: %v, want reset_required", err)
			}
			if _, err := f.Srv.Push(ctx, quiet.id, newPush(ptr(2)).list(models.Insert, 50, "x").Ptr()); !errors.Is(err, dbsync.ErrResetRequired) {
				t.Fatalf("push below the floor: %v, want reset_required", err)
			}
			// Also when a version after the floor changed a row of the push
			// (the rebase check must not answer pull_needed first).
			if _, err := f.Srv.Push(ctx, quiet.id, newPush(ptr(2)).list(models.Update, 8, "x").Ptr()); !errors.Is(err, dbsync.ErrResetRequired) {
				t.Fatalf("push below the floor of a row changed after it: %v, want reset_required", err)
			}
			status, body, _ := httpPush(t, f.Server, quiet, newPush(ptr(5)).list(models.Insert, 51, "x").Ptr())
			if status != http.StatusGone || body.Error.Code != protocol.CodeResetRequired {
				t.Fatalf("HTTP push below the floor: %d %+v, want 410 reset_required", status, body)
			}
			f.mustUnchanged(before, "requests below the floor")

			// At the floor: every version after it, and its operations.
			msgs := mustPull(t, f.Srv, reader.id, &protocol.PullRequest{LatestVersionID: ptr(6)})
			var versions []int64
			for _, m := range msgs {
				for _, v := range m.Versions {
					versions = append(versions, v.VersionID)
				}
			}
			if len(versions) != 5 || versions[0] != 7 || versions[4] != 11 || len(pulledOps(msgs)) != 5 {
				t.Fatalf("pull at the floor: versions %v, operations %v", versions, pulledOps(msgs))
			}
			// The repaired node pulls and pushes again.
			if err := f.Srv.Repair(ctx, quiet.id, func(*protocol.Message) error { return nil }); err != nil {
				t.Fatal(err)
			}
			mustPull(t, f.Srv, quiet.id, &protocol.PullRequest{LatestVersionID: ptr(11)})
			if _, err := f.Srv.Push(ctx, quiet.id, newPush(ptr(11)).list(models.Insert, 50, "x").Ptr()); err != nil {
				t.Fatal(err)
			}

			// No live node: everything but the latest version's row goes.
			clk.Advance(48 * time.Hour)
			res, err := f.Srv.Trim(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if res.Floor != 12 || res.LiveNodes != 0 || res.RetiredNodes != 3 {
				t.Fatalf("trim with every node retired: %+v", res)
			}
			after := f.state()
			if after.Versions != 1 || after.Operations != 0 || f.latest() != 12 {
				t.Fatalf("after a full trim: %d versions, %d operations, latest %d", after.Versions, after.Operations, f.latest())
			}
			if resp, err := f.Srv.Push(ctx, writer.id, newPush(ptr(12)).list(models.Insert, 60, "y").Ptr()); err != nil || resp.NewVersionID != 13 {
				t.Fatalf("push at the latest version after a full trim: %+v %v", resp, err)
			}
		})
	}
}

// TestTrimLiveWithoutPulls: authentication does not keep a node live
// (a node refused for its schema must not be), so each request served
// that names no version does: a node that only watches, queries, repairs
// or asks about a chunked push past the horizon still holds the log back
// at the version it last pulled, while a silent node is retired.
func TestTrimLiveWithoutPulls(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			clk := dbtest.NewClock(time.Now())
			f := newFixture(t, kind, &server.Config{Now: clk.Now, NodeHorizon: 24 * time.Hour})
			writer := f.register()
			for i := range int64(10) {
				var base *int64
				if i > 0 {
					base = ptr(i)
				}
				if _, err := f.Srv.Push(ctx, writer.id, newPush(base).list(models.Insert, i+1, "l"+strconv.FormatInt(i+1, 10)).Ptr()); err != nil {
					t.Fatal(err)
				}
			}
			requests := []struct {
				name string
				held int64
				do   func(node int64) error
			}{
				{"watch", 3, func(node int64) error {
					_, err := f.Srv.Watch(ctx, node, &protocol.WatchRequest{After: 10, Wait: time.Millisecond}, time.Millisecond)
					return err
				}},
				{"query", 4, func(node int64) error {
					_, err := f.Srv.Query(ctx, node, &protocol.QueryRequest{Table: "lists"})
					return err
				}},
				{"repair", 5, func(node int64) error {
					return f.Srv.Repair(ctx, node, func(*protocol.Message) error { return nil })
				}},
				{"chunk status", 6, func(node int64) error {
					_, err := f.Srv.ChunkStatus(ctx, node, uuid.NewString())
					return err
				}},
			}
			nodes := make([]node, len(requests))
			for i, r := range requests {
				nodes[i] = f.register()
				mustPull(t, f.Srv, nodes[i].id, &protocol.PullRequest{LatestVersionID: ptr(r.held)})
			}
			quiet := f.register()
			mustPull(t, f.Srv, quiet.id, &protocol.PullRequest{LatestVersionID: ptr(2)})
			for range 5 {
				clk.Advance(6 * time.Hour)
				for i, r := range requests {
					if err := r.do(nodes[i].id); err != nil {
						t.Fatalf("%s: %v", r.name, err)
					}
				}
			}
			res, err := f.Srv.Trim(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if res.Floor != 3 || res.LiveNodes != len(requests) || res.RetiredNodes != 2 {
				t.Fatalf("trim: %+v, want floor 3 held by the watching node, %d live, the writer and the quiet node retired", res, len(requests))
			}
		})
	}
}

// TestTrimConcurrent trims over and over while nodes push and pull. Every
// node is past the horizon (1ns), so each trim raises the floor to the
// latest version and requests race with it: each one either succeeds as
// if no trim ran (a pull sees an unbroken run of versions, each with its
// operation) or is answered reset_required, and the node repairs and goes
// on. In the end every push is applied once.
func TestTrimConcurrent(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, &server.Config{NodeHorizon: time.Nanosecond, TrimBatch: 2})
			const pushers, pushesPerNode, pullers = 4, 6, 2
			var resets, pullResets, trims atomic.Int64
			repair := func(node int64) (int64, error) {
				var latest int64
				err := f.Srv.Repair(ctx, node, func(m *protocol.Message) error {
					if m.Type == protocol.MsgHeader {
						latest = *m.LatestVersionID
					}
					return nil
				})
				return latest, err
			}
			// checkPull pulls from claimed: reset_required (then a
			// repair), or every version after claimed with its insert.
			checkPull := func(node, claimed int64) (int64, error) {
				msgs, err := pull(t, f.Srv, node, &protocol.PullRequest{LatestVersionID: &claimed, ChunkSize: 2})
				if errors.Is(err, dbsync.ErrResetRequired) {
					pullResets.Add(1)
					return repair(node)
				}
				if err != nil {
					return 0, err
				}
				latest := *msgs[0].LatestVersionID
				next := claimed + 1
				for _, m := range msgs {
					for _, v := range m.Versions {
						if v.VersionID != next {
							return 0, fmt.Errorf("pull from %d (latest %d): version %d where %d was due", claimed, latest, v.VersionID, next)
						}
						next++
					}
				}
				if ops := pulledOps(msgs); next != latest+1 || int64(len(ops)) != latest-claimed {
					return 0, fmt.Errorf("pull from %d to %d: versions end at %d, %d operations", claimed, latest, next-1, len(ops))
				}
				return latest, nil
			}
			var wg, bg sync.WaitGroup
			stop := make(chan struct{})
			for i := range pullers {
				n := f.register()
				bg.Add(1)
				go func() {
					defer bg.Done()
					var seen, round int64
					for {
						select {
						case <-stop:
							return
						default:
						}
						from := seen
						if round++; round%2 == 0 { // a node that lags a little
							from = max(0, seen-3)
						}
						latest, err := checkPull(n.id, from)
						if err != nil {
							t.Errorf("puller %d: %v", i, err)
							return
						}
						seen = latest
					}
				}()
			}
			bg.Add(1)
			go func() {
				defer bg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := f.Srv.Trim(ctx); err != nil {
						t.Errorf("trim: %v", err)
						return
					}
					trims.Add(1)
				}
			}()
			for p := range pushers {
				n := f.register()
				wg.Add(1)
				go func() {
					defer wg.Done()
					base, err := repair(n.id) // a node starts from the server's rows
					if err != nil {
						t.Errorf("pusher %d: repair: %v", p, err)
						return
					}
					for i := 0; i < pushesPerNode; {
						id := int64(p*100 + i + 1)
						resp, err := f.Srv.Push(ctx, n.id, newPush(&base).list(models.Insert, id, fmt.Sprintf("n%d-%d", p, i)).Ptr())
						switch {
						case errors.Is(err, dbsync.ErrResetRequired), errors.Is(err, dbsync.ErrPullNeeded):
							// (pull needed: a push based on version 0 is
							// never rebased.) A repair stands for the pull.
							if errors.Is(err, dbsync.ErrResetRequired) {
								resets.Add(1)
							}
							if base, err = repair(n.id); err != nil {
								t.Errorf("pusher %d: repair: %v", p, err)
								return
							}
							continue
						case err != nil:
							t.Errorf("pusher %d: %v", p, err)
							return
						}
						// A fast-forward moves the node's version (a rebased
						// push leaves it); every other push it keeps its
						// version, as a node that does not pull.
						if resp.NewVersionID == base+1 && i%2 == 0 {
							base = resp.NewVersionID
						}
						i++
					}
				}()
			}
			wg.Wait()
			close(stop)
			bg.Wait()
			if t.Failed() {
				return
			}
			var lists int
			if err := f.DB.NewRaw("SELECT COUNT(*) FROM lists").Scan(ctx, &lists); err != nil {
				t.Fatal(err)
			}
			if lists != pushers*pushesPerNode || f.latest() != pushers*pushesPerNode {
				t.Fatalf("%d lists, latest version %d, want %d", lists, f.latest(), pushers*pushesPerNode)
			}
			if trims.Load() == 0 {
				t.Fatal("no trim ran")
			}
			t.Logf("%d trims; answered reset_required: %d pushes, %d pulls", trims.Load(), resets.Load(), pullResets.Load())
		})
	}
}

// TestTrimEvery: Config.TrimEvery trims in the background, each trim
// reported to OnEvent, until Close, which waits for it to stop.
func TestTrimEvery(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			trims := make(chan dbsync.Event, 1)
			f := newFixture(t, kind, &server.Config{NodeHorizon: time.Nanosecond, TrimEvery: time.Millisecond,
				OnEvent: func(_ context.Context, e dbsync.Event) {
					if e.Op == "trim" {
						select {
						case trims <- e:
						default:
						}
					}
				}})
			n := f.register()
			for i := range int64(3) {
				base := ptr(i)
				if i == 0 {
					base = nil
				}
				if _, err := f.Srv.Push(ctx, n.id, newPush(base).list(models.Insert, i+1, "l"+strconv.FormatInt(i, 10)).Ptr()); err != nil {
					t.Fatal(err)
				}
			}
			// Every node is retired: a trim after the last push takes the
			// floor to version 3.
			for e := range trims {
				if e.Err != nil {
					t.Fatalf("background trim: %v", e.Err)
				}
				if e.VersionID == 3 {
					break
				}
			}
			if err := f.Srv.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := pull(t, f.Srv, n.id, &protocol.PullRequest{LatestVersionID: ptr(1)}); !errors.Is(err, dbsync.ErrResetRequired) {
				t.Fatalf("pull from below the floor: %v", err)
			}
		})
	}
}

// TestTrimLazyHeld: a node's held version higher than the one recorded is
// written lazily (a woken pull writes nothing), before a trim computes the
// floor and on Close; the floor is never computed from a version higher
// than the node holds: not when the node went back below a version not
// written yet, nor when another server process recorded a newer one.
func TestTrimLazyHeld(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			clk := dbtest.NewClock(time.Now())
			cfg := &server.Config{Now: clk.Now}
			f := newFixture(t, kind, cfg)
			reg, err := dbsync.Track(f.DB, synctest.Models()...)
			if err != nil {
				t.Fatal(err)
			}
			other, err := server.New(ctx, f.DB, reg, synctest.OpenConfig(&server.Config{Now: clk.Now}))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = other.Close() })
			writer, n := f.register(), f.register()
			for i := range int64(10) {
				var base *int64
				if i > 0 {
					base = ptr(i)
				}
				if _, err := f.Srv.Push(ctx, writer.id, newPush(base).list(models.Insert, i+1, "l"+strconv.FormatInt(i+1, 10)).Ptr()); err != nil {
					t.Fatal(err)
				}
			}
			pullAt := func(srv *server.Server, v int64) func() {
				return func() { mustPull(t, srv, n.id, &protocol.PullRequest{LatestVersionID: ptr(v)}) }
			}
			trim := func(want int64) func() {
				return func() {
					res, err := f.Srv.Trim(ctx)
					if err != nil {
						t.Fatal(err)
					}
					if res.Floor != want {
						t.Fatalf("trim: floor %d, want %d", res.Floor, want)
					}
				}
			}
			steps := []struct {
				name     string
				do       func()
				recorded int64 // the node's held version in sync_node_activity after
			}{
				{"first pull: written at once", pullAt(f.Srv, 2), 2},
				{"a higher version: not written yet", pullAt(f.Srv, 5), 2},
				{"back below the version not written", pullAt(f.Srv, 4), 2},
				{"a trim writes it first: the floor is what the node holds", trim(4), 4},
				{"a higher version again", pullAt(f.Srv, 6), 4},
				{"back below it on another process: written at once", pullAt(other, 5), 5},
				{"the older version seen is not written over it", trim(5), 5},
				{"a higher version once more: written at once, this process's record being out of date", pullAt(f.Srv, 7), 7},
				{"a higher version still", pullAt(f.Srv, 8), 7},
				{"Close writes it", func() {
					if err := f.Srv.Close(); err != nil {
						t.Fatal(err)
					}
				}, 8},
			}
			// Ties: the version another process writes at the very time
			// a pending one was seen, and this process recorded the one
			// before it, is the one kept, since it may be lower than the
			// pending one.
			third, err := server.New(ctx, f.DB, reg, synctest.OpenConfig(&server.Config{Now: clk.Now}))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = third.Close() })
			steps = append(steps, []struct {
				name     string
				do       func()
				recorded int64
			}{
				{"first pull on a new process: written at once", pullAt(third, 6), 6},
				{"at the same time, a higher version: not written yet", func() {
					clk.Advance(-10 * time.Millisecond) // the same instant as the step before
					pullAt(third, 8)()
				}, 6},
				{"at the same time, a lower one on another process (seen long ago there): written at once", func() {
					clk.Advance(-10 * time.Millisecond) // the same instant as the steps before
					pullAt(other, 7)()
				}, 7},
				{"the pending version seen at the same time is not written over it", func() {
					res, err := third.Trim(ctx)
					if err != nil {
						t.Fatal(err)
					}
					if res.Floor != 7 {
						t.Fatalf("trim: floor %d, want 7", res.Floor)
					}
				}, 7},
			}...)
			for i, st := range steps {
				if i == len(steps)-4 {
					clk.Advance(2 * time.Minute) // every process's record of the node is old
				}
				clk.Advance(10 * time.Millisecond) // a distinct time each step
				st.do()
				var held int64
				if err := f.DB.NewRaw("SELECT held_version FROM sync_node_activity WHERE node_id = ?", n.id).Scan(ctx, &held); err != nil {
					t.Fatal(err)
				}
				if held != st.recorded {
					t.Fatalf("%s: held version %d recorded, want %d", st.name, held, st.recorded)
				}
			}
		})
	}
}

// TestTrimRefusedPushRetires: a retired node below the floor whose pushes
// are all refused reset_required (its reset keeps failing, or it only
// pushes) must not be kept live by them: it named a version the server
// no longer serves, and live it would hold the floor where it is for
// every node.
func TestTrimRefusedPushRetires(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			clk := dbtest.NewClock(time.Now())
			f := newFixture(t, kind, &server.Config{Now: clk.Now, NodeHorizon: 24 * time.Hour})
			writer, stuck := f.register(), f.register()
			latest := int64(0)
			push := func() {
				t.Helper()
				resp, err := f.Srv.Push(ctx, writer.id, newPush(versionOrNil(latest)).list(models.Insert, latest+1, "l"+strconv.FormatInt(latest+1, 10)).Ptr())
				if err != nil {
					t.Fatal(err)
				}
				latest = resp.NewVersionID
			}
			for range 3 {
				push()
			}
			mustPull(t, f.Srv, stuck.id, &protocol.PullRequest{LatestVersionID: ptr(1)})
			clk.Advance(25 * time.Hour)
			push()
			if res, err := f.Srv.Trim(ctx); err != nil || res.Floor != 3 || res.RetiredNodes != 1 {
				t.Fatalf("trim: %+v %v, want floor 3, the stuck node retired", res, err)
			}
			for range 5 {
				clk.Advance(6 * time.Hour)
				if _, err := f.Srv.Push(ctx, stuck.id, newPush(ptr(1)).list(models.Insert, 100, "x").Ptr()); !errors.Is(err, dbsync.ErrResetRequired) {
					t.Fatalf("push below the floor: %v, want reset_required", err)
				}
				push()
			}
			res, err := f.Srv.Trim(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if res.Floor != latest-1 || res.LiveNodes != 1 || res.RetiredNodes != 1 {
				t.Fatalf("trim: %+v, want the floor at the writer's base %d, the stuck node retired", res, latest-1)
			}
		})
	}
}

func versionOrNil(v int64) *int64 {
	if v == 0 {
		return nil
	}
	return &v
}

// TestTrimAfterRepair: a node that resets (GET repair) holds the version
// the repair sent from then on: a trim before its next pull or push does
// not pass it, else the node, having just downloaded every row, would be
// answered reset_required again (and Sync, which resets once, fail; a
// node whose download takes longer than the trim period would never get
// in). A new node holds no version before it; a returning one holds a
// version below the floor.
func TestTrimAfterRepair(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		base int64 // the version the node holds before the reset
		// prepare brings the node (registered) below the floor.
		prepare func(f *fixture, clk *dbtest.Clock, n node, push func())
	}{
		{"new node", 0, func(f *fixture, clk *dbtest.Clock, n node, push func()) {}},
		{"returning node", 1, func(f *fixture, clk *dbtest.Clock, n node, push func()) {
			mustPull(t, f.Srv, n.id, &protocol.PullRequest{LatestVersionID: ptr(1)})
			clk.Advance(25 * time.Hour)
			push()
		}},
	}
	for _, kind := range dbtest.Kinds {
		for _, c := range cases {
			t.Run(kind+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				clk := dbtest.NewClock(time.Now())
				f := newFixture(t, kind, &server.Config{Now: clk.Now, NodeHorizon: 24 * time.Hour})
				writer, n := f.register(), f.register()
				latest := int64(0)
				push := func() {
					t.Helper()
					resp, err := f.Srv.Push(ctx, writer.id, newPush(versionOrNil(latest)).list(models.Insert, latest+1, "l"+strconv.FormatInt(latest+1, 10)).Ptr())
					if err != nil {
						t.Fatal(err)
					}
					latest = resp.NewVersionID
				}
				for range 3 {
					push()
				}
				c.prepare(f, clk, n, push)
				push()
				res, err := f.Srv.Trim(ctx)
				if err != nil || res.Floor != latest-1 {
					t.Fatalf("trim: %+v %v, want floor %d", res, err, latest-1)
				}
				if _, err := pull(t, f.Srv, n.id, &protocol.PullRequest{LatestVersionID: versionOrNil(c.base)}); !errors.Is(err, dbsync.ErrResetRequired) {
					t.Fatalf("pull below the floor: %v, want reset_required", err)
				}
				// The reset: the server's rows at the latest version.
				var repaired int64
				err = f.Srv.Repair(ctx, n.id, func(m *protocol.Message) error {
					if m.Type == protocol.MsgHeader {
						repaired = *m.LatestVersionID
					}
					return nil
				})
				if err != nil || repaired != latest {
					t.Fatalf("repair: at %d, %v; want %d", repaired, err, latest)
				}
				// The other nodes go on before the node's next request.
				push()
				push()
				if res, err := f.Srv.Trim(ctx); err != nil || res.Floor > repaired {
					t.Fatalf("trim after the repair: %+v %v, want the floor at most %d, the version the node holds", res, err, repaired)
				}
				msgs := mustPull(t, f.Srv, n.id, &protocol.PullRequest{LatestVersionID: ptr(repaired)})
				if ops := pulledOps(msgs); len(ops) != 2 {
					t.Fatalf("pull after the repair: %v, want the 2 versions after it", ops)
				}
			})
		}
	}
}

// TestTrimDuringRepair: a trim that commits while a repair starts,
// between its read of the latest version and its record of it as the
// node's held version (the versions having moved on meanwhile), does not
// pass the node: the node, holding the repair's version, is not answered
// reset_required at its next pull after another trim. A new node, which
// holds nothing the trim keeps.
func TestTrimDuringRepair(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, &server.Config{NodeHorizon: 24 * time.Hour})
			writer, n := f.register(), f.register()
			latest := int64(0)
			push := func() {
				t.Helper()
				resp, err := f.Srv.Push(ctx, writer.id, newPush(versionOrNil(latest)).list(models.Insert, latest+1, "l"+strconv.FormatInt(latest+1, 10)).Ptr())
				if err != nil {
					t.Fatal(err)
				}
				latest = resp.NewVersionID
			}
			for range 3 {
				push()
			}
			// The writer goes on, and the log is trimmed to its base,
			// while the repair starts.
			f.Srv.SetRepairNoting(func() {
				f.Srv.SetRepairNoting(nil)
				push()
				push()
				if _, err := f.Srv.Trim(ctx); err != nil {
					t.Error(err)
				}
			})
			var repaired int64
			err := f.Srv.Repair(ctx, n.id, func(m *protocol.Message) error {
				if m.Type == protocol.MsgHeader {
					repaired = *m.LatestVersionID
				}
				return nil
			})
			if err != nil || repaired != latest {
				t.Fatalf("repair: at %d, %v; want %d", repaired, err, latest)
			}
			// The writer goes on before the node's next request.
			push()
			push()
			if res, err := f.Srv.Trim(ctx); err != nil || res.Floor > repaired {
				t.Fatalf("trim after the repair: %+v %v, want the floor at most %d, the version the node holds", res, err, repaired)
			}
			msgs := mustPull(t, f.Srv, n.id, &protocol.PullRequest{LatestVersionID: ptr(repaired)})
			if ops := pulledOps(msgs); len(ops) != 2 {
				t.Fatalf("pull after the repair: %v, want the 2 versions after it", ops)
			}
		})
	}
}

// TestTrimBehindNodeLetsGo: a node below the floor can only reset, so it
// holds nothing back, whatever requests it goes on making without
// resetting (its reset failing, or its application never syncing): a
// push in chunks, which its staging and the status asked before a resend
// keep live, a watch, a query. Kept live at its version below the floor,
// it held the floor where it was for every node, and the log grew
// without bound.
func TestTrimBehindNodeLetsGo(t *testing.T) {
	t.Parallel()
	requests := []struct {
		name string
		do   func(f *fixture, n node, i int64) error
	}{
		{"chunked push", func(f *fixture, n node, i int64) error {
			_, err := f.commitChunked(n, newPush(ptr(1)).list(models.Insert, 100+i, "x").list(models.Insert, 200+i, "y").Ptr())
			if !errors.Is(err, dbsync.ErrResetRequired) {
				return fmt.Errorf("chunked push below the floor: %v, want reset_required", err)
			}
			return nil
		}},
		{"chunk status", func(f *fixture, n node, _ int64) error {
			_, err := f.Srv.ChunkStatus(ctx, n.id, uuid.NewString())
			return err
		}},
		{"watch", func(f *fixture, n node, _ int64) error {
			_, err := f.Srv.Watch(ctx, n.id, &protocol.WatchRequest{After: 1, Wait: time.Millisecond}, time.Millisecond)
			return err
		}},
		{"query", func(f *fixture, n node, _ int64) error {
			_, err := f.Srv.Query(ctx, n.id, &protocol.QueryRequest{Table: "lists"})
			return err
		}},
	}
	for _, kind := range dbtest.Kinds {
		for _, r := range requests {
			t.Run(kind+"/"+r.name, func(t *testing.T) {
				t.Parallel()
				clk := dbtest.NewClock(time.Now())
				f := newFixture(t, kind, &server.Config{Now: clk.Now, NodeHorizon: 24 * time.Hour})
				writer, stuck := f.register(), f.register()
				latest := int64(0)
				push := func() {
					t.Helper()
					resp, err := f.Srv.Push(ctx, writer.id, newPush(versionOrNil(latest)).list(models.Insert, latest+1, "l"+strconv.FormatInt(latest+1, 10)).Ptr())
					if err != nil {
						t.Fatal(err)
					}
					latest = resp.NewVersionID
				}
				for range 3 {
					push()
				}
				mustPull(t, f.Srv, stuck.id, &protocol.PullRequest{LatestVersionID: ptr(1)})
				clk.Advance(25 * time.Hour)
				push()
				if res, err := f.Srv.Trim(ctx); err != nil || res.Floor != 3 || res.RetiredNodes != 1 {
					t.Fatalf("trim: %+v %v, want floor 3, the stuck node retired", res, err)
				}
				for i := range int64(5) {
					clk.Advance(6 * time.Hour)
					if err := r.do(f, stuck, i); err != nil {
						t.Fatal(err)
					}
					push()
				}
				res, err := f.Srv.Trim(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if res.Floor != latest-1 || res.LiveNodes != 1 || res.BehindNodes != 1 {
					t.Fatalf("trim: %+v, want the floor at the writer's base %d, only the writer live, the stuck node behind", res, latest-1)
				}
			})
		}
	}
}

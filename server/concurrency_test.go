package server_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestNoVersionGaps: nodes push concurrently (each at the latest version
// it holds, pulling and retrying when told it is behind, pulling after a
// push rebased on versions it lacks) while others pull; every pull sees an
// unbroken run of versions whose operations are all there (but the
// pulling node's own), and the history ends as versions 1..N holding every
// pushed row once. On PostgreSQL the nodes are spread over three Server
// instances on three connection pools, as three server processes would
// be. Under both push rules: rebase (the default) and fast-forward only.
func TestNoVersionGaps(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, ffOnly := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/fastforward=%v", kind, ffOnly), func(t *testing.T) {
				t.Parallel()
				noVersionGaps(t, kind, false, ffOnly)
			})
		}
	}
}

// TestNoVersionGapsChunked is TestNoVersionGaps with half the nodes
// pushing in chunks (staged, then committed).
func TestNoVersionGapsChunked(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			noVersionGaps(t, kind, true, false)
		})
	}
}

// noVersionGaps runs runConcurrentPushes on one SQLite database, or on
// three PostgreSQL connection pools (three server processes).
func noVersionGaps(t *testing.T, kind string, chunked, ffOnly bool) {
	var dbs []*bun.DB
	switch kind {
	case dbtest.KindSQLite:
		dbs = append(dbs, dbtest.SQLite(t))
	default:
		url := dbtest.PostgresSchemaURL(t)
		for range 3 {
			db, err := dbtest.OpenPostgres(url)
			if err != nil {
				t.Fatal(err)
			}
			db.SetMaxOpenConns(6)
			t.Cleanup(func() { _ = db.Close() })
			dbs = append(dbs, db)
		}
	}
	if err := testmodels.CreateSchema(ctx, dbs[0]); err != nil {
		t.Fatal(err)
	}
	var srvs []*server.Server
	var reg *dbsync.Registry
	for _, db := range dbs {
		r, err := dbsync.Track(db, testmodels.All()...)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := server.New(ctx, db, r, synctest.OpenConfig(&server.Config{FastForwardOnly: ffOnly}))
		if err != nil {
			t.Fatal(err)
		}
		srvs = append(srvs, srv)
		reg = r
	}
	runConcurrentPushes(t, srvs, dbs[0], reg, chunked, ffOnly)
}

func runConcurrentPushes(t *testing.T, srvs []*server.Server, db *bun.DB, reg *dbsync.Registry, chunked, ffOnly bool) {
	const nodes, pushesPerNode, pullers = 8, 5, 3
	type nodeOn struct {
		id  int64
		srv *server.Server
	}
	var ns, readers []nodeOn
	for i := range nodes + pullers {
		srv := srvs[i%len(srvs)]
		resp, err := srv.Register(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if i < nodes {
			ns = append(ns, nodeOn{resp.Node.NodeID, srv})
		} else {
			readers = append(readers, nodeOn{resp.Node.NodeID, srv}) // pull only
		}
	}

	// checkPull pulls from claimed and verifies the stream; it returns the
	// server's latest version.
	checkPull := func(srv *server.Server, node, claimed int64) (int64, error) {
		msgs, err := pull(t, srv, node, &protocol.PullRequest{LatestVersionID: &claimed, ChunkSize: 3})
		if err != nil {
			return 0, err
		}
		if len(msgs) < 2 || msgs[0].Type != protocol.MsgHeader || msgs[len(msgs)-1].Type != protocol.MsgEnd {
			return 0, fmt.Errorf("pull stream %v", msgTypes(msgs))
		}
		latest := *msgs[0].LatestVersionID
		next := claimed + 1
		own := map[int64]bool{} // the pulling node's versions: their operations stay out
		for _, m := range msgs {
			for _, v := range m.Versions {
				if v.VersionID != next {
					return 0, fmt.Errorf("pull from %d (latest %d): version %d where %d was due", claimed, latest, v.VersionID, next)
				}
				if v.NodeID == nil {
					return 0, fmt.Errorf("version %d has no node", v.VersionID)
				}
				if *v.NodeID == node {
					own[v.VersionID] = true
				}
				next++
			}
		}
		if next != latest+1 {
			return 0, fmt.Errorf("pull from %d: versions end at %d, header says latest %d", claimed, next-1, latest)
		}
		// Every version holds one insert of its own row: a pull that sees
		// a version sees all of it.
		ops := pulledOps(msgs)
		if want := latest - claimed - int64(len(own)); int64(len(ops)) != want {
			return 0, fmt.Errorf("pull from %d to %d: %d operations, want %d", claimed, latest, len(ops), want)
		}
		for _, op := range ops {
			if op.VersionID == nil || *op.VersionID <= claimed || *op.VersionID > latest || op.Command != models.Insert || own[*op.VersionID] {
				return 0, fmt.Errorf("pull from %d to %d: operation %+v", claimed, latest, op)
			}
		}
		return latest, nil
	}

	var (
		wg, pwg  sync.WaitGroup
		stop     = make(chan struct{})
		pulls    atomic.Int64
		retries  atomic.Int64
		rebased  atomic.Int64
		mu       sync.Mutex
		accepted []int64
	)
	for i := range pullers {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			n := readers[i]
			var seen int64
			for round := 0; ; round++ {
				select {
				case <-stop:
					return
				default:
				}
				from := seen
				if round%3 == 0 {
					from = 0
				}
				latest, err := checkPull(n.srv, n.id, from)
				if err != nil {
					t.Errorf("puller %d: %v", i, err)
					return
				}
				if latest < seen {
					t.Errorf("puller %d: latest went back from %d to %d", i, seen, latest)
					return
				}
				seen = latest
				pulls.Add(1)
			}
		}()
	}
	for i, n := range ns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var latest int64
			for k := range pushesPerNode {
				id := int64(i+1)*100 + int64(k)
				p := newPush(nil).list(models.Insert, id, fmt.Sprintf("node %d push %d", n.id, k))
				for attempt := 0; ; attempt++ {
					if attempt == 500 {
						t.Errorf("node %d: push %d never accepted", n.id, k)
						return
					}
					p.req.LatestVersionID = &latest
					var resp *protocol.PushResponse
					var err error
					if chunked && i%2 == 1 {
						// Staged again on every attempt: a refused commit
						// drops its chunks.
						bodies := chunksOf(t, &p.req, 1)
						for _, b := range bodies {
							if _, err := n.srv.StagePushChunk(ctx, n.id, b); err != nil {
								t.Errorf("node %d: chunk: %v", n.id, err)
								return
							}
						}
						resp, err = n.srv.CommitPush(ctx, n.id, commitOf(&p.req, bodies))
					} else {
						resp, err = n.srv.Push(ctx, n.id, &p.req)
					}
					if err == nil {
						if resp.Duplicate || resp.Empty || resp.NewVersionID <= latest || ffOnly && resp.NewVersionID != latest+1 {
							t.Errorf("node %d: push at %d answered %+v", n.id, latest, resp)
							return
						}
						mu.Lock()
						accepted = append(accepted, resp.NewVersionID)
						mu.Unlock()
						if resp.NewVersionID == latest+1 {
							latest = resp.NewVersionID
							break
						}
						// Rebased: the versions below it come with a pull.
						rebased.Add(1)
						if latest, err = checkPull(n.srv, n.id, latest); err != nil {
							t.Errorf("node %d: %v", n.id, err)
							return
						}
						break
					}
					if !errors.Is(err, dbsync.ErrPullNeeded) {
						t.Errorf("node %d: push: %v", n.id, err)
						return
					}
					retries.Add(1)
					if latest, err = checkPull(n.srv, n.id, latest); err != nil {
						t.Errorf("node %d: %v", n.id, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	pwg.Wait()
	if t.Failed() {
		return
	}
	const total = nodes * pushesPerNode
	slices.Sort(accepted)
	var want []int64
	for v := int64(1); v <= total; v++ {
		want = append(want, v)
	}
	if !slices.Equal(accepted, want) {
		t.Fatalf("accepted versions %v, want 1..%d", accepted, total)
	}
	var versions []int64
	if err := db.NewSelect().Model((*models.Version)(nil)).Column("version_id").Order("version_id").Scan(ctx, &versions); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(versions, want) {
		t.Fatalf("sync_versions %v, want 1..%d", versions, total)
	}
	var perVersion []struct {
		VersionID int64 `bun:"version_id"`
		N         int64 `bun:"n"`
	}
	if err := db.NewSelect().Model((*models.Operation)(nil)).ColumnExpr("version_id, COUNT(*) AS n").
		Group("version_id").Order("version_id").Scan(ctx, &perVersion); err != nil {
		t.Fatal(err)
	}
	if len(perVersion) != total {
		t.Fatalf("operations by version: %+v", perVersion)
	}
	for _, pv := range perVersion {
		if pv.N != 1 {
			t.Fatalf("version %d has %d operations", pv.VersionID, pv.N)
		}
	}
	var lists []testmodels.List
	if err := db.NewSelect().Model(&lists).Order("id").Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if len(lists) != total {
		t.Fatalf("%d lists on the server, want %d", len(lists), total)
	}
	for i, n := range ns {
		for k := range pushesPerNode {
			l := lists[i*pushesPerNode+k]
			if l.ID != int64(i+1)*100+int64(k) || l.Name != fmt.Sprintf("node %d push %d", n.id, k) {
				t.Fatalf("list %+v, want node %d push %d", l, n.id, k)
			}
		}
	}
	if d := stateOf(t, db, reg); d.Pushes != total || d.Operations != total {
		t.Fatalf("sync state %+v", d)
	}
	t.Logf("%d pushes, %d rebased, %d retries after pull_needed, %d concurrent pulls", total, rebased.Load(), retries.Load(), pulls.Load())
}

package e2e_test

// TestConvergence: a server and K clients, each on its own database, make
// random changes offline and sync in random order until nothing moves any
// more. The server's application writes too (direct writes, sealed into
// versions), and the server trims its log after some rounds: a node
// silent for two rounds is retired (Config.NodeHorizon) and resets at its
// next sync, keeping its unpushed changes (merge.md T1). A third of the
// way through, release 2 adds a column: the servers upgrade, then the
// nodes one by one (Client.Migrate), and the last nodes before the end;
// upgraded nodes write the new column. Then every client
// holds exactly the server's rows, and nothing was lost except as the
// merge rules say. Node n1 pulls in small chunks, n2
// pushes in chunks (chunked pushes). 4 clients, 8 rounds (5 under the
// race detector); with
// DBSYNC_LONG=1 8 clients, 30 rounds, concurrent syncs (and trims), an
// audit after every sync, two servers on one database, and with a
// PostgreSQL server half the nodes on PostgreSQL.
//
//	go test -run TestConvergence -seed=123 ./internal/e2e/      # replay a seed
//	DBSYNC_LONG=1 go test -run TestConvergence ./internal/e2e/  # more clients and rounds, random seed

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/merge"
	srvpkg "github.com/go-dbsync/dbsync/server"
)

var convergenceSeed = flag.Int64("seed", 0, "TestConvergence seed (0: a fixed seed, or a random one with DBSYNC_LONG=1)")

// cvFixedSeed is the seed of CI runs.
const cvFixedSeed = 20240611

// cvParams size a convergence run.
type cvParams struct {
	clients int // nodes
	rounds  int // rounds with offline changes
	ops     int // at most this many changes per node and round
	names   int // distinct unique values: few, so they collide
	// concurrent: the nodes of a round sync at the same time (long mode).
	concurrent bool
	// audit: after every sync, the node still holds every row it inserted
	// that nobody deleted (long mode): a failure names the sync that lost it.
	audit bool
	// pgNodes: with a PostgreSQL server, every other node keeps its data
	// on PostgreSQL too (long mode).
	pgNodes bool
	// twoServers: a second server on the same database serves every
	// third node, as a second server process would (long mode).
	twoServers bool
}

func TestConvergence(t *testing.T) {
	t.Parallel()
	long := dbtest.Long()
	seed := *convergenceSeed
	if seed == 0 {
		seed = cvFixedSeed
		if long {
			seed = time.Now().UnixNano()
		}
	}
	p := cvParams{clients: 4, rounds: 8, ops: 4, names: 6}
	if dbtest.Race() {
		// Each variant some 5 times slower; 6 of the 12 variants at
		// default size (pairVariant).
		p.rounds = 5
	}
	if long {
		p = cvParams{clients: 8, rounds: 30, ops: 6, names: 10, concurrent: true, audit: true, pgNodes: true, twoServers: true}
	}
	t.Logf("seed %d (replay with -seed=%d), %d clients, %d rounds, concurrent syncs %v", seed, seed, p.clients, p.rounds, p.concurrent)
	policies := []struct {
		name   string
		policy merge.Policy
	}{
		{"default", nil},
		{"server_wins", merge.ServerWins},
		{"last_write_wins", merge.LastWriteWins("updated")},
	}
	for _, server := range dbtest.Kinds {
		for _, kind := range mrKinds {
			for i, pol := range policies {
				if !pairVariant(i, server, kind) {
					continue // run by the full product (see pairVariant)
				}
				name := server + "/" + kind.name + "/" + pol.name
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					start := time.Now()
					sub := seed ^ int64(len(name))<<40 ^ int64(i)<<32 ^ int64(strings.Count(name, "u"))<<24
					if strings.HasPrefix(name, "postgres") {
						sub ^= 1 << 20
					}
					if kind.isInt() {
						sub ^= 1 << 16
					}
					runConvergence(t, server, kind, pol.policy, p, sub)
					t.Logf("%s: %v", name, time.Since(start).Round(time.Millisecond))
				})
			}
		}
	}
}

// cvWorld is one convergence run.
type cvWorld struct {
	t     *testing.T
	ctx   context.Context
	kind  mrKind
	p     cvParams
	rng   *rand.Rand
	srv   *synctest.Server // the server; srvs: every server on its database
	srvs  []*synctest.Server
	nodes []*cvNode
	// direct is the server's application: its changes are direct writes
	// to the server's database; writers is nodes and direct.
	direct  *cvNode
	writers []*cvNode
	mu      sync.Mutex      // guards tick, stats and the shadows during concurrent syncs
	tickN   int64           // every write gets the next value: val and updated
	clock   *dbtest.Clock   // the server's time: an hour a round
	deleted map[string]bool // tags some node deleted (explicitly or by cascade)
	notes   map[string]bool // every value written to mr_parents.note
	stats   map[string]int
}

func (w *cvWorld) count(what string, n int) {
	w.mu.Lock()
	w.stats[what] += n
	w.mu.Unlock()
}

// cvNode is a client and its shadow record: every value it wrote to each
// row (by tag, the row's identity, which survives K1 renumbering).
type cvNode struct {
	*synctest.Client
	cfg      *client.Config
	server   int  // index in cvWorld.srvs
	v2       bool // runs release 2 (mr_parents.note)
	pushPull bool // sync with Pull then Push instead of Sync
	wrote    map[string]map[string]bool
	inserted []string
	fresh    int
	events   []string // the node's procedures, for failure reports
}

func runConvergence(t *testing.T, server string, kind mrKind, policy merge.Policy, p cvParams, seed int64) {
	w := &cvWorld{
		t: t, ctx: context.Background(), kind: kind, p: p,
		rng:     rand.New(rand.NewPCG(uint64(seed), uint64(seed)>>7^0x9e3779b97f4a7c15)),
		deleted: map[string]bool{},
		notes:   map[string]bool{},
		stats:   map[string]int{},
	}
	// A round is an hour; a node silent for two rounds is retired.
	w.clock = dbtest.NewClock(mrTime)
	scfg := &srvpkg.Config{Now: w.clock.Now, NodeHorizon: 90 * time.Minute}
	w.srv = synctest.NewServerWith(t, kind.serverDB(t, server), kind.schema, kind.models, scfg)
	w.srvs = []*synctest.Server{w.srv}
	if p.twoServers {
		w.srvs = append(w.srvs, synctest.NewServerWith(t, w.srv.DB, kind.schema, kind.models, scfg))
	}
	for i := 0; i < p.clients; i++ {
		node := &cvNode{pushPull: i%4 == 0, wrote: map[string]map[string]bool{}}
		cfg := &client.Config{DefaultPolicy: policy, MaxSyncRounds: 10, Now: w.clock.Now, OnEvent: func(_ context.Context, e dbsync.Event) {
			s := fmt.Sprintf("%s v%d ops=%d rows=%d", e.Op, e.VersionID, e.Operations, e.Rows)
			if len(e.Conflicts) > 0 {
				s += fmt.Sprintf(" %v", e.Conflicts)
			}
			if e.Err != nil {
				s += " err=" + e.Err.Error()
			}
			w.mu.Lock()
			node.events = append(node.events, s)
			w.mu.Unlock()
		}}
		switch i {
		case 1:
			cfg.ChunkSize = 3 // pulls in several chunks
		case 2:
			cfg.PushChunkOperations = 2 // most pushes chunked
		}
		nodeDB := ""
		if p.pgNodes && server == dbtest.KindPostgres && i%2 == 1 {
			nodeDB = dbtest.KindPostgres
		}
		node.cfg, node.server = cfg, min(i%3, len(w.srvs)-1)
		c := synctest.NewClientWith(t, w.srvs[node.server], fmt.Sprintf("n%d", i), kind.nodeDB(t, nodeDB), kind.schema, kind.models, cfg)
		node.Client = c
		w.nodes = append(w.nodes, node)
	}

	w.direct = &cvNode{Client: &synctest.Client{Name: "srv", DB: w.srv.DB, Reg: w.srv.Reg}, wrote: map[string]map[string]bool{}}
	w.writers = append(append([]*cvNode(nil), w.nodes...), w.direct)

	// Release 2 adds a column: the servers upgrade a third of the way
	// through, then the nodes one by one.
	upgradeAt := max(1, p.rounds/3)
	for round := 0; round < p.rounds; round++ {
		var online []*cvNode
		if round == upgradeAt {
			w.upgradeServers(scfg)
		}
		for _, n := range w.nodes {
			if round > upgradeAt && !n.v2 && w.rng.IntN(3) == 0 {
				w.upgradeNode(n)
			}
		}
		// The server's application, in every other round or so.
		if w.rng.IntN(2) == 0 {
			for k := w.rng.IntN(p.ops/2 + 1); k > 0; k-- {
				w.change(w.direct)
			}
		}
		for _, i := range w.rng.Perm(len(w.nodes)) {
			n := w.nodes[i]
			for k := w.rng.IntN(p.ops + 1); k > 0; k-- {
				w.change(n)
			}
			// Most nodes sync after their changes; some stay offline for
			// a round.
			if w.rng.IntN(4) != 0 {
				if !p.concurrent {
					w.mustSync(n)
				}
				online = append(online, n)
			}
		}
		trim := w.rng.IntN(2) == 0
		trimmer := w.srvs[w.rng.IntN(len(w.srvs))]
		if p.concurrent {
			errs := make([]error, len(online)+1)
			var wg sync.WaitGroup
			for i, n := range online {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = w.syncNode(n)
				}()
			}
			if trim { // online, while the nodes sync
				trim = false
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[len(online)] = w.trim(trimmer)
				}()
			}
			wg.Wait()
			for i, err := range errs[:len(online)] {
				if err != nil {
					w.syncFailed(online[i], err)
				}
			}
			if err := errs[len(online)]; err != nil {
				t.Fatal(err)
			}
		}
		if trim {
			if err := w.trim(trimmer); err != nil {
				t.Fatal(err)
			}
		}
		w.clock.Advance(time.Hour)
	}
	for _, n := range w.nodes {
		if !n.v2 {
			w.upgradeNode(n)
		}
	}
	// Quiet down: everyone syncs until a whole pass creates no version and
	// leaves nothing pending.
	quietDown(t, w.ctx, w.rng, w.srv.DB, w.nodes, func(n *cvNode) *synctest.Client { return n.Client }, w.mustSync)
	t.Logf("stats %v", w.stats)
	w.check()
}

// mrNote is release 2's column, as its migration adds it.
const mrNote = "ALTER TABLE mr_parents ADD COLUMN note VARCHAR NOT NULL DEFAULT ''"

// upgradeServers moves the server's database to release 2 and replaces
// the servers by release 2's on it; every node's client restarts on its
// new server (nodes keep release 1 until upgradeNode).
func (w *cvWorld) upgradeServers(cfg *srvpkg.Config) {
	w.t.Helper()
	if _, err := w.srv.DB.ExecContext(w.ctx, mrNote); err != nil {
		w.t.Fatal(err)
	}
	for i := range w.srvs {
		w.srvs[i] = synctest.NewServerWith(w.t, w.srv.DB, w.kind.schemaV2, w.kind.modelsV2, cfg)
	}
	w.srv = w.srvs[0]
	w.direct.Reg, w.direct.v2 = w.srv.Reg, true
	for _, n := range w.nodes {
		w.restart(n, w.kind.models)
	}
	w.count("server upgrade", 1)
}

// upgradeNode runs release 2's migration on a node (Client.Migrate) and
// restarts it with release 2's models.
func (w *cvWorld) upgradeNode(n *cvNode) {
	w.t.Helper()
	err := n.Migrate(w.ctx, func(ctx context.Context, tx bun.Tx) error {
		_, err := tx.ExecContext(ctx, mrNote)
		return err
	})
	if err != nil {
		w.t.Fatalf("%s: migrate: %v", n.Name, err)
	}
	w.restart(n, w.kind.modelsV2)
	n.v2 = true
	w.count("node upgrade", 1)
}

// restart replaces n's client by a new one on the same database, tracking
// models, on n's server (an application restart).
func (w *cvWorld) restart(n *cvNode, models []any) {
	w.t.Helper()
	reg, err := dbsync.Track(n.DB, models...)
	if err != nil {
		w.t.Fatal(err)
	}
	cfg := *n.cfg
	cfg.URL = w.srvs[n.server].URL
	c, err := client.New(w.ctx, n.DB, reg, &cfg)
	if err != nil {
		w.t.Fatalf("%s: restart: %v", n.Name, err)
	}
	n.Client = &synctest.Client{Name: n.Name, DB: n.DB, Reg: c.Registry(), Client: c}
}

// trim trims the server's log (server.Server.Trim), through srv.
func (w *cvWorld) trim(srv *synctest.Server) error {
	res, err := srv.Srv.Trim(w.ctx)
	if err != nil {
		return fmt.Errorf("trim: %w", err)
	}
	w.count("trim", 1)
	w.count("trimmed operations", int(res.Operations))
	return nil
}

func (w *cvWorld) tick() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tickN++
	return w.tickN
}

func stamp(v int64) time.Time { return mrTime.Add(time.Duration(v) * time.Second) }

// newUUID draws a UUID from the run's generator (replayable).
func (w *cvWorld) newUUID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], w.rng.Uint64())
	binary.LittleEndian.PutUint64(b[8:], w.rng.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return uuid.UUID(b).String()
}

type cvRow struct {
	Key, Tag string
}

// rows lists (key, tag) of a table on a node, by tag.
func (w *cvWorld) rows(db bun.IDB, table string) []cvRow {
	w.t.Helper()
	rs, err := db.QueryContext(w.ctx, "SELECT CAST(id AS TEXT), tag FROM "+table+" ORDER BY tag")
	if err != nil {
		w.t.Fatal(err)
	}
	defer rs.Close()
	var out []cvRow
	for rs.Next() {
		var r cvRow
		if err := rs.Scan(&r.Key, &r.Tag); err != nil {
			w.t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func (w *cvWorld) pick(rows []cvRow) (cvRow, bool) {
	if len(rows) == 0 {
		return cvRow{}, false
	}
	return rows[w.rng.IntN(len(rows))], true
}

// tuple is what a row holds, by tag: the values a node's shadow records.
func (w *cvWorld) tuple(db bun.IDB, table, tag string) (string, bool) {
	w.t.Helper()
	s, ok, err := w.tryTuple(db, table, tag)
	if err != nil {
		w.t.Fatal(err)
	}
	return s, ok
}

func (w *cvWorld) tryTuple(db bun.IDB, table, tag string) (string, bool, error) {
	var q string
	if table == mrParents {
		q = "SELECT 'name=' || name || ' val=' || CAST(val AS TEXT) FROM mr_parents WHERE tag = ?"
	} else {
		q = "SELECT 'parent=' || p.tag || ' title=' || c.title || ' val=' || CAST(c.val AS TEXT) FROM mr_children c JOIN mr_parents p ON p.id = c.parent_id WHERE c.tag = ?"
	}
	var s string
	err := db.NewRaw(q, tag).Scan(w.ctx, &s)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return "", false, nil
		}
		return "", false, err
	}
	return s, true, nil
}

// record notes in n's shadow the values n just wrote to a row.
func (w *cvWorld) record(n *cvNode, table, tag string) {
	w.t.Helper()
	if err := w.tryRecord(n, table, tag); err != nil {
		w.t.Fatal(err)
	}
}

func (w *cvWorld) tryRecord(n *cvNode, table, tag string) error {
	s, ok, err := w.tryTuple(n.DB, table, tag)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s: row %s vanished right after its write", n.Name, tag)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if n.wrote[tag] == nil {
		n.wrote[tag] = map[string]bool{}
	}
	n.wrote[tag][s] = true
	return nil
}

// change makes one random change on a node, offline.
func (w *cvWorld) change(n *cvNode) {
	w.t.Helper()
	ctx, db := w.ctx, n.DB
	name := fmt.Sprintf("n%d", w.rng.IntN(w.p.names))
	title := fmt.Sprintf("t%d", w.rng.IntN(5))
	v := w.tick()
	if n == w.direct {
		w.stats["direct write"]++
	}
	fail := func(what string, err error) {
		if dialect.IsUniqueViolation(err) {
			w.stats["local unique violation"]++
			return // the application picks another name next time
		}
		w.t.Fatalf("%s %s: %v", n.Name, what, err)
	}
	switch r := w.rng.IntN(100); {
	case r < 20: // insert a parent
		tag := fmt.Sprintf("%s-p%d", n.Name, v)
		if _, err := w.kind.insertParent(ctx, db, name, tag, v, stamp(v), w.newUUID); err != nil {
			fail("insert parent", err)
			return
		}
		n.inserted = append(n.inserted, tag)
		w.record(n, mrParents, tag)
		w.stats["insert parent"]++
	case r < 40: // update a parent: its name (often) and its value
		p, ok := w.pick(w.rows(db, mrParents))
		if !ok {
			return
		}
		q := "UPDATE mr_parents SET val = ?, updated = ? WHERE id = ?"
		args := []any{v, stamp(v), w.kind.arg(p.Key)}
		if w.rng.IntN(3) != 0 {
			q = "UPDATE mr_parents SET name = ?, val = ?, updated = ? WHERE id = ?"
			args = append([]any{name}, args...)
		}
		if n.v2 && w.rng.IntN(2) == 0 { // release 2 writes its column too
			note := fmt.Sprintf("%s-%d", n.Name, v)
			q = "UPDATE mr_parents SET note = ?, " + strings.TrimPrefix(q, "UPDATE mr_parents SET ")
			args = append([]any{note}, args...)
			w.notes[note] = true
		}
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			fail("update parent", err)
			return
		}
		w.record(n, mrParents, p.Tag)
		w.stats["update parent"]++
	case r < 47: // delete a parent, and its children by cascade
		p, ok := w.pick(w.rows(db, mrParents))
		if !ok {
			return
		}
		rs, err := db.QueryContext(ctx, "SELECT tag FROM mr_children WHERE parent_id = ?", w.kind.arg(p.Key))
		if err != nil {
			w.t.Fatal(err)
		}
		var children []string
		for rs.Next() {
			var tag string
			if err := rs.Scan(&tag); err != nil {
				w.t.Fatal(err)
			}
			children = append(children, tag)
		}
		rs.Close()
		if _, err := db.ExecContext(ctx, "DELETE FROM mr_parents WHERE id = ?", w.kind.arg(p.Key)); err != nil {
			w.t.Fatalf("%s delete parent: %v", n.Name, err)
		}
		w.deleted[p.Tag] = true
		for _, c := range children {
			w.deleted[c] = true
		}
		w.stats["delete parent"]++
	case r < 72: // insert a child
		p, ok := w.pick(w.rows(db, mrParents))
		if !ok {
			return
		}
		tag := fmt.Sprintf("%s-c%d", n.Name, v)
		if _, err := w.kind.insertChild(ctx, db, p.Key, title, tag, v, stamp(v), w.newUUID); err != nil {
			fail("insert child", err)
			return
		}
		n.inserted = append(n.inserted, tag)
		w.record(n, mrChildren, tag)
		w.stats["insert child"]++
	case r < 90: // update a child, sometimes moving it to another parent
		c, ok := w.pick(w.rows(db, mrChildren))
		if !ok {
			return
		}
		q := "UPDATE mr_children SET title = ?, val = ?, updated = ? WHERE id = ?"
		args := []any{title, v, stamp(v), w.kind.arg(c.Key)}
		if w.rng.IntN(5) == 0 {
			if p, ok := w.pick(w.rows(db, mrParents)); ok {
				q = "UPDATE mr_children SET parent_id = ?, title = ?, val = ?, updated = ? WHERE id = ?"
				args = append([]any{w.kind.arg(p.Key)}, args...)
			}
		}
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			fail("update child", err)
			return
		}
		w.record(n, mrChildren, c.Tag)
		w.stats["update child"]++
	default: // delete a child
		c, ok := w.pick(w.rows(db, mrChildren))
		if !ok {
			return
		}
		if _, err := db.ExecContext(ctx, "DELETE FROM mr_children WHERE id = ?", w.kind.arg(c.Key)); err != nil {
			w.t.Fatalf("%s delete child: %v", n.Name, err)
		}
		w.deleted[c.Tag] = true
		w.stats["delete child"]++
	}
}

// mustSync syncs a node; see syncNode.
func (w *cvWorld) mustSync(n *cvNode) {
	w.t.Helper()
	if err := w.syncNode(n); err != nil {
		w.syncFailed(n, err)
	}
}

func (w *cvWorld) syncFailed(n *cvNode, err error) {
	w.t.Helper()
	w.t.Fatalf("%s: sync: %v", n.Name, err)
}

// syncNode syncs a node as an application would: on a unique conflict it
// gives the colliding local rows fresh values and syncs again; when other
// nodes push faster (concurrent syncs) it tries again. It may run on any
// goroutine.
func (w *cvWorld) syncNode(n *cvNode) error {
	behind := 0
	var before string
	if w.p.audit {
		before = w.describe(n)
	}
	for attempt := 0; ; attempt++ {
		var err error
		var pulls []*client.PullResult
		if n.pushPull {
			var pr *client.PullResult
			pr, err = n.Pull(w.ctx)
			if errors.Is(err, dbsync.ErrResetRequired) { // the server trimmed past it
				w.count("reset", 1)
				_, err = n.Reset(w.ctx)
			}
			if err == nil {
				if pr != nil {
					pulls = append(pulls, pr)
				}
				_, err = n.Push(w.ctx)
			}
			w.count("pull+push", 1)
		} else {
			var sr *client.SyncResult
			sr, err = n.Sync(w.ctx)
			if sr != nil {
				pulls = sr.Pulls
				if sr.Reset != nil {
					w.count("reset", 1)
				}
			}
			w.count("sync", 1)
		}
		for _, pr := range pulls {
			for kind, count := range pr.Conflicts {
				w.count("conflict "+kind, count)
			}
		}
		if err == nil {
			if w.p.audit {
				return w.audit(n, before)
			}
			return nil
		}
		if errors.Is(err, dbsync.ErrPullNeeded) && behind < 100 {
			behind++
			w.count("behind", 1)
			continue
		}
		if attempt == 8 {
			return fmt.Errorf("still failing after %d attempts: %w", attempt, err)
		}
		var uc *dbsync.UniqueConstraintError
		if !errors.As(err, &uc) {
			if errors.Is(err, merge.ErrInconsistent) {
				return fmt.Errorf("%w (U3: the server left a displaced row unchanged)", err)
			}
			return err
		}
		w.count("unique conflict", 1)
		if err := w.resolveUnique(n, uc); err != nil {
			return err
		}
	}
}

// resolveUnique gives the rows a unique conflict names fresh values. An
// error without entries, or an entry without columns (a value the server's
// database refused that its pre-check missed), names no local row: then
// every locally changed parent gets a fresh value.
func (w *cvWorld) resolveUnique(n *cvNode, uc *dbsync.UniqueConstraintError) error {
	var keys []string
	all := len(uc.Entries) == 0
	for _, e := range uc.Entries {
		if e.Table != mrParents || len(e.Columns) == 0 {
			all = true
			continue
		}
		keys = append(keys, e.PK)
	}
	if all {
		w.count("unique conflict without a local row", 1)
		ops, err := n.Pending(w.ctx)
		if err != nil {
			return err
		}
		for _, op := range ops {
			if op.Table == mrParents && op.Command != "d" {
				keys = append(keys, op.RowID)
			}
		}
	}
	for _, key := range keys {
		var tag string
		if err := n.DB.NewRaw("SELECT tag FROM mr_parents WHERE id = ?", w.kind.arg(key)).Scan(w.ctx, &tag); err != nil {
			return fmt.Errorf("the unique conflict names %s/%s, which the node does not have: %w (%v)", mrParents, key, err, uc)
		}
		w.mu.Lock()
		n.fresh++
		name := fmt.Sprintf("%s-fresh%d", n.Name, n.fresh)
		w.mu.Unlock()
		v := w.tick()
		if _, err := n.DB.ExecContext(w.ctx, "UPDATE mr_parents SET name = ?, val = ?, updated = ? WHERE id = ?", name, v, stamp(v), w.kind.arg(key)); err != nil {
			return err
		}
		if err := w.tryRecord(n, mrParents, tag); err != nil {
			return err
		}
	}
	return nil
}

// check compares every node with the server and explains the server's
// rows.
func (w *cvWorld) check() {
	t := w.t
	t.Helper()
	ds := synctest.Dump(t, w.srv.DB, w.srv.Reg)
	for _, n := range w.nodes {
		dn := synctest.Dump(t, n.DB, n.Reg)
		if d := synctest.Diff(dn, ds); d != "" {
			var lines []string
			for _, table := range []string{mrParents, mrChildren} {
				only := func(a, b []string) []string {
					in := map[string]bool{}
					for _, r := range b {
						in[r] = true
					}
					var out []string
					for _, r := range a {
						if !in[r] {
							out = append(out, r)
						}
					}
					return out
				}
				for _, r := range only(dn[table], ds[table]) {
					lines = append(lines, fmt.Sprintf("only on %s: %s %s", n.Name, table, r))
				}
				for _, r := range only(ds[table], dn[table]) {
					lines = append(lines, fmt.Sprintf("only on the server: %s %s", table, r))
				}
			}
			w.history(lines)
			t.Fatalf("%s and the server differ:\n%s", n.Name, strings.Join(lines, "\n"))
		}
	}
	// Every server row holds values some node wrote to that row.
	var unexplained []string
	present := map[string]bool{}
	for _, table := range []string{mrParents, mrChildren} {
		for _, r := range w.rows(w.srv.DB, table) {
			present[r.Tag] = true
			s, ok := w.tuple(w.srv.DB, table, r.Tag)
			if !ok {
				unexplained = append(unexplained, fmt.Sprintf("%s %s: no parent", table, r.Tag))
				continue
			}
			explained := false
			for _, n := range w.writers {
				if n.wrote[r.Tag][s] {
					explained = true
					break
				}
			}
			if !explained {
				unexplained = append(unexplained, fmt.Sprintf("%s %s: %s", table, r.Tag, s))
			}
		}
	}
	// Every note is one some node or the server wrote, or the default.
	var notes []string
	if err := w.srv.DB.NewRaw("SELECT note FROM mr_parents").Scan(w.ctx, &notes); err != nil {
		t.Fatal(err)
	}
	for _, note := range notes {
		if note != "" && !w.notes[note] {
			unexplained = append(unexplained, fmt.Sprintf("%s note %q", mrParents, note))
		}
	}
	if len(unexplained) > 0 {
		w.history(unexplained)
		t.Fatalf("server rows no node wrote:\n%s", strings.Join(unexplained, "\n"))
	}
	// A row inserted and never deleted, whose parents were never deleted,
	// is on the server.
	parentsOf := map[string]map[string]bool{} // child tag → every parent it had
	for _, n := range w.writers {
		for tag, vals := range n.wrote {
			for s := range vals {
				if rest, ok := strings.CutPrefix(s, "parent="); ok {
					if parentsOf[tag] == nil {
						parentsOf[tag] = map[string]bool{}
					}
					parentsOf[tag][strings.Fields(rest)[0]] = true
				}
			}
		}
	}
	var lost []string
	total := 0
	for _, n := range w.writers {
		for _, tag := range n.inserted {
			if w.deleted[tag] {
				continue
			}
			orphaned := false
			for p := range parentsOf[tag] {
				orphaned = orphaned || w.deleted[p]
			}
			if orphaned {
				continue
			}
			total++
			if !present[tag] {
				lost = append(lost, tag)
			}
		}
	}
	sort.Strings(lost)
	if len(lost) > 0 {
		w.history(lost)
		t.Fatalf("inserted rows lost although nobody deleted them or their parents: %v", lost)
	}
	t.Logf("server: %d parents, %d children; %d surviving inserts checked", len(ds[mrParents]), len(ds[mrChildren]), total)
}

// history logs, for a failure report, the procedures of the nodes that
// inserted the rows named in lines (tags like "n3-p52").
func (w *cvWorld) history(lines []string) {
	w.t.Helper()
	seen := map[string]bool{}
	for _, line := range lines {
		for _, f := range strings.Fields(line) {
			f = strings.Trim(f, `",{}:`)
			f = strings.TrimPrefix(f, `tag":"`)
			for _, n := range w.writers {
				if strings.HasPrefix(f, n.Name+"-") && !seen[n.Name] {
					seen[n.Name] = true
					w.t.Logf("%s's procedures:\n  %s", n.Name, strings.Join(n.events, "\n  "))
				}
			}
		}
	}
}

// describe renders a node's log and rows, for audit failures.
func (w *cvWorld) describe(n *cvNode) string {
	var out []string
	rs, err := n.DB.QueryContext(w.ctx, `SELECT "order", content_type_id, row_id, command FROM sync_operations ORDER BY "order"`)
	if err != nil {
		return err.Error()
	}
	for rs.Next() {
		var order, ct int64
		var row, cmd string
		if err := rs.Scan(&order, &ct, &row, &cmd); err != nil {
			rs.Close()
			return err.Error()
		}
		out = append(out, fmt.Sprintf("log %d: %s %s/%s", order, cmd, n.Reg.ByContentType(ct).Name, row))
	}
	rs.Close()
	for _, table := range []string{mrParents, mrChildren} {
		for _, r := range w.rows(n.DB, table) {
			s, _, _ := w.tryTuple(n.DB, table, r.Tag)
			out = append(out, fmt.Sprintf("%s %s %s: %s", table, r.Key, r.Tag, s))
		}
	}
	return strings.Join(out, "\n")
}

// audit checks, right after a sync, that the node still holds every row it
// inserted that nobody deleted, whose parents nobody deleted.
func (w *cvWorld) audit(n *cvNode, before string) error {
	present := map[string]bool{}
	for _, table := range []string{mrParents, mrChildren} {
		for _, r := range w.rows(n.DB, table) {
			present[r.Tag] = true
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, tag := range n.inserted {
		if w.deleted[tag] || present[tag] {
			continue
		}
		orphaned := false
		for _, m := range w.writers {
			for s := range m.wrote[tag] {
				if rest, ok := strings.CutPrefix(s, "parent="); ok && w.deleted[strings.Fields(rest)[0]] {
					orphaned = true
				}
			}
		}
		if !orphaned {
			return fmt.Errorf("audit: this sync lost %s's own row %s\nbefore:\n%s\nafter:\n%s\nlast procedures: %v",
				n.Name, tag, before, w.describe(n), n.events[max(0, len(n.events)-6):])
		}
	}
	return nil
}

// quietDown has every node sync, in a random order each pass, until a
// whole pass creates no version on srv and leaves no node with changes
// pending or behind (at most 12 passes; t fails otherwise).
func quietDown[N any](t *testing.T, ctx context.Context, rng *rand.Rand, srv bun.IDB, nodes []N, client func(N) *synctest.Client, sync func(N)) {
	t.Helper()
	for pass := 0; pass < 12; pass++ {
		before := latestVersion(t, ctx, srv)
		for _, i := range rng.Perm(len(nodes)) {
			sync(nodes[i])
		}
		quiet := latestVersion(t, ctx, srv) == before
		for _, n := range nodes {
			c := client(n)
			ops, err := c.Pending(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(ops) > 0 || latestVersion(t, ctx, c.DB) != latestVersion(t, ctx, srv) {
				quiet = false
			}
		}
		if quiet {
			return
		}
	}
	t.Fatalf("no quiet state after 12 passes")
}

// latestVersion is the greatest version db records (0: none).
func latestVersion(t *testing.T, ctx context.Context, db bun.IDB) int64 {
	t.Helper()
	var v *int64
	if err := db.NewRaw("SELECT MAX(version_id) FROM sync_versions").Scan(ctx, &v); err != nil {
		t.Fatal(err)
	}
	if v == nil {
		return 0
	}
	return *v
}

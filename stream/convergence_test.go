package stream_test

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/peer"
)

var convergenceSeed = flag.Uint64("seed", 0, "TestStreamConvergence seed (0: a fixed seed, or a random one with DBSYNC_LONG=1)")

// scFixedSeed is the seed of ordinary (CI) runs.
const scFixedSeed = 20261206

// scNode is a node of the stream convergence soak.
type scNode struct {
	*peer.Node
	name string
}

// scRow names a row by table and identity.
type scRow struct{ table, id string }

// scWrite is one application write to a row, as the capture recorded it:
// the version it got and the row's content right after it.
type scWrite struct {
	v       version
	content string // "" for a delete
	list    string // todos: the identity of the list it is in
	node    string
	round   int
}

func (w scWrite) String() string {
	if w.v.Deleted {
		return fmt.Sprintf("delete by %s in round %d at (%d, %.8s)", w.node, w.round, w.v.HLC, w.v.Node)
	}
	return fmt.Sprintf("%q by %s in round %d at (%d, %.8s)", w.content, w.node, w.round, w.v.HLC, w.v.Node)
}

// scLedger records every write the soak makes, on any node.
type scLedger struct {
	mu     sync.Mutex
	writes map[scRow][]scWrite
	next   int
}

// scSession is the outcome of one session of the soak.
type scSession struct {
	outcome
	bytes int64 // through the first end, both ways
}

// scSessionOver runs a session between a and b over net.Pipe; cut > 0
// cuts the connection of end side (0: a, 1: b) after cut bytes.
func scSessionOver(t *testing.T, a, b *scNode, cut, side int) scSession {
	x1, x2 := net.Pipe()
	cc := &countConn{Conn: x1}
	var e1, e2 io.ReadWriteCloser = cc, x2
	if cut > 0 {
		if side == 0 {
			e1 = &cutConn{Conn: cc, budget: cut}
		} else {
			e2 = &cutConn{Conn: x2, budget: cut}
		}
	}
	o := sessionOver(t, &trackedConn{ReadWriteCloser: e1}, &trackedConn{ReadWriteCloser: e2}, a.Node, b.Node, cfg(), cfg())
	return scSession{outcome: o, bytes: cc.n.Load()}
}

// TestStreamConvergence is a randomized soak of stream sessions between
// peer nodes (4 nodes, 2 of them on PostgreSQL, 4 rounds; 6 nodes, 3 on
// PostgreSQL, 30 rounds with DBSYNC_LONG=1). Each round every node makes
// random inserts, updates and deletes of lists, todos and notes (deleting
// lists with todos: ON DELETE CASCADE), recorded with the version each
// write got. Then nodes sync in random pairs over net.Pipe, several
// sessions at a time, one node in two sessions at once; in every other
// round a session between two otherwise idle nodes is cut after a random
// number of bytes: a node whose data changed must have moved its cursor,
// and clean sessions afterwards must bring the two to the same data. At
// the end every pair syncs until a whole pass transfers nothing; then
// every node holds the same rows (digests, and the rows by identity) and
// each row is what last write wins makes of the writes: a note or list is
// its latest write (highest (HLC, node)), and so is a todo, unless the
// delete rule removed it (a version of it referenced a deleted list: its
// tombstone then has the nil node and the version the rule computes). The
// seed is fixed unless -seed is given (DBSYNC_LONG=1 picks a random one);
// it is logged.
func TestStreamConvergence(t *testing.T) {
	t.Parallel()
	nodesN, rounds := 4, 4
	seed := uint64(scFixedSeed)
	if dbtest.Long() {
		nodesN, rounds = 6, 30
		seed = uint64(time.Now().UnixNano())
	}
	if *convergenceSeed != 0 {
		seed = *convergenceSeed
	}
	t.Logf("seed %d (-seed %d replays it), %d nodes, %d rounds", seed, seed, nodesN, rounds)
	rng := rand.New(rand.NewPCG(seed, 1))
	ctx := context.Background()

	nodes := make([]*scNode, nodesN)
	for i := range nodes {
		kind := dbtest.KindSQLite
		if i%2 == 1 {
			kind = dbtest.KindPostgres
		}
		// Small pages: a session moves many frames, so cuts land between
		// pages as well as within them.
		n := synctest.NewNode(t, kind, &peer.Config{BatchSize: 1 + rng.IntN(30)})
		nodes[i] = &scNode{Node: n, name: fmt.Sprintf("n%d(%s)", i, kind[:2])}
	}
	lg := &scLedger{writes: map[scRow][]scWrite{}}

	var stats struct {
		mu                              sync.Mutex
		sessions, concurrent, cuts      int
		cutFailed, cutKept, cutChanged  int
		writes, cascaded, quietSessions int
	}
	size := int64(2000) // bytes of a typical session, updated as they run
	run := func(label string, a, b *scNode) error {
		s := scSessionOver(t, a, b, 0, 0)
		if err := errors.Join(s.a.err, s.b.err); err != nil {
			return fmt.Errorf("%s: %s with %s: %w", label, a.name, b.name, err)
		}
		if !s.closed[0] || !s.closed[1] {
			return fmt.Errorf("%s: %s with %s: connections closed: %v", label, a.name, b.name, s.closed)
		}
		stats.mu.Lock()
		stats.sessions++
		if s.bytes > 0 {
			size = max(size*3/4+s.bytes/4, 300)
		}
		stats.mu.Unlock()
		return nil
	}

	start := time.Now()
	for round := range rounds {
		// Writes: each node at once, each its own generator.
		var wg sync.WaitGroup
		errs := make(chan error, 3*nodesN+3)
		for i, n := range nodes {
			wrng := rand.New(rand.NewPCG(seed+uint64(round), uint64(100+i)))
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 3 + wrng.IntN(8) {
					if err := lg.change(ctx, n, wrng, round); err != nil {
						errs <- fmt.Errorf("round %d: %w", round, err)
						return
					}
				}
			}()
		}
		wg.Wait()

		// Sessions, several at a time. First a hub syncs with two others
		// at once (a third, disjoint pair beside them when there is one);
		// then workers sync random pairs, which may share nodes too.
		perm := rng.Perm(nodesN)
		hub, x, y := nodes[perm[0]], nodes[perm[1]], nodes[perm[2]]
		group := [][2]*scNode{{hub, x}, {y, hub}}
		if nodesN >= 5 {
			group = append(group, [2]*scNode{nodes[perm[3]], nodes[perm[4]]})
		}
		for _, p := range group {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := run(fmt.Sprintf("round %d, with the hub", round), p[0], p[1]); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		stats.concurrent++
		for g := range nodesN / 2 {
			srng := rand.New(rand.NewPCG(seed+uint64(round), uint64(1000+g)))
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 2 {
					i := srng.IntN(nodesN)
					j := (i + 1 + srng.IntN(nodesN-1)) % nodesN
					if err := run(fmt.Sprintf("round %d", round), nodes[i], nodes[j]); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			t.FailNow()
		}

		// A session cut mid-way, between two nodes nothing else uses.
		if round%2 == 1 {
			// Writes on both ends first: each has something to receive.
			i := rng.IntN(nodesN)
			j := (i + 1 + rng.IntN(nodesN-1)) % nodesN
			a, b := nodes[i], nodes[j]
			for _, n := range []*scNode{a, b} {
				for range 2 + rng.IntN(4) {
					if err := lg.change(ctx, n, rng, round); err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
				}
			}
			before := [2]state{stateOf(t, a.Node), stateOf(t, b.Node)}
			curs := [2]int64{cursor(t, a.Node, b.Node), cursor(t, b.Node, a.Node)}
			budget := 1 + rng.IntN(int(size*5/4))
			if rng.IntN(4) == 0 {
				budget = 1 + rng.IntN(600) // within the handshake, or just after
			}
			side := rng.IntN(2)
			o := scSessionOver(t, a, b, budget, side)
			o.mustClose(t)
			after := [2]state{stateOf(t, a.Node), stateOf(t, b.Node)}
			afterCurs := [2]int64{cursor(t, a.Node, b.Node), cursor(t, b.Node, a.Node)}
			what := fmt.Sprintf("round %d: session %s with %s cut after %d bytes on %s's end (errors: %v / %v)",
				round, a.name, b.name, budget, []string{a.name, b.name}[side], o.a.err, o.b.err)
			t.Log(what)
			for k, n := range []*scNode{a, b} {
				changed := !after[k].equal(before[k])
				if changed && afterCurs[k] == curs[k] {
					t.Fatalf("%s: %s's data changed (%v → %v) but its cursor stayed at %d", what, n.name, before[k].Counts, after[k].Counts, curs[k])
				}
				stats.mu.Lock()
				if changed {
					stats.cutChanged++
				} else {
					stats.cutKept++
				}
				stats.mu.Unlock()
			}
			stats.cuts++
			if o.a.err != nil || o.b.err != nil {
				stats.cutFailed++
			}
			// Clean sessions complete the transfer (the delete rule may
			// leave one more round trip).
			for k := 0; ; k++ {
				s := scSessionOver(t, a, b, 0, 0)
				s.ok(t)
				if s.a.rep.Received+s.b.rep.Received == 0 {
					break
				}
				if k == 3 {
					t.Fatalf("%s: %s and %s still exchange versions after %d clean sessions", what, a.name, b.name, k+1)
				}
			}
			converged(t, a.Node, b.Node)
		}
	}
	t.Logf("%d rounds in %s: %d sessions, %d of them cut", rounds, time.Since(start).Round(time.Millisecond), stats.sessions, stats.cuts)

	// Every pair syncs until a whole pass transfers nothing.
	quiet := false
	for pass := 0; pass < 2*nodesN+2 && !quiet; pass++ {
		moved := 0
		var pairs [][2]int
		for i := range nodesN {
			for j := i + 1; j < nodesN; j++ {
				if rng.IntN(2) == 0 {
					pairs = append(pairs, [2]int{i, j})
				} else {
					pairs = append(pairs, [2]int{j, i})
				}
			}
		}
		rng.Shuffle(len(pairs), func(i, j int) { pairs[i], pairs[j] = pairs[j], pairs[i] })
		for _, p := range pairs {
			a, b := nodes[p[0]], nodes[p[1]]
			s := scSessionOver(t, a, b, 0, 0)
			if err := errors.Join(s.a.err, s.b.err); err != nil {
				t.Fatalf("quiet pass %d: %s with %s: %v", pass, a.name, b.name, err)
			}
			s.mustClose(t)
			moved += s.a.rep.Received + s.b.rep.Received
			stats.quietSessions++
		}
		quiet = moved == 0
	}
	if !quiet {
		t.Fatal("the nodes never stopped exchanging versions")
	}

	// The same rows everywhere: digests (identities, versions, content),
	// the rows by identity, and every column of the notes.
	all := make([]*peer.Node, nodesN)
	for i, n := range nodes {
		all[i] = n.Node
	}
	converged(t, all...)
	first := scLive(t, nodes[0])
	firstNotes := synctest.Dump(t, nodes[0].DB(), nodes[0].Registry())["notes"]
	for _, n := range nodes[1:] {
		if got := scLive(t, n); !reflect.DeepEqual(got, first) {
			t.Fatalf("%s holds\n%s\n%s holds\n%s", n.name, strings.Join(got, "\n"), nodes[0].name, strings.Join(first, "\n"))
		}
		if d := synctest.Diff(map[string][]string{"notes": firstNotes}, map[string][]string{"notes": synctest.Dump(t, n.DB(), n.Registry())["notes"]}); d != "" {
			t.Fatalf("%s's notes differ from %s's:\n%s", n.name, nodes[0].name, d)
		}
	}

	// Each row is what last write wins makes of the writes.
	stats.writes, stats.cascaded = lg.check(t, nodes[0])
	counts := stateOf(t, nodes[0].Node).Counts
	t.Logf("converged: %d lists, %d todos, %d notes; %d writes, %d todos removed by the delete rule; %d cut sessions (%d failed; ends kept %d, changed %d); %d sessions in the quiet passes",
		counts["lists"], counts["todos"], counts["notes"], stats.writes, stats.cascaded, stats.cuts, stats.cutFailed, stats.cutKept, stats.cutChanged, stats.quietSessions)
	if counts["lists"] == 0 || counts["todos"] == 0 || counts["notes"] == 0 {
		t.Fatalf("nothing survived in a table (%v): the soak exercised too little", counts)
	}
	if stats.cuts > 0 && stats.cutFailed == 0 {
		t.Fatal("no cut ever interrupted a session: the soak cuts nothing")
	}
}

// scIDs returns the identities of n's live rows of table.
func scIDs(ctx context.Context, db bun.IDB, table string) ([]string, error) {
	col := "sync_uuid"
	if table == "notes" {
		col = "CAST(id AS TEXT)"
	}
	rows, err := db.QueryContext(ctx, "SELECT "+col+" FROM "+table+" ORDER BY 1")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// scContent reads a row's content ("" when absent) and, for a todo, its
// list's identity.
func scContent(ctx context.Context, db bun.IDB, r scRow) (content, list string, err error) {
	switch r.table {
	case "lists":
		err = db.QueryRowContext(ctx, "SELECT name FROM lists WHERE sync_uuid = ?", r.id).Scan(&content)
	case "todos":
		var title string
		var done bool
		var l sql.NullString
		err = db.QueryRowContext(ctx, "SELECT t.title, t.done, l.sync_uuid FROM todos t LEFT JOIN lists l ON l.id = t.list_id WHERE t.sync_uuid = ?", r.id).Scan(&title, &done, &l)
		list = l.String
		content = fmt.Sprintf("%s|%v|%s", title, done, list)
	case "notes":
		var body string
		var count int
		err = db.QueryRowContext(ctx, "SELECT body, count FROM notes WHERE id = ?", r.id).Scan(&body, &count)
		content = fmt.Sprintf("%s|%d", body, count)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", nil
	}
	return content, list, err
}

func scVersion(ctx context.Context, db bun.IDB, r scRow) (version, bool, error) {
	var v version
	err := db.QueryRowContext(ctx, "SELECT hlc, node, deleted FROM sync_lww WHERE content_type_id = ? AND row_id = ?",
		dbsync.ContentTypeID(r.table), r.id).Scan(&v.HLC, &v.Node, &v.Deleted)
	if errors.Is(err, sql.ErrNoRows) {
		return v, false, nil
	}
	return v, err == nil, err
}

// change makes one random write on n, in a transaction that also reads
// the versions the capture gave the rows it touched, and records them.
func (lg *scLedger) change(ctx context.Context, n *scNode, rng *rand.Rand, round int) error {
	lg.mu.Lock()
	lg.next++
	k := lg.next
	lg.mu.Unlock()
	name := fmt.Sprintf("%s-%d", n.name, k)
	var recorded []scRow
	var recs []scWrite
	err := n.DB().RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		ids := map[string][]string{}
		for _, table := range []string{"lists", "todos", "notes"} {
			s, err := scIDs(ctx, tx, table)
			if err != nil {
				return err
			}
			ids[table] = s
		}
		pick := func(table string) string { return ids[table][rng.IntN(len(ids[table]))] }
		var touched []scRow
		exec := func(q string, args ...any) (int64, error) {
			res, err := tx.ExecContext(ctx, q, args...)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", q, err)
			}
			return res.RowsAffected()
		}
		var affected int64
		var err error
		switch r := rng.IntN(100); {
		case r < 20 || len(ids["notes"]) == 0:
			id := uuid.New()
			var score any
			if rng.IntN(2) == 0 {
				score = float64(rng.IntN(100)) / 4
			}
			var tag any
			if rng.IntN(3) == 0 {
				tag = name
			}
			created := time.Now().UTC().Truncate(time.Microsecond)
			affected, err = exec("INSERT INTO notes (id, body, created, data, score, tag, count) VALUES (?, ?, ?, ?, ?, ?, ?)",
				id.String(), name, created, []byte(name), score, tag, rng.IntN(5))
			touched = append(touched, scRow{"notes", id.String()})
		case r < 35:
			id := pick("notes")
			affected, err = exec("UPDATE notes SET body = ?, count = count + 1 WHERE id = ?", name, id)
			touched = append(touched, scRow{"notes", id})
		case r < 42:
			id := pick("notes")
			affected, err = exec("DELETE FROM notes WHERE id = ?", id)
			touched = append(touched, scRow{"notes", id})
		case r < 52 || len(ids["lists"]) == 0:
			id := uuid.NewString()
			affected, err = exec("INSERT INTO lists (name, sync_uuid) VALUES (?, ?)", name, id)
			touched = append(touched, scRow{"lists", id})
		case r < 59:
			id := pick("lists")
			affected, err = exec("UPDATE lists SET name = ? WHERE sync_uuid = ?", name, id)
			touched = append(touched, scRow{"lists", id})
		case r < 66:
			// The database deletes the list's todos (ON DELETE CASCADE):
			// writes to them too.
			id := pick("lists")
			rows, qerr := tx.QueryContext(ctx, "SELECT t.sync_uuid FROM todos t JOIN lists l ON l.id = t.list_id WHERE l.sync_uuid = ?", id)
			if qerr != nil {
				return qerr
			}
			for rows.Next() {
				var tid string
				if err := rows.Scan(&tid); err != nil {
					rows.Close()
					return err
				}
				touched = append(touched, scRow{"todos", tid})
			}
			rows.Close()
			affected, err = exec("DELETE FROM lists WHERE sync_uuid = ?", id)
			touched = append(touched, scRow{"lists", id})
		case r < 84 || len(ids["todos"]) == 0:
			id := uuid.NewString()
			affected, err = exec("INSERT INTO todos (list_id, title, done, sync_uuid) VALUES ((SELECT id FROM lists WHERE sync_uuid = ?), ?, ?, ?)",
				pick("lists"), name, rng.IntN(2) == 0, id)
			touched = append(touched, scRow{"todos", id})
		case r < 95:
			id := pick("todos")
			if rng.IntN(2) == 0 {
				affected, err = exec("UPDATE todos SET title = ?, done = ?, list_id = (SELECT id FROM lists WHERE sync_uuid = ?) WHERE sync_uuid = ?",
					name, rng.IntN(2) == 0, pick("lists"), id)
			} else {
				affected, err = exec("UPDATE todos SET title = ?, done = ? WHERE sync_uuid = ?", name, rng.IntN(2) == 0, id)
			}
			touched = append(touched, scRow{"todos", id})
		default:
			id := pick("todos")
			affected, err = exec("DELETE FROM todos WHERE sync_uuid = ?", id)
			touched = append(touched, scRow{"todos", id})
		}
		if err != nil {
			return err
		}
		if affected == 0 {
			return fmt.Errorf("%s: change %d touched no row (%v)", n.name, k, touched)
		}
		for _, row := range touched {
			v, ok, err := scVersion(ctx, tx, row)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%s: change %d: no version of %v", n.name, k, row)
			}
			content, list, err := scContent(ctx, tx, row)
			if err != nil {
				return err
			}
			if v.Deleted != (content == "") {
				return fmt.Errorf("%s: change %d: %v has version %s but content %q", n.name, k, row, fmtV(v), content)
			}
			recorded = append(recorded, row)
			recs = append(recs, scWrite{v: v, content: content, list: list, node: n.name, round: round})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: change %d: %w", n.name, k, err)
	}
	lg.mu.Lock()
	for i, row := range recorded {
		lg.writes[row] = append(lg.writes[row], recs[i])
	}
	lg.mu.Unlock()
	return nil
}

func fmtV(v version) string { return fmt.Sprintf("(%d, %.8s, deleted %v)", v.HLC, v.Node, v.Deleted) }

// check fails the test unless every row n holds, and every row written,
// is what last write wins makes of the writes recorded. It returns the
// number of writes and of todos the delete rule removed.
func (lg *scLedger) check(t *testing.T, n *scNode) (writes, cascaded int) {
	t.Helper()
	ctx := context.Background()
	nilNode := uuid.Nil.String()
	for _, table := range []string{"lists", "todos", "notes"} {
		ids, err := scIDs(ctx, n.DB(), table)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if _, ok := lg.writes[scRow{table, id}]; !ok {
				t.Errorf("%s holds %s %s, which nobody wrote", n.name, table, id)
			}
		}
	}
	// Deletes of each list, for the delete rule.
	listDeletes := map[string][]scWrite{}
	for row, ws := range lg.writes {
		if row.table == "lists" {
			for _, w := range ws {
				if w.v.Deleted {
					listDeletes[row.id] = append(listDeletes[row.id], w)
				}
			}
		}
	}
	rows := make([]scRow, 0, len(lg.writes))
	for row, ws := range lg.writes {
		rows = append(rows, row)
		writes += len(ws)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].table+rows[i].id < rows[j].table+rows[j].id })
	for _, row := range rows {
		ws := lg.writes[row]
		last := ws[0]
		for _, w := range ws[1:] {
			if w.v.newer(last.v) {
				last = w
			}
		}
		content, list, err := scContent(ctx, n.DB(), row)
		if err != nil {
			t.Fatal(err)
		}
		v, ok, err := scVersion(ctx, n.DB(), row)
		if err != nil {
			t.Fatal(err)
		}
		history := func() string {
			var s []string
			for _, w := range ws {
				s = append(s, "  "+w.String())
			}
			return strings.Join(s, "\n")
		}
		if !ok {
			t.Errorf("%s %s: no version on %s; writes:\n%s", row.table, row.id, n.name, history())
			continue
		}
		if v == last.v {
			if content != last.content {
				t.Errorf("%s %s on %s: %q at %s, but the latest write is %s; writes:\n%s", row.table, row.id, n.name, content, fmtV(v), last, history())
			}
			continue
		}
		// Only the delete rule may give a todo a version nobody wrote: a
		// delete of the nil node, one past the version of a write of the
		// todo in a list or of a delete of that list, whichever is later,
		// and newer than the latest write.
		justified := false
		if row.table == "todos" && v.Deleted && v.Node == nilNode && v.newer(last.v) && content == "" {
			for _, w := range ws {
				if w.v.Deleted {
					continue
				}
				for _, d := range listDeletes[w.list] {
					if v.HLC == max(w.v.HLC, d.v.HLC)+1 {
						justified = true
					}
				}
			}
		}
		if justified {
			cascaded++
			continue
		}
		t.Errorf("%s %s on %s: %q at %s (list %q), but the latest write is %s; writes:\n%s",
			row.table, row.id, n.name, content, fmtV(v), list, last, history())
	}
	if t.Failed() {
		t.FailNow()
	}
	return writes, cascaded
}

// scLive lists n's rows by identity with their content (lists and todos
// by the identity of the list, not the local key), sorted.
func scLive(t *testing.T, n *scNode) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	for _, table := range []string{"lists", "todos", "notes"} {
		ids, err := scIDs(ctx, n.DB(), table)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			content, _, err := scContent(ctx, n.DB(), scRow{table, id})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, table+" "+id+" "+content)
		}
	}
	sort.Strings(out)
	return out
}

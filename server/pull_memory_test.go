package server_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestPullHoldsAboutBudget: a pull chunk read every row of its
// operations, and their parents, before it looked at their size: a table
// of large rows (a picture each) in chunks of 1000 operations made the
// server hold 1000 rows for one chunk (5 GB for 5 MB rows), and read them
// again for every half the chunk was split into. The rows are read a
// window at a time and no more once the line budget is reached: what the
// server holds (the bytes of rows it read, less those of the lines it
// emitted) stays about the budget and a few rows, each operation's row is
// read once, and the lines still carry every row once with its operation
// and its parents.
func TestPullHoldsAboutBudget(t *testing.T) {
	t.Parallel()
	const budget, n, big = 3000, 40, 1000
	name := func(i int64, size int) string { return fmt.Sprintf("%03d", i) + strings.Repeat("x", size) }
	cases := []struct {
		name string
		// first is pushed before the version the node holds (the parents
		// a pull sends as payload), then is pulled.
		first, then func(p *push)
		// bound on the bytes of rows held; readOnce: no row read twice
		// (parents are read again for each line that needs them).
		bound    int
		readOnce bool
	}{
		{
			name: "large rows",
			then: func(p *push) {
				for i := int64(1); i <= n; i++ {
					p.list(models.Insert, i, name(i, big))
				}
			},
			bound: budget + 2*(big+30), readOnce: true,
		},
		{
			name: "large rows, small parents",
			first: func(p *push) {
				for i := int64(1); i <= 3; i++ {
					p.list(models.Insert, i, name(i, 0))
				}
			},
			then: func(p *push) {
				for i := int64(1); i <= n; i++ {
					p.todo(models.Insert, i, 1+i%3, name(i, big))
				}
			},
			bound: budget + 2*(big+60) + 3*30,
		},
		{
			name: "small rows, large parents",
			first: func(p *push) {
				for i := int64(1); i <= n; i++ {
					p.list(models.Insert, i, name(i, big))
				}
			},
			then: func(p *push) {
				for i := int64(1); i <= n; i++ {
					p.todo(models.Insert, i, i, name(i, 0))
				}
			},
			// The rows held ahead, and the parents of a line.
			bound: 2*budget + 3*(big+30),
		},
	}
	for _, kind := range dbtest.Kinds {
		for _, tc := range cases {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, kind, nil)
				f.Srv.SetLineBudget(budget)
				a, b := f.register(), f.register()
				var from *int64
				want := map[string]map[string]any{} // by table and key: the row pulled
				record := func(p *push) {
					for _, rows := range p.req.Payload {
						for _, raw := range rows {
							var m map[string]any
							if err := json.Unmarshal(raw, &m); err != nil {
								t.Fatal(err)
							}
							// Keyed by table: the two tables share ids.
							want[rowTable(m)+"/"+fmt.Sprint(m["id"])] = m
						}
					}
				}
				if tc.first != nil {
					p := newPush(nil)
					tc.first(p)
					record(p)
					resp, err := f.Srv.Push(ctx, a.id, p.Ptr())
					if err != nil {
						t.Fatal(err)
					}
					from = ptr(resp.NewVersionID)
				}
				p := newPush(from)
				tc.then(p)
				record(p)
				if _, err := f.Srv.Push(ctx, a.id, p.Ptr()); err != nil {
					t.Fatal(err)
				}

				meter := holdMeter(f.Srv)
				sent := map[string]int{}
				err := f.Srv.PullUnshared(ctx, b.id, &protocol.PullRequest{LatestVersionID: from, ChunkSize: 1000}, func(m *protocol.Message) error {
					if m.Type != protocol.MsgChunk {
						return nil
					}
					size := meter.line(m)
					inLine := map[string]map[string]any{}
					for table, rows := range m.Payload {
						for _, raw := range rows {
							var row map[string]any
							if err := json.Unmarshal(raw, &row); err != nil {
								return err
							}
							inLine[table+"/"+fmt.Sprint(row["id"])] = row
						}
					}
					if size > budget && len(m.Operations) > 1 {
						t.Errorf("a line of %d operations holds %d bytes of rows, over the budget of %d", len(m.Operations), size, budget)
					}
					for _, op := range m.Operations {
						k := op.Table + "/" + op.RowID
						sent[k]++
						row, ok := inLine[k]
						if !ok {
							t.Errorf("%s %s without its row in its line", op.Command, k)
							continue
						}
						if w := want[k]; !reflect.DeepEqual(row, w) {
							t.Errorf("row %s: got %v, want %v", k, row, w)
						}
						if op.Table == "todos" {
							parent := "lists/" + strconv.FormatFloat(row["list_id"].(float64), 'f', -1, 64)
							if _, ok := inLine[parent]; !ok && sent[parent] == 0 {
								t.Errorf("todo %s sent without its list %s", k, parent)
							}
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if len(sent) != n {
					t.Fatalf("%d operations sent, want %d", len(sent), n)
				}
				for k, c := range sent {
					if c != 1 {
						t.Fatalf("%s sent %d times", k, c)
					}
				}
				meter.check(t, budget, tc.bound, tc.readOnce)
			})
		}
	}
}

// rowTable tells the tables of TestPullHoldsAboutBudget's rows apart.
func rowTable(row map[string]any) string {
	if _, ok := row["list_id"]; ok {
		return "todos"
	}
	return "lists"
}

// TestPullLargeRowsEndToEnd: a node pulling, over HTTP, rows whose chunks
// pass the server's line budget many times over, parents updated after
// their children among them, gets every row, whole: the server's database
// and the node's are the same.
func TestPullLargeRowsEndToEnd(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			f.Srv.SetLineBudget(4000)
			a := f.register()
			p := newPush(nil)
			for i := int64(1); i <= 30; i++ {
				p.list(models.Insert, i, fmt.Sprintf("%03d", i)+strings.Repeat("l", 500*int(i%5)))
			}
			for i := int64(1); i <= 60; i++ {
				p.todo(models.Insert, i, 1+i%30, fmt.Sprintf("%03d", i)+strings.Repeat("t", 300*int(i%11)))
			}
			resp, err := f.Srv.Push(ctx, a.id, p.Ptr())
			if err != nil {
				t.Fatal(err)
			}
			// Lists updated after their todos come after them in the pull,
			// lines later.
			p = newPush(ptr(resp.NewVersionID))
			for i := int64(1); i <= 10; i++ {
				p.list(models.Update, i, fmt.Sprintf("%03d", i)+strings.Repeat("u", 1500))
			}
			if _, err := f.Srv.Push(ctx, a.id, p.Ptr()); err != nil {
				t.Fatal(err)
			}
			c := synctest.NewClient(t, f.Server, "c", nil)
			res, err := c.Pull(ctx)
			if err != nil {
				t.Fatalf("pull: %v", err)
			}
			if res.Operations != 90 {
				t.Fatalf("pulled %d operations, want 90", res.Operations)
			}
			if d := synctest.Diff(synctest.Dump(t, f.DB, f.Reg), synctest.Dump(t, c.DB, c.Reg)); d != "" {
				t.Fatalf("server and node differ:\n%s", d)
			}
		})
	}
}

// meter measures what an answer holds: the bytes of rows the server read
// (less those it let go unsent), less those of the lines emitted so far,
// just before each line is emitted.
type meter struct {
	read, emitted, held, lines int
}

// holdMeter measures the answers of srv until the test ends.
func holdMeter(srv *server.Server) *meter {
	m := &meter{}
	srv.SetRowsHeld(func(size int) { m.read += size })
	return m
}

// line notes a line about to be emitted; it returns its bytes of rows.
func (m *meter) line(msg *protocol.Message) int {
	m.lines++
	m.held = max(m.held, m.read-m.emitted)
	size := 0
	for _, r := range msg.Rows {
		size += len(r)
	}
	for _, rows := range msg.Payload {
		for _, r := range rows {
			size += len(r)
		}
	}
	m.emitted += size
	return size
}

// check fails t when the answer held more than bound bytes of rows, or
// with readOnce, when it read rows it did not send.
func (m *meter) check(t *testing.T, budget, bound int, readOnce bool) {
	t.Helper()
	t.Logf("%d lines, %d bytes of rows read, %d emitted, at most %d held", m.lines, m.read, m.emitted, m.held)
	if m.held > bound {
		t.Fatalf("the server held up to %d bytes of rows for a line (budget %d), want at most %d", m.held, budget, bound)
	}
	if readOnce && m.read != m.emitted {
		t.Fatalf("the server read %d bytes of rows to send %d: rows read more than once", m.read, m.emitted)
	}
}

// TestRepairHoldsAboutBudget: a repair (and a reset, and a backfill,
// which read rows the same way) read a page of chunk size rows whole
// before it cut it into lines within the line budget: 1000 rows of 5 MB
// held 5 GB. Rows are read a line at a time: the server holds about
// the budget and a row, reads each row once, and sends each once.
func TestRepairHoldsAboutBudget(t *testing.T) {
	t.Parallel()
	const budget, n, big = 3000, 40, 1000
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			f.Srv.SetLineBudget(budget)
			for i := 1; i <= n; i++ {
				if _, err := f.DB.ExecContext(ctx, "INSERT INTO lists (id, name) VALUES (?, ?)", i, fmt.Sprintf("%03d", i)+strings.Repeat("x", big)); err != nil {
					t.Fatal(err)
				}
			}
			b := f.register()
			m := holdMeter(f.Srv)
			seen := map[string]int{}
			if err := f.Srv.Repair(ctx, b.id, func(msg *protocol.Message) error {
				if msg.Type != protocol.MsgRows {
					return nil
				}
				if size := m.line(msg); size > budget && len(msg.Rows) > 1 {
					t.Errorf("a line of %d rows holds %d bytes, over the budget of %d", len(msg.Rows), size, budget)
				}
				for _, r := range msg.Rows {
					var row struct {
						ID   int64  `json:"id"`
						Name string `json:"name"`
					}
					if err := json.Unmarshal(r, &row); err != nil {
						return err
					}
					if want := fmt.Sprintf("%03d", row.ID) + strings.Repeat("x", big); row.Name != want {
						t.Errorf("list %d: name of %d bytes, want %d", row.ID, len(row.Name), len(want))
					}
					seen[strconv.FormatInt(row.ID, 10)]++
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(seen) != n {
				t.Fatalf("%d rows repaired, want %d", len(seen), n)
			}
			for k, c := range seen {
				if c != 1 {
					t.Fatalf("list %s sent %d times", k, c)
				}
			}
			m.check(t, budget, budget+2*(big+30), true)
		})
	}
}

// meteredPull is mustPull, its lines measured by m as they are emitted.
func meteredPull(t *testing.T, srv *server.Server, m *meter, node int64, req *protocol.PullRequest) []*protocol.Message {
	t.Helper()
	var out []*protocol.Message
	if err := srv.Pull(ctx, node, req, func(msg *protocol.Message) error {
		if len(msg.Rows) > 0 || len(msg.Payload) > 0 {
			m.line(msg)
		}
		c := *msg
		out = append(out, &c)
		return nil
	}); err != nil {
		t.Fatalf("pull: %v", err)
	}
	return out
}

// TestBackfillHoldsAboutBudget: a backfill line's rows were read within
// the line budget, but the parents they reference (its payload) were
// loaded whole: small rows referencing large ones made one line hold
// every parent of up to chunk size rows, far past the budget. The
// parents are loaded within the budget as a chunk's are, the line halved
// when they pass it: the server holds about the budget and a row or two,
// each line carries the parents of its rows, and each row goes once.
func TestBackfillHoldsAboutBudget(t *testing.T) {
	t.Parallel()
	const budget, n, big = 3000, 40, 1000
	name := func(i int64, size int) string { return fmt.Sprintf("%03d", i) + strings.Repeat("x", size) }
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			f.Srv.SetLineBudget(budget)
			a, b := f.register(), f.register()
			p := newPush(nil)
			for i := int64(1); i <= n; i++ {
				p.list(models.Insert, i, name(i, big))
				p.todo(models.Insert, i, i, name(i, 0))
			}
			if _, err := f.Srv.Push(ctx, a.id, p.Ptr()); err != nil {
				t.Fatal(err)
			}
			// b holds every row and gained todos.list_id.
			var want protocol.NodeSchema
			for _, nt := range f.Reg.NodeSchema().Tables {
				if nt.Name == "todos" {
					nt.Columns = []protocol.SchemaColumn{nt.Columns[0], *nt.Column("list_id")}
					want.Tables = append(want.Tables, nt)
				}
			}
			m := holdMeter(f.Srv)
			msgs := meteredPull(t, f.Srv, m, b.id, &protocol.PullRequest{LatestVersionID: ptr(f.latest()), ChunkSize: 1000, Backfill: want.String()})
			sent := map[int64]int{}
			for _, msg := range msgs {
				if msg.Type != protocol.MsgBackfill {
					continue
				}
				size := 0
				for _, r := range msg.Rows {
					size += len(r)
				}
				lists := map[int64]string{}
				for table, rows := range msg.Payload {
					for _, r := range rows {
						size += len(r)
						var l struct {
							ID   int64  `json:"id"`
							Name string `json:"name"`
						}
						if err := json.Unmarshal(r, &l); err != nil {
							t.Fatal(err)
						}
						if table != "lists" {
							t.Fatalf("payload of %s rows, want lists", table)
						}
						lists[l.ID] = l.Name
					}
				}
				if size > budget && len(msg.Rows) > 1 {
					t.Errorf("a backfill line of %d rows holds %d bytes of rows, over the budget of %d", len(msg.Rows), size, budget)
				}
				for _, r := range msg.Rows {
					var row map[string]any
					if err := json.Unmarshal(r, &row); err != nil {
						t.Fatal(err)
					}
					id, list := int64(row["id"].(float64)), int64(row["list_id"].(float64))
					if len(row) != 2 || list != id {
						t.Errorf("backfill row %v, want id and list_id %d", row, id)
					}
					sent[id]++
					if lists[list] != name(list, big) {
						t.Errorf("todo %d without its list %d in its line", id, list)
					}
				}
			}
			if end := msgs[len(msgs)-1]; len(sent) != n || end.BackfillCount != n {
				t.Fatalf("%d todos backfilled, end counts %d; want %d", len(sent), end.BackfillCount, n)
			}
			for id, c := range sent {
				if c != 1 {
					t.Fatalf("todo %d sent %d times", id, c)
				}
			}
			// A line's rows, and its parents up to the budget and the one
			// that passes it.
			m.check(t, budget, 2*budget+3*(big+30), false)
		})
	}
}

// TestPullOneRowLongAncestry: a line's parents are kept within the line
// budget by splitting the line, down to one operation, whose parents
// went whatever their size: a row whose chain of ancestors the node says
// it deleted (PullRequest.Deleted: the server sends them back, merge.md
// D2), here 60 rows of 1 KB up a self-referencing table, was one line
// holding them all, however many (a request may name millions of keys)
// and however large, though no client reads a line past
// protocol.MaxLineBytes, twice the budget. Such a line is now refused
// with dbsync.ErrTooLarge once its rows pass twice the budget: the server
// holds about that, not the ancestry.
func TestPullOneRowLongAncestry(t *testing.T) {
	t.Parallel()
	const budget, n, big = 3000, 60, 1000
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := &fixture{t: t, kind: kind, Server: synctest.NewServerWith(t, synctest.ServerOn(t, kind, testmodels.CreateNodes, testmodels.Nodes()), testmodels.CreateNodes, testmodels.Nodes(), nil)}
			f.Srv.SetLineBudget(budget)
			a, b := f.register(), f.register()
			row := func(id int64, name string) json.RawMessage {
				var parent any
				if id > 1 {
					parent = id - 1
				}
				raw, _ := json.Marshal(map[string]any{"id": id, "parent_id": parent, "name": name})
				return raw
			}
			p := newPush(nil)
			var deleted []string
			for i := int64(1); i <= n; i++ {
				p.op("tree_nodes", strconv.FormatInt(i, 10), models.Insert, row(i, fmt.Sprintf("%03d", i)+strings.Repeat("x", big)))
				if i < n {
					deleted = append(deleted, strconv.FormatInt(i, 10))
				}
			}
			resp, err := f.Srv.Push(ctx, a.id, p.Ptr())
			if err != nil {
				t.Fatal(err)
			}
			base := resp.NewVersionID
			// The last row changes; the node deleted its ancestors.
			if _, err := f.Srv.Push(ctx, a.id, newPush(ptr(base)).op("tree_nodes", strconv.FormatInt(n, 10), models.Update, row(n, "renamed")).Ptr()); err != nil {
				t.Fatal(err)
			}
			var read, emitted, held int
			f.Srv.SetRowsHeld(func(size int) {
				read += size
				held = max(held, read-emitted)
			})
			err = f.Srv.PullUnshared(ctx, b.id, &protocol.PullRequest{LatestVersionID: ptr(base), Deleted: map[string][]string{"tree_nodes": deleted}},
				func(m *protocol.Message) error {
					for _, r := range m.Rows {
						emitted += len(r)
					}
					for _, rows := range m.Payload {
						for _, r := range rows {
							emitted += len(r)
						}
					}
					return nil
				})
			t.Logf("pull: %v; held up to %d bytes of rows (budget %d, ancestry %d)", err, held, budget, n*big)
			if bound := 2*budget + 2*(big+40); held > bound {
				t.Errorf("the server held up to %d bytes of rows for one row's line, want at most %d", held, bound)
			}
			if !errors.Is(err, dbsync.ErrTooLarge) {
				t.Fatalf("pull: %v, want ErrTooLarge for a line past twice the budget", err)
			}
		})
	}
}

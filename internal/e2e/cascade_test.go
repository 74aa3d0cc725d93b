package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// TestPushMovesChildThenDeletesParent pins V4 and V6 for a push that moves
// a child to another parent and deletes its old parent: the server must
// write the child in place, and never let the old parent's ON DELETE
// CASCADE (mr_children, on PostgreSQL) delete it first. Such a cascade
// re-inserted the child, the version logged it as a new row (`i`), and a
// node that already had it read a later delete of it as `i … d` (R2:
// nothing): it kept the child under a parent the same pull deleted, and
// the pull failed with a foreign key violation (seen in TestConvergence,
// seldom). With rename, another row takes the deleted parent's unique
// name in the same push: the parent, deleted after the writes, is parked
// first. With chunked, the push goes in chunks of one operation.
func TestPushMovesChildThenDeletesParent(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name            string
		rename, chunked bool
	}{
		{"move", false, false},
		{"move_rename", true, false},
		{"move_chunked", false, true},
		{"move_rename_chunked", true, true},
	}
	for _, tc := range cases {
		for _, server := range dbtest.Kinds {
			for _, kind := range mrKinds {
				t.Run(tc.name+"/"+server+"/"+kind.name, func(t *testing.T) {
					t.Parallel()
					e := &mrEnv{t: t, ctx: context.Background(), kind: kind, server: server, keys: map[string]string{}, syms: map[string]string{}}
					// b pushes (in chunks of one operation when chunked),
					// a pulls.
					cfg := &client.Config{}
					if tc.chunked {
						cfg.PushChunkOperations = 1
					}
					e.start(cfg)
					e.seed() // P1 with C1, P2 with C2, P3; a and b hold them
					pusher, puller := e.b, e.a
					e.exec(pusher.DB, "UPDATE mr_children SET parent_id = ?, updated = ? WHERE id = ?",
						e.kind.arg(e.keys["P3"]), e.now(), e.kind.arg(e.keys["C1"]))
					e.del(pusher.DB, mrParents, "P1")
					wantParents := map[string]string{"p2": "P2", "p3": "P3"}
					if tc.rename {
						e.rename(pusher.DB, "P3", "p1")
						wantParents = map[string]string{"p1": "P3", "p2": "P2"}
					}
					e.sync(pusher)
					// The server had C1: the version updated it.
					e.want("server's log of C1", e.serverLog(mrChildren, "C1"), []string{"i", "u"})
					// The pusher deletes C1; the puller, still holding P1
					// and C1, pulls both versions at once: P1 and C1 are
					// gone.
					e.del(pusher.DB, mrChildren, "C1")
					e.sync(pusher)
					e.sync(puller)
					ps, cs := e.converged()
					e.want("parents", ps, wantParents)
					e.want("children", cs, map[string]string{"c2": "p2"})
				})
			}
		}
	}
}

// serverLog returns the commands the server logged for row sym of table,
// oldest first.
func (e *mrEnv) serverLog(table, sym string) []string {
	e.t.Helper()
	var cmds []string
	if err := e.srv.DB.NewRaw(`SELECT command FROM sync_operations WHERE content_type_id = ? AND row_id = ? ORDER BY "order"`,
		e.srv.Reg.Table(table).ContentTypeID, e.keys[sym]).Scan(e.ctx, &cmds); err != nil {
		e.t.Fatal(err)
	}
	for i := range cmds {
		cmds[i] = strings.TrimSpace(cmds[i])
	}
	return cmds
}

// TestPushMovesGrandchildThenDeletesAncestors: a push moves grandchild G1
// off child C1 and deletes C1 and its parent P1. C1 waits for G1's write
// (deleteLate), and so must P1, whose ON DELETE CASCADE (PostgreSQL)
// would otherwise reach C1, still there, and through it G1: G1 was
// re-inserted, the version logged it as new (`i`), and G1's own children
// would have been lost.
func TestPushMovesGrandchildThenDeletesAncestors(t *testing.T) {
	t.Parallel()
	for _, chunked := range []bool{false, true} {
		for _, server := range dbtest.Kinds {
			name := server
			if chunked {
				name += "/chunked"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				m := newMoveEnv(t, server, chunked, 1, "tree", testmodels.CreateTree, testmodels.Tree())
				m.exec("INSERT INTO tree_parents (id, name) VALUES (1, 'p1'), (3, 'p3')")
				m.exec("INSERT INTO tree_children (id, parent_id, title) VALUES (1, 1, 'c1'), (3, 3, 'c3')")
				m.exec("INSERT INTO tree_grandchildren (id, child_id, title) VALUES (1, 1, 'g1')")
				m.sync(m.a)
				m.sync(m.b)
				m.exec("UPDATE tree_grandchildren SET child_id = 3 WHERE id = 1")
				m.exec("DELETE FROM tree_children WHERE id = 1")
				m.exec("DELETE FROM tree_parents WHERE id = 1")
				ds := m.pushPullCheck("tree_grandchildren", "1")
				if got := ds["tree_grandchildren"]; len(got) != 1 || !strings.Contains(got[0], `"child_id":3`) {
					t.Fatalf("server's grandchildren %v, want G1 under C3", got)
				}
			})
		}
	}
}

// TestPushMovesOutOfDeletedSubtree is TestPushMovesGrandchildThenDeletesAncestors
// in one table referencing itself: A ← B ← X and a root Y; the push moves
// X under Y and deletes B and A. B is deleted after the writes (X
// referenced it) and A after B, with nothing left referencing either:
// the push is accepted, and no CASCADE reaches X. With filler, the push
// also deletes 999 other roots whose keys sort between A's and B's, so
// that a chunked push's commit reads A and B in different pages of keys
// (A first): A must still wait for B.
func TestPushMovesOutOfDeletedSubtree(t *testing.T) {
	t.Parallel()
	for _, filler := range []bool{false, true} {
		for _, chunked := range []bool{false, true} {
			for _, server := range dbtest.Kinds {
				name := server
				if chunked {
					name += "/chunked"
				}
				if filler {
					name += "/filler"
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					m := newMoveEnv(t, server, chunked, 100, "nodes", testmodels.CreateNodes, testmodels.Nodes())
					// A = 1, B = 2000 (A's child), X = 3000 (B's child), Y = 4.
					m.exec("INSERT INTO tree_nodes (id, parent_id, name) VALUES (1, NULL, 'a'), (4, NULL, 'y')")
					m.exec("INSERT INTO tree_nodes (id, parent_id, name) VALUES (2000, 1, 'b')")
					m.exec("INSERT INTO tree_nodes (id, parent_id, name) VALUES (3000, 2000, 'x')")
					if filler {
						// Deleting the filler checks each deleted row's
						// children: without an index, a scan of the table
						// each (quadratic, seconds under -race).
						m.exec("CREATE INDEX tree_nodes_parent ON tree_nodes (parent_id)")
						var q strings.Builder
						q.WriteString("INSERT INTO tree_nodes (id, parent_id, name) VALUES ")
						for id := 1001; id <= 1999; id++ {
							if id > 1001 {
								q.WriteString(", ")
							}
							fmt.Fprintf(&q, "(%d, NULL, 'f')", id)
						}
						m.exec(q.String())
					}
					m.sync(m.a)
					m.sync(m.b)
					m.exec("UPDATE tree_nodes SET parent_id = 4 WHERE id = 3000")
					m.exec("DELETE FROM tree_nodes WHERE id IN (2000, 1) OR name = 'f'")
					ds := m.pushPullCheck("tree_nodes", "3000")
					if got := ds["tree_nodes"]; len(got) != 2 {
						t.Fatalf("server's nodes %v, want X under Y, and Y", got)
					}
				})
			}
		}
	}
}

// moveEnv is a server and two SQLite nodes for the tests of rows moved
// away from deleted parents: a writes (in chunks of chunkOps operations
// when chunked), b pulls. SQLite databases are copies of the synctest
// templates for key (which stands for schema and models).
type moveEnv struct {
	t    *testing.T
	ctx  context.Context
	srv  *synctest.Server
	a, b *synctest.Client
}

func newMoveEnv(t *testing.T, server string, chunked bool, chunkOps int, key string, schema func(context.Context, bun.IDB) error, models []any) *moveEnv {
	srv := synctest.NewServerWith(t, synctest.ServerDB(t, server, key, schema, models), schema, models, nil)
	cfg := &client.Config{}
	if chunked {
		cfg.PushChunkOperations = chunkOps
	}
	return &moveEnv{
		t: t, ctx: context.Background(), srv: srv,
		a: synctest.NewClientWith(t, srv, "a", synctest.ClientSQLite(t, key, schema, models), schema, models, cfg),
		b: synctest.NewClientWith(t, srv, "b", synctest.ClientSQLite(t, key, schema, models), schema, models, nil),
	}
}

func (m *moveEnv) exec(q string) {
	m.t.Helper()
	if _, err := m.a.DB.ExecContext(m.ctx, q); err != nil {
		m.t.Fatalf("%s: %v", q, err)
	}
}

func (m *moveEnv) sync(c *synctest.Client) {
	m.t.Helper()
	if _, err := c.Sync(m.ctx); err != nil {
		m.t.Fatalf("sync %s: %v", c.Name, err)
	}
}

// pushPullCheck syncs a then b, checks that the server logged the moved
// row (table, key) as inserted then updated (a CASCADE that deleted it
// first makes the push re-insert it: "i i"), and that both nodes hold the
// server's rows, which it returns.
func (m *moveEnv) pushPullCheck(table, key string) map[string][]string {
	m.t.Helper()
	m.sync(m.a)
	var cmds []string
	if err := m.srv.DB.NewRaw(`SELECT command FROM sync_operations WHERE content_type_id = ? AND row_id = ? ORDER BY "order"`,
		m.srv.Reg.Table(table).ContentTypeID, key).Scan(m.ctx, &cmds); err != nil {
		m.t.Fatal(err)
	}
	for i := range cmds {
		cmds[i] = strings.TrimSpace(cmds[i])
	}
	if strings.Join(cmds, " ") != "i u" {
		m.t.Errorf("server's log of %s %s: %q, want [i u]", table, key, cmds)
	}
	m.sync(m.b)
	ds := synctest.Dump(m.t, m.srv.DB, m.srv.Reg)
	for _, c := range []*synctest.Client{m.a, m.b} {
		if d := synctest.Diff(synctest.Dump(m.t, c.DB, c.Reg), ds); d != "" {
			m.t.Fatalf("%s and the server differ:\n%s", c.Name, d)
		}
	}
	return ds
}

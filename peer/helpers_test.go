package peer_test

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
)

var ctx = context.Background()

// newNode opens a fresh database of kind with the test models and makes it
// a node.
func newNode(t testing.TB, kind string, cfg *peer.Config) *peer.Node {
	t.Helper()
	return synctest.NewNode(t, kind, cfg)
}

// nodeOn makes db a node with the test models, creating their tables
// unless they exist.
func nodeOn(t testing.TB, db *bun.DB, cfg *peer.Config) *peer.Node {
	t.Helper()
	if err := testmodels.CreateSchema(ctx, db); err != nil {
		t.Fatal(err)
	}
	return synctest.NewNodeWith(t, db, testmodels.All(), cfg)
}

func exec(t testing.TB, n *peer.Node, q string, args ...any) int64 {
	t.Helper()
	res, err := n.DB().ExecContext(ctx, q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	k, _ := res.RowsAffected()
	return k
}

func insert(t testing.TB, n *peer.Node, model any) {
	t.Helper()
	if _, err := n.DB().NewInsert().Model(model).Exec(ctx); err != nil {
		t.Fatalf("insert %T: %v", model, err)
	}
}

func newNote(body string) *testmodels.Note {
	return &testmodels.Note{ID: uuid.New(), Body: body, Created: time.Now().UTC().Truncate(time.Microsecond)}
}

func digest(t testing.TB, n *peer.Node) string {
	t.Helper()
	d, err := n.Digest(ctx)
	if err != nil {
		t.Fatalf("digest: %v", err)
	}
	return d
}

// sameDigests fails unless all nodes have the same digest.
func sameDigests(t testing.TB, nodes ...*peer.Node) {
	t.Helper()
	first := digest(t, nodes[0])
	for i, n := range nodes[1:] {
		if d := digest(t, n); d != first {
			t.Fatalf("node %d digest %.12s differs from node 0's %.12s\nnode 0: %s\nnode %d: %s", i+1, d, first,
				strings.Join(live(t, nodes[0]), "\n        "), i+1, strings.Join(live(t, n), "\n        "))
		}
	}
}

// live lists a node's live rows by identity, with their content (local
// primary keys left out), sorted: what the node holds, whatever its
// tombstones.
func live(t testing.TB, n *peer.Node) []string {
	t.Helper()
	var out []string
	queries := map[string]string{
		"lists": "SELECT sync_uuid, name FROM lists",
		"todos": "SELECT sync_uuid, " + concat(n, "CAST(list_id AS TEXT)", "title", "CASE WHEN done THEN 'done' ELSE 'open' END") + " FROM todos",
		"notes": "SELECT CAST(id AS TEXT), " + concat(n, "body", "CAST(count AS TEXT)") + " FROM notes",
	}
	for table, q := range queries {
		rows, err := n.DB().QueryContext(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id, content string
			if err := rows.Scan(&id, &content); err != nil {
				t.Fatal(err)
			}
			out = append(out, table+" "+id+" "+content)
		}
		rows.Close()
	}
	sort.Strings(out)
	return out
}

func concat(n *peer.Node, cols ...string) string { return strings.Join(cols, " || '|' || ") }

func sameLive(t testing.TB, nodes ...*peer.Node) {
	t.Helper()
	first := live(t, nodes[0])
	for i, n := range nodes[1:] {
		if got := live(t, n); !reflect.DeepEqual(got, first) {
			t.Fatalf("node %d holds\n%s\nnode 0 holds\n%s", i+1, strings.Join(got, "\n"), strings.Join(first, "\n"))
		}
	}
}

// version is a row version as stored in sync_lww.
type version struct {
	HLC     int64
	Node    string
	Deleted bool
	Seq     int64
}

func (v version) newer(o version) bool {
	if v.HLC != o.HLC {
		return v.HLC > o.HLC
	}
	return v.Node > o.Node
}

func versionOf(t testing.TB, db bun.IDB, table, id string) (version, bool) {
	t.Helper()
	var v version
	err := db.QueryRowContext(ctx, "SELECT hlc, node, deleted, seq FROM sync_lww WHERE content_type_id = ? AND row_id = ?",
		dbsync.ContentTypeID(table), id).Scan(&v.HLC, &v.Node, &v.Deleted, &v.Seq)
	if err == sql.ErrNoRows {
		return version{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return v, true
}

func count(t testing.TB, n *peer.Node, table string) int {
	t.Helper()
	var c int
	if err := n.DB().QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

func cursor(t testing.TB, n, of *peer.Node) int64 {
	t.Helper()
	c, err := n.Cursor(ctx, of.ID())
	if err != nil {
		t.Fatal(err)
	}
	return c.Seq
}

func mustSync(t testing.TB, a *peer.Node, b peer.Peer) *peer.Report {
	t.Helper()
	rep, err := a.Sync(ctx, b)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return rep
}

// noteRow is the wire form of a note.
func noteRow(t testing.TB, n *peer.Node, note *testmodels.Note) []byte {
	t.Helper()
	raw, err := n.Registry().Table("notes").Codec().AppendRow(nil, reflect.ValueOf(note).Elem())
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// batchOf returns a page iterator over the given pages.
func batchOf(pages ...*peer.Batch) func() (*peer.Batch, error) {
	i := 0
	return func() (*peer.Batch, error) {
		if i == len(pages) {
			return nil, nil
		}
		i++
		return pages[i-1], nil
	}
}

// body returns a note's body, or "(none)".
func body(t testing.TB, n *peer.Node, id uuid.UUID) string {
	t.Helper()
	var b string
	err := n.DB().QueryRowContext(ctx, "SELECT body FROM notes WHERE id = ?", id).Scan(&b)
	if err == sql.ErrNoRows {
		return "(none)"
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// kinds lists database pairs: the first node is SQLite, the second each
// kind.
var kinds = []struct{ name, other string }{
	{"sqlite-sqlite", dbtest.KindSQLite},
	{"sqlite-postgres", dbtest.KindPostgres},
}

func fmtVersion(v version) string {
	return fmt.Sprintf("(%d, %.8s, deleted %v)", v.HLC, v.Node, v.Deleted)
}

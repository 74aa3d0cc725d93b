package stream_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/stream"
)

func note(body string) *testmodels.Note {
	return &testmodels.Note{ID: uuid.New(), Body: body, Created: time.Now().UTC().Truncate(time.Microsecond)}
}

// TestSessions runs the same story over net.Pipe, TCP (stream.Serve) and
// TLS, between SQLite and SQLite and between SQLite and PostgreSQL:
// inserts both ways, updates and deletes both ways, conflicting edits won
// by the higher (HLC, node), re-runs that transfer nothing, cursors that
// reach the end of each feed, connections closed by both ends.
func TestSessions(t *testing.T) {
	t.Parallel()
	for _, tr := range transports {
		for _, p := range pairs {
			t.Run(tr.name+"/"+p.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				a, b := newNode(t, p.a), newNode(t, p.b)
				sess := func() outcome { return tr.run(t, a, b, cfg(), cfg()).ok(t) }

				// 1. Inserts both ways.
				insert(t, a, &testmodels.List{Name: "alpha"})
				insert(t, a, &testmodels.List{Name: "beta"})
				for i, l := range []int64{1, 1, 2} {
					insert(t, a, &testmodels.Todo{ListID: l, Title: fmt.Sprintf("todo %d", i)})
				}
				var aNotes, bNotes []*testmodels.Note
				for i := range 5 {
					aNotes = append(aNotes, note(fmt.Sprintf("a%d", i)))
					insert(t, a, aNotes[i])
				}
				for i := range 4 {
					bNotes = append(bNotes, note(fmt.Sprintf("b%d", i)))
					insert(t, b, bNotes[i])
				}
				o := sess()
				o.transfers(t, 4, 10)
				if o.a.rep.Peer != b.ID() || o.b.rep.Peer != a.ID() {
					t.Fatalf("reports name peers %s and %s, want %s and %s", o.a.rep.Peer, o.b.rep.Peer, b.ID(), a.ID())
				}
				s := converged(t, a, b)
				if s.Counts["lists"] != 2 || s.Counts["todos"] != 3 || s.Counts["notes"] != 9 {
					t.Fatalf("counts %v, want 2 lists, 3 todos, 9 notes", s.Counts)
				}

				// 2. A re-run transfers nothing, and afterwards each end's
				// cursor covers the other's whole feed (rows it relayed
				// back included), so the next session scans nothing old.
				sess().transfers(t, 0, 0)
				if st := converged(t, a, b); st.Digest != s.Digest {
					t.Fatal("a re-run changed the data")
				}
				if ca, ea := cursor(t, a, b), feedEnd(t, b); ca != ea {
					t.Fatalf("a's cursor for b is %d, b's feed ends at %d", ca, ea)
				}
				if cb, ea := cursor(t, b, a), feedEnd(t, a); cb != ea {
					t.Fatalf("b's cursor for a is %d, a's feed ends at %d", cb, ea)
				}

				// 3. Updates and deletes both ways.
				exec(t, b, "UPDATE notes SET body = 'a0 edited by b' WHERE id = ?", aNotes[0].ID)
				exec(t, b, "DELETE FROM todos WHERE title = 'todo 2'")
				insert(t, b, &testmodels.List{Name: "gamma"})
				exec(t, a, "UPDATE notes SET body = 'b0 edited by a', count = 7 WHERE id = ?", bNotes[0].ID)
				exec(t, a, "DELETE FROM notes WHERE id = ?", bNotes[1].ID)
				exec(t, a, "UPDATE lists SET name = 'alpha2' WHERE name = 'alpha'")
				sess().transfers(t, 3, 3)
				s = converged(t, a, b)
				if s.Counts["lists"] != 3 || s.Counts["todos"] != 2 || s.Counts["notes"] != 8 {
					t.Fatalf("counts %v, want 3 lists, 2 todos, 8 notes", s.Counts)
				}
				for _, n := range []*peer.Node{a, b} {
					if got := names(t, n, "lists", "name"); strings.Join(got, ",") != "alpha2,beta,gamma" {
						t.Fatalf("lists %v", got)
					}
					if got := names(t, n, "notes", "body"); !contains(got, "a0 edited by b") || !contains(got, "b0 edited by a") || contains(got, "b1") {
						t.Fatalf("notes %v", got)
					}
				}

				// 4. Conflicting edits: the higher (HLC, node) wins on both
				// ends, whatever side wrote it.
				x, y, z := aNotes[1].ID.String(), aNotes[2].ID.String(), bNotes[2].ID.String()
				exec(t, a, "UPDATE notes SET body = 'x by a' WHERE id = ?", x)
				exec(t, b, "UPDATE notes SET body = 'x by b' WHERE id = ?", x)
				exec(t, b, "UPDATE notes SET body = 'y by b' WHERE id = ?", y)
				exec(t, a, "DELETE FROM notes WHERE id = ?", y)
				exec(t, b, "DELETE FROM notes WHERE id = ?", z)
				time.Sleep(2 * time.Millisecond)
				exec(t, a, "UPDATE notes SET body = 'z by a' WHERE id = ?", z)
				want := map[string]string{}
				aWins, bWins := 0, 0
				for _, id := range []string{x, y, z} {
					va, _ := versionOf(t, a, "notes", id)
					vb, _ := versionOf(t, b, "notes", id)
					winner, v := a, va
					if vb.newer(va) {
						winner, v = b, vb
						bWins++
					} else {
						aWins++
					}
					want[id] = "(deleted)"
					if !v.Deleted {
						var body string
						if err := winner.DB().QueryRowContext(ctx, "SELECT body FROM notes WHERE id = ?", id).Scan(&body); err != nil {
							t.Fatal(err)
						}
						want[id] = body
					}
				}
				if want[z] != "z by a" {
					t.Fatalf("the later update of z should win over the earlier delete, got %q", want[z])
				}
				sess().transfers(t, bWins, aWins)
				converged(t, a, b)
				for _, n := range []*peer.Node{a, b} {
					for id, body := range want {
						got := "(deleted)"
						_ = n.DB().QueryRowContext(ctx, "SELECT body FROM notes WHERE id = ?", id).Scan(&got)
						if got != body {
							t.Fatalf("note %s is %q, want %q", id, got, body)
						}
					}
				}
				sess().transfers(t, 0, 0)
				converged(t, a, b)
			})
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

var canonical = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// TestIdentityColumn checks the sync_uuid column peer adds to tables
// without a UUID key: it exists, every row has one (rows written before the
// node existed too), values are unique and canonical whatever form the
// application wrote, and a row keeps one identity across nodes.
func TestIdentityColumn(t *testing.T) {
	t.Parallel()
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := dbtest.Open(t, p.b)
			if err := testmodels.CreateSchema(ctx, db); err != nil {
				t.Fatal(err)
			}
			// Rows written before peer.New.
			if _, err := db.NewInsert().Model(&[]testmodels.List{{Name: "old1"}, {Name: "old2"}}).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := db.NewInsert().Model(&testmodels.Todo{ListID: 1, Title: "old todo"}).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			b := synctest.NewNodeWith(t, db, testmodels.All(), nil)
			a := newNode(t, p.a)
			u := []uuid.UUID{uuid.New(), uuid.New(), uuid.New(), uuid.New()}
			forms := []string{
				strings.ToUpper(u[0].String()),
				strings.ReplaceAll(u[1].String(), "-", ""),
				"{" + strings.ToUpper(u[2].String()) + "}",
				"urn:uuid:" + u[3].String(),
			}
			for i, f := range forms {
				exec(t, b, "INSERT INTO lists (name, sync_uuid) VALUES (?, ?)", fmt.Sprintf("form%d", i), f)
			}
			// A later update writing a non-canonical form keeps the identity.
			exec(t, b, "UPDATE lists SET sync_uuid = ?, name = 'form0b' WHERE name = 'form0'", strings.ReplaceAll(strings.ToUpper(u[0].String()), "-", ""))
			if _, err := b.DB().ExecContext(ctx, "INSERT INTO lists (name, sync_uuid) VALUES ('bad', 'not-a-uuid')"); err == nil {
				t.Fatal("an identity that is not a UUID was accepted")
			}
			insert(t, a, &testmodels.List{Name: "from a"})
			o := pipeSession(t, a, b, cfg(), cfg()).ok(t)
			o.transfers(t, 7, 1)
			for _, n := range []*peer.Node{a, b} {
				for _, table := range []string{"lists", "todos"} {
					var total, filled, distinct int
					if err := n.DB().QueryRowContext(ctx, fmt.Sprintf("SELECT count(*), count(%s), count(DISTINCT %s) FROM %s", peer.IdentityColumn, peer.IdentityColumn, table)).Scan(&total, &filled, &distinct); err != nil {
						t.Fatalf("the %s column of %s: %v", peer.IdentityColumn, table, err)
					}
					if total == 0 || filled != total || distinct != total {
						t.Fatalf("%s: %d rows, %d identities, %d distinct", table, total, filled, distinct)
					}
					for _, id := range names(t, n, table, peer.IdentityColumn) {
						if !canonical.MatchString(id) {
							t.Fatalf("%s identity %q is not canonical", table, id)
						}
						if _, ok := versionOf(t, n, table, id); !ok {
							t.Fatalf("%s row %s has no version", table, id)
						}
					}
				}
				// The identity is unique.
				id := names(t, n, "lists", peer.IdentityColumn)[0]
				if _, err := n.DB().ExecContext(ctx, "INSERT INTO lists (name, sync_uuid) VALUES ('dup', ?)", id); err == nil {
					t.Fatal("a duplicate identity was accepted")
				}
				var got []string
				for _, x := range u {
					var name string
					if err := n.DB().QueryRowContext(ctx, "SELECT name FROM lists WHERE sync_uuid = ?", x.String()).Scan(&name); err != nil {
						t.Fatalf("list %s: %v", x, err)
					}
					got = append(got, name)
				}
				if strings.Join(got, ",") != "form0b,form1,form2,form3" {
					t.Fatalf("lists by identity: %v", got)
				}
			}
			converged(t, a, b)
			// An update on the receiving end comes back to the same row.
			exec(t, a, "UPDATE lists SET name = 'form1 renamed' WHERE sync_uuid = ?", u[1].String())
			pipeSession(t, a, b, cfg(), cfg()).ok(t).transfers(t, 0, 1)
			s := converged(t, a, b)
			if s.Counts["lists"] != 7 {
				t.Fatalf("%d lists, want 7", s.Counts["lists"])
			}
		})
	}
}

// TestColumnTypes sends notes holding every column kind, with the values
// that lossy codecs confuse (NULL, empty, zero, every byte, extreme
// numbers, zones and microseconds), from SQLite to the other database and
// back to a third SQLite node, and compares them exactly.
func TestColumnTypes(t *testing.T) {
	t.Parallel()
	f := func(v float64) *float64 { return &v }
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	base := time.Date(2024, 2, 29, 23, 59, 59, 123456000, time.UTC)
	cases := []testmodels.Note{
		{Body: "", Created: base},
		{Body: "empty blob", Created: base, Data: []byte{}},
		{Body: "all bytes", Created: base, Data: all},
		{Body: "zero byte", Created: base, Data: []byte{0}},
		{Body: "score zero", Created: base, Score: f(0)},
		{Body: "score values", Created: base, Score: f(-1.5e-300)},
		{Body: "score big", Created: base, Score: f(math.MaxFloat64)},
		{Body: "score third", Created: base, Score: f(1.0 / 3)},
		{Body: "score tenth", Created: base, Score: f(0.1)},
		{Body: "score pi", Created: base, Score: f(-math.Pi)},
		{Body: "score tiny", Created: base, Score: f(math.SmallestNonzeroFloat64)},
		{Body: "tag empty", Created: base, Tag: sql.NullString{Valid: true}},
		{Body: "tag", Created: base, Tag: sql.NullString{String: "x", Valid: true}},
		{Body: "count min", Created: base, Count: math.MinInt32},
		{Body: "count max", Created: base, Count: math.MaxInt32},
		{Body: "meta", Created: base, Meta: json.RawMessage(`{"a":1,"bb":[true,null,"ü"]}`)},
		{Body: "meta scalar", Created: base, Meta: json.RawMessage(`"s"`)},
		{Body: "zone east", Created: time.Date(2024, 1, 2, 3, 4, 5, 678901000, time.FixedZone("", 5*3600+1800))},
		{Body: "zone west", Created: time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.FixedZone("", -8*3600))},
		{Body: "epoch", Created: time.Unix(0, 0).UTC()},
		{Body: "far", Created: time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)},
		{Body: "quotes \" ' \\ \n\t and ünïcødé ✓ 🎉", Created: base, Tag: sql.NullString{String: "'; DROP TABLE notes; --", Valid: true}},
	}
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			a, b, c := newNode(t, p.a), newNode(t, p.b), newNode(t, dbtest.KindSQLite)
			cases := slices.Clone(cases) // the subtests run in parallel
			for i := range cases {
				cases[i].ID = uuid.New()
			}
			for i := range cases {
				n := cases[i]
				insert(t, a, &n)
			}
			pipeSession(t, a, b, cfg(), cfg()).ok(t).transfers(t, 0, len(cases))
			pipeSession(t, b, c, cfg(), cfg()).ok(t).transfers(t, 0, len(cases))
			converged(t, a, b, c)
			for _, in := range cases {
				var stored testmodels.Note
				if err := a.DB().NewSelect().Model(&stored).Where("id = ?", in.ID).Scan(ctx); err != nil {
					t.Fatalf("note %q: %v", in.Body, err)
				}
				// SQLite itself parses the literal -1.5e-300 one unit in the
				// last place off; what sync must keep is the stored value.
				if d := diffNote(in, stored); d != "" && in.Body != "score values" {
					t.Errorf("note %q as stored on the first node: %s", in.Body, d)
				}
				nulls := nullsOf(t, a, in.ID)
				for _, n := range []*peer.Node{b, c} {
					var got testmodels.Note
					if err := n.DB().NewSelect().Model(&got).Where("id = ?", in.ID).Scan(ctx); err != nil {
						t.Fatalf("note %q: %v", in.Body, err)
					}
					if d := diffNote(stored, got); d != "" {
						t.Errorf("note %q on node %s: %s", in.Body, n.ID(), d)
					}
					if got := nullsOf(t, n, in.ID); got != nulls {
						t.Errorf("note %q on node %s: NULL columns %s, want %s", in.Body, n.ID(), got, nulls)
					}
				}
			}
		})
	}
}

// nullsOf tells which nullable columns of a note are SQL NULL.
func nullsOf(t *testing.T, n *peer.Node, id uuid.UUID) string {
	t.Helper()
	var data, score, tag, meta bool
	err := n.DB().QueryRowContext(context.Background(),
		"SELECT data IS NULL, score IS NULL, tag IS NULL, meta IS NULL FROM notes WHERE id = ?", id).Scan(&data, &score, &tag, &meta)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("data %v score %v tag %v meta %v", data, score, tag, meta)
}

func diffNote(want, got testmodels.Note) string {
	var d []string
	if got.Body != want.Body {
		d = append(d, fmt.Sprintf("body %q, want %q", got.Body, want.Body))
	}
	if !got.Created.Equal(want.Created) {
		d = append(d, fmt.Sprintf("created %s, want %s", got.Created, want.Created))
	}
	if (got.Data == nil) != (want.Data == nil) || !bytes.Equal(got.Data, want.Data) {
		d = append(d, fmt.Sprintf("data %v (nil %v), want %v (nil %v)", got.Data, got.Data == nil, want.Data, want.Data == nil))
	}
	if (got.Score == nil) != (want.Score == nil) || got.Score != nil && *got.Score != *want.Score {
		d = append(d, fmt.Sprintf("score %v, want %v", deref(got.Score), deref(want.Score)))
	}
	if got.Tag != want.Tag {
		d = append(d, fmt.Sprintf("tag %+v, want %+v", got.Tag, want.Tag))
	}
	if got.Count != want.Count {
		d = append(d, fmt.Sprintf("count %d, want %d", got.Count, want.Count))
	}
	if !jsonEqual(got.Meta, want.Meta) {
		d = append(d, fmt.Sprintf("meta %s, want %s", got.Meta, want.Meta))
	}
	return strings.Join(d, "; ")
}

func deref(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}

// jsonEqual compares JSON values; bun reads a NULL json column as
// "null" (nullsOf checks NULL itself).
func jsonEqual(a, b json.RawMessage) bool {
	if a == nil {
		a = json.RawMessage("null")
	}
	if b == nil {
		b = json.RawMessage("null")
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return bytes.Equal(ja, jb)
}

// recorder records the bytes written to a connection.
type recorder struct {
	io.ReadWriteCloser
	mu  sync.Mutex
	out bytes.Buffer
}

func (r *recorder) Write(p []byte) (int, error) {
	n, err := r.ReadWriteCloser.Write(p)
	r.mu.Lock()
	r.out.Write(p[:n])
	r.mu.Unlock()
	return n, err
}

func (r *recorder) written() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.out.Bytes())
}

// TestWrongSecret: ends with different secrets both fail with ErrAuth
// before any data is sent, apply nothing, and close their connections.
func TestWrongSecret(t *testing.T) {
	t.Parallel()
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			a, b := newNode(t, p.a), newNode(t, p.b)
			insert(t, a, note("secret a"))
			insert(t, b, note("secret b"))
			before := []state{stateOf(t, a), stateOf(t, b)}
			c1, c2 := net.Pipe()
			r1, r2 := &recorder{ReadWriteCloser: c1}, &recorder{ReadWriteCloser: c2}
			t1, t2 := &trackedConn{ReadWriteCloser: r1}, &trackedConn{ReadWriteCloser: r2}
			o := sessionOver(t, t1, t2, a, b, cfg(), &stream.Config{Secret: []byte("wrong")})
			if !errors.Is(o.a.err, stream.ErrAuth) || !errors.Is(o.b.err, stream.ErrAuth) {
				t.Fatalf("errors %v and %v, want ErrAuth on both ends", o.a.err, o.b.err)
			}
			o.mustClose(t)
			for i, n := range []*peer.Node{a, b} {
				if !stateOf(t, n).equal(before[i]) {
					t.Fatal("a failed authentication changed data")
				}
				if c := cursor(t, n, []*peer.Node{b, a}[i]); c != 0 {
					t.Fatalf("a failed authentication moved a cursor to %d", c)
				}
			}
			for _, r := range []*recorder{r1, r2} {
				raw := r.written()
				for _, typ := range frames(raw) {
					if typ != 'H' && typ != 'A' && typ != 'E' {
						t.Fatalf("frame %q sent before authentication (frames %q)", typ, frames(raw))
					}
				}
				if bytes.Contains(raw, []byte("secret a")) || bytes.Contains(raw, []byte("secret b")) {
					t.Fatal("row data sent before authentication")
				}
			}
		})
	}
}

// TestReplay records what one end sent in a successful session and plays
// it back to the other end in a fresh session: the answer to the old
// challenge is refused (ErrAuth) and nothing is applied.
func TestReplay(t *testing.T) {
	t.Parallel()
	a, b := newNode(t, dbtest.KindSQLite), newNode(t, dbtest.KindSQLite)
	insert(t, a, note("replayed"))
	c1, c2 := net.Pipe()
	rec := &recorder{ReadWriteCloser: c1}
	sessionOver(t, &trackedConn{ReadWriteCloser: rec}, &trackedConn{ReadWriteCloser: c2}, a, b, cfg(), cfg()).ok(t)
	transcript := rec.written()
	if got := string(frames(transcript)); !strings.HasPrefix(got, "HAC") || !strings.Contains(got, "B") {
		t.Fatalf("recorded frames %q", got)
	}
	// The victim: b again (its data changed since), and a fresh node.
	for _, victim := range []*peer.Node{b, newNode(t, dbtest.KindSQLite)} {
		exec(t, a, "UPDATE notes SET body = 'changed after the recording'")
		before := stateOf(t, victim)
		cur := cursor(t, victim, a)
		x1, x2 := net.Pipe()
		go func() {
			_, _ = x1.Write(transcript)
			_, _ = io.Copy(io.Discard, x1)
		}()
		tc := &trackedConn{ReadWriteCloser: x2}
		_, err := stream.Sync(context.Background(), tc, victim, cfg())
		x1.Close()
		if !errors.Is(err, stream.ErrAuth) {
			t.Fatalf("replayed session: %v, want ErrAuth", err)
		}
		if !tc.closed.Load() {
			t.Fatal("connection left open")
		}
		if !stateOf(t, victim).equal(before) || cursor(t, victim, a) != cur {
			t.Fatal("a replayed session changed data")
		}
	}
}

// TestSchemaMismatch: ends tracking different tables refuse to sync with a
// clear error.
func TestSchemaMismatch(t *testing.T) {
	t.Parallel()
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			a := newNode(t, p.a)
			b := synctest.NewNodeWith(t, synctest.NodeDB(t, p.b, "testmodels", testmodels.CreateSchema), []any{(*testmodels.Note)(nil)}, nil)
			insert(t, a, note("a"))
			insert(t, b, note("b"))
			before := []state{stateOf(t, a), stateOf(t, b)}
			o := pipeSession(t, a, b, cfg(), cfg())
			for _, err := range []error{o.a.err, o.b.err} {
				if !errors.Is(err, dbsync.ErrSchemaMismatch) || !strings.Contains(err.Error(), "different tables or columns") {
					t.Fatalf("error %v, want a schema mismatch", err)
				}
			}
			o.mustClose(t)
			if !stateOf(t, a).equal(before[0]) || !stateOf(t, b).equal(before[1]) {
				t.Fatal("a refused session changed data")
			}
		})
	}
}

// TestIdleTimeout: an end that never answers makes the session fail after
// the idle timeout, with a network error, the connection closed.
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	a := newNode(t, dbtest.KindSQLite)
	c1, c2 := net.Pipe()
	go func() { _, _ = io.Copy(io.Discard, c2) }() // reads, never writes
	defer c2.Close()
	tc := &trackedConn{ReadWriteCloser: c1}
	start := time.Now()
	_, err := stream.Sync(context.Background(), tc, a, &stream.Config{Secret: secret, IdleTimeout: 200 * time.Millisecond})
	if !errors.Is(err, dbsync.ErrNetwork) {
		t.Fatalf("error %v, want a network error", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the session took %s to time out", d)
	}
	if !tc.closed.Load() {
		t.Fatal("connection left open")
	}
}

// TestContextCancel: cancelling the context ends a stalled session.
func TestContextCancel(t *testing.T) {
	t.Parallel()
	a := newNode(t, dbtest.KindSQLite)
	c1, c2 := net.Pipe()
	go func() { _, _ = io.Copy(io.Discard, c2) }()
	defer c2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	tc := &trackedConn{ReadWriteCloser: c1}
	if _, err := stream.Sync(ctx, tc, a, cfg()); err == nil {
		t.Fatal("a cancelled session succeeded")
	}
	if !tc.closed.Load() {
		t.Fatal("connection left open")
	}
}

// TestServeConcurrent: one node serves several peers at the same time,
// with conflicting edits on the same rows; all converge.
func TestServeConcurrent(t *testing.T) {
	t.Parallel()
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			hub := newNode(t, p.b)
			spokes := []*peer.Node{newNode(t, dbtest.KindSQLite), newNode(t, dbtest.KindSQLite), newNode(t, dbtest.KindSQLite)}
			hot := make([]*testmodels.Note, 10)
			for i := range hot {
				hot[i] = note("hot")
				insert(t, hub, hot[i])
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- stream.Serve(ctx, ln, hub, cfg()) }()
			dial := func(n *peer.Node) error {
				conn, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					return err
				}
				_, err = stream.Sync(ctx, conn, n, cfg())
				return err
			}
			for _, s := range spokes {
				if err := dial(s); err != nil {
					t.Fatal(err)
				}
			}
			rng := rand.New(rand.NewPCG(1, 2))
			for round := range 5 {
				for i, s := range append([]*peer.Node{hub}, spokes...) {
					for range 5 {
						id := hot[rng.IntN(len(hot))].ID
						if rng.IntN(4) == 0 {
							exec(t, s, "DELETE FROM notes WHERE id = ?", id)
						} else {
							exec(t, s, "UPDATE notes SET body = ? WHERE id = ?", fmt.Sprintf("r%d n%d", round, i), id)
						}
					}
				}
				var wg sync.WaitGroup
				errs := make(chan error, len(spokes))
				for _, s := range spokes {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs <- dial(s)
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			// Quiet rounds spread the last winners.
			for range 2 {
				for _, s := range spokes {
					if err := dial(s); err != nil {
						t.Fatal(err)
					}
				}
			}
			converged(t, append([]*peer.Node{hub}, spokes...)...)
			cancel()
			if err := <-served; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTamper puts a man in the middle, who holds no secret, between two
// ends that authenticate fine, and has him alter, strip, drop, duplicate
// or forge one frame after the handshake: the receiving end fails with
// ErrAuth, applies nothing and leaves its cursor.
func TestTamper(t *testing.T) {
	t.Parallel()
	frameBytes := func(typ byte, payload []byte) []byte {
		var buf bytes.Buffer
		_ = stream.WriteFrame(&buf, typ, payload)
		return buf.Bytes()
	}
	cases := []struct {
		name string
		// edit returns what to forward for frame i (type typ) from a to b.
		edit func(i int, typ byte, payload []byte) []byte
	}{
		{"flip a byte of a batch", func(_ int, typ byte, p []byte) []byte {
			if typ == 'B' {
				p = bytes.Replace(p, []byte("tamper-me"), []byte("TAMPERED!"), 1)
			}
			return frameBytes(typ, p)
		}},
		{"strip the MAC of a batch", func(_ int, typ byte, p []byte) []byte {
			if typ == 'B' {
				p = p[:len(p)-32]
			}
			return frameBytes(typ, p)
		}},
		{"drop the cursor", func(_ int, typ byte, p []byte) []byte {
			if typ == 'C' {
				return nil
			}
			return frameBytes(typ, p)
		}},
		{"replay the cursor", func(_ int, typ byte, p []byte) []byte {
			f := frameBytes(typ, p)
			if typ == 'C' {
				return append(f, f...)
			}
			return f
		}},
		{"forge DONE for the batch", func(_ int, typ byte, p []byte) []byte {
			if typ == 'B' {
				return frameBytes('D', p[len(p)-32:]) // a genuine MAC, another frame
			}
			return frameBytes(typ, p)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			a, b := newNode(t, dbtest.KindSQLite), newNode(t, dbtest.KindSQLite)
			insert(t, a, note("tamper-me"))
			before, cur := stateOf(t, b), cursor(t, b, a)
			c1, c2 := net.Pipe() // a ↔ man
			c3, c4 := net.Pipe() // man ↔ b
			// b → a untouched
			go func() {
				_, _ = io.Copy(c2, c3)
				c2.Close()
			}()
			// a → b frame by frame, edited
			go func() {
				defer c3.Close()
				for i := 0; ; i++ {
					typ, p, err := stream.ReadFrame(c2, stream.DefaultMaxFrame)
					if err != nil {
						return
					}
					if _, err := c3.Write(c.edit(i, typ, p)); err != nil {
						return
					}
				}
			}()
			o := sessionOver(t, &trackedConn{ReadWriteCloser: c1}, &trackedConn{ReadWriteCloser: c4}, a, b, cfg(), cfg())
			if !errors.Is(o.b.err, stream.ErrAuth) {
				t.Fatalf("receiving end: %v, want ErrAuth", o.b.err)
			}
			if o.a.err == nil {
				t.Fatal("the sending end reported success")
			}
			o.mustClose(t)
			if !stateOf(t, b).equal(before) || cursor(t, b, a) != cur {
				t.Fatal("a tampered session changed data or the cursor")
			}
			if got := names(t, b, "notes", "body"); slices.Contains(got, "TAMPERED!") || slices.Contains(got, "tamper-me") {
				t.Fatalf("rows %q applied from a tampered session", got)
			}
		})
	}
	// The same man in the middle forwarding faithfully: the session works.
	t.Run("faithful", func(t *testing.T) {
		t.Parallel()
		a, b := newNode(t, dbtest.KindSQLite), newNode(t, dbtest.KindSQLite)
		insert(t, a, note("tamper-me"))
		c1, c2 := net.Pipe()
		c3, c4 := net.Pipe()
		go func() { _, _ = io.Copy(c2, c3); c2.Close() }()
		go func() { _, _ = io.Copy(c3, c2); c3.Close() }()
		sessionOver(t, &trackedConn{ReadWriteCloser: c1}, &trackedConn{ReadWriteCloser: c4}, a, b, cfg(), cfg()).ok(t)
		if got := names(t, b, "notes", "body"); !slices.Contains(got, "tamper-me") {
			t.Fatalf("rows %q after a faithful relay", got)
		}
	})
}

// TestListen: Listen serves TLS sessions on an address until its context
// ends (then returns nil), and reports an address it cannot listen on.
func TestListen(t *testing.T) {
	t.Parallel()
	a, b := newNode(t, dbtest.KindSQLite), newNode(t, dbtest.KindSQLite)
	insert(t, b, note("from b"))
	insert(t, a, note("from a"))
	serverTLS, pool := selfSigned(t)
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- stream.Listen(ctx, "tcp", addr, serverTLS, b, cfg()) }()
	var conn net.Conn
	for range 100 { // until Listen listens
		if conn, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	rep, err := stream.Sync(ctx, conn, a, cfg())
	if err != nil || rep.Received != 1 || rep.Sent != 1 {
		t.Fatalf("sync: %+v, %v; want one version each way", rep, err)
	}
	if err := stream.Listen(ctx, "tcp", addr, nil, b, cfg()); err == nil {
		t.Fatal("a second Listen on the same address succeeded")
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Listen after its context ended: %v", err)
	}
	converged(t, a, b)
}

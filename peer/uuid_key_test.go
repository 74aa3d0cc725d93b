package peer_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
)

// TestUUIDKeySpelling: on SQLite, where a UUID column is text, the
// capture triggers refuse a UUID primary key that is not a UUID in
// canonical form (lowercase, hyphenated), written by raw SQL. Before,
// such a row was captured under its own spelling, the feed read it back
// by the parsed (canonical) key, found nothing, and left it out: the row
// never reached any peer, and its delete did, while a key that is no
// UUID at all failed the node's every feed read (a peer pulling was
// answered 400 bad_request). Rows written as bun writes them still sync.
func TestUUIDKeySpelling(t *testing.T) {
	t.Parallel()
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			a, b := newNode(t, dbtest.KindSQLite, nil), newNode(t, k.other, nil)
			n := newNote("kept")
			insert(t, a, n)
			upper := strings.ToUpper(n.ID.String())
			for _, w := range []struct {
				what, q string
				args    []any
			}{
				{"insert uppercase", "INSERT INTO notes (id, body, created) VALUES (?, 'upper', ?)", []any{strings.ToUpper(newNote("").ID.String()), n.Created}},
				{"insert no UUID", "INSERT INTO notes (id, body, created) VALUES ('not-a-uuid', 'bad', ?)", []any{n.Created}},
				{"insert braces", "INSERT INTO notes (id, body, created) VALUES (?, 'braces', ?)", []any{"{" + newNote("").ID.String() + "}", n.Created}},
				{"update uppercase", "UPDATE notes SET id = ? WHERE id = ?", []any{upper, n.ID.String()}},
			} {
				if _, err := a.DB().ExecContext(ctx, w.q, w.args...); err == nil {
					t.Errorf("%s: accepted", w.what)
				} else if !strings.Contains(err.Error(), "notes.id") {
					t.Errorf("%s: %v, want an error naming notes.id", w.what, err)
				}
			}
			exec(t, a, "UPDATE notes SET body = 'edited' WHERE id = ?", n.ID.String())
			mustSync(t, a, b.AsPeer())
			if got := count(t, b, "notes"); got != 1 {
				t.Fatalf("the other node holds %d notes, want 1", got)
			}
			sameLive(t, a, b)
			sameDigests(t, a, b)
		})
	}
}

// TestUUIDKeySpellingBeforeNew: peer.New on SQLite fails, naming the
// table, its key column and the key, when a row written before it has a
// UUID key not in canonical form: recorded under that spelling, the row
// would never reach a peer. Rewritten, the node opens and the row syncs.
func TestUUIDKeySpellingBeforeNew(t *testing.T) {
	t.Parallel()
	db := dbtest.SQLite(t)
	if err := testmodels.CreateSchema(ctx, db); err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	if _, err := db.ExecContext(ctx, "INSERT INTO notes (id, body, created) VALUES (?, 'upper', ?)", strings.ToUpper(id.String()), time.Now().UTC()); err != nil {
		t.Fatal(err)
	}
	reg, err := dbsync.Track(db, testmodels.All()...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := peer.New(ctx, db, reg, nil); err == nil || !strings.Contains(err.Error(), "notes.id") || !strings.Contains(err.Error(), strings.ToUpper(id.String())) {
		t.Fatalf("peer.New over a non-canonical UUID key: %v, want an error naming notes.id and the key", err)
	}
	if _, err := db.ExecContext(ctx, "UPDATE notes SET id = lower(id)"); err != nil {
		t.Fatal(err)
	}
	a := nodeOn(t, db, nil)
	b := newNode(t, dbtest.KindSQLite, nil)
	mustSync(t, a, b.AsPeer())
	if got := count(t, b, "notes"); got != 1 {
		t.Fatalf("the other node holds %d notes, want 1", got)
	}
	sameDigests(t, a, b)
}

// textUUIDNote is a model keyed by UUID whose table holds the key in a
// text column (on PostgreSQL as on SQLite).
type textUUIDNote struct {
	bun.BaseModel `bun:"table:text_uuid_notes"`
	ID            uuid.UUID `bun:"id,pk"`
	Body          string    `bun:"body"`
}

// TestUUIDKeyInTextColumn: a UUID key in a text column is held to the
// canonical form on PostgreSQL too (a uuid column is always so): a write
// in another spelling is refused, and peer.New refuses a row written so
// before it. Before, on both databases, such a row never left the node.
func TestUUIDKeyInTextColumn(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			open := func() (*bun.DB, *dbsync.Registry) {
				db := dbtest.Open(t, kind)
				if _, err := db.ExecContext(ctx, "CREATE TABLE text_uuid_notes (id TEXT PRIMARY KEY, body TEXT)"); err != nil {
					t.Fatal(err)
				}
				reg, err := dbsync.Track(db, (*textUUIDNote)(nil))
				if err != nil {
					t.Fatal(err)
				}
				return db, reg
			}
			db, reg := open()
			upper := strings.ToUpper(uuid.NewString())
			if _, err := db.ExecContext(ctx, "INSERT INTO text_uuid_notes VALUES (?, 'before')", upper); err != nil {
				t.Fatal(err)
			}
			if _, err := peer.New(ctx, db, reg, nil); err == nil || !strings.Contains(err.Error(), "text_uuid_notes.id") || !strings.Contains(err.Error(), upper) {
				t.Fatalf("peer.New over a non-canonical UUID key: %v, want an error naming text_uuid_notes.id and the key", err)
			}
			if _, err := db.ExecContext(ctx, "UPDATE text_uuid_notes SET id = lower(id)"); err != nil {
				t.Fatal(err)
			}
			a, err := peer.New(ctx, db, reg, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, key := range []string{strings.ToUpper(uuid.NewString()), "not-a-uuid"} {
				if _, err := db.ExecContext(ctx, "INSERT INTO text_uuid_notes VALUES (?, 'after')", key); err == nil || !strings.Contains(err.Error(), "text_uuid_notes.id") {
					t.Errorf("insert of key %q: %v, want an error naming text_uuid_notes.id", key, err)
				}
			}
			if _, err := db.NewInsert().Model(&textUUIDNote{ID: uuid.New(), Body: "bun's"}).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			bdb, breg := open()
			b, err := peer.New(ctx, bdb, breg, nil)
			if err != nil {
				t.Fatal(err)
			}
			mustSync(t, a, b.AsPeer())
			if got := count(t, b, "text_uuid_notes"); got != 2 {
				t.Fatalf("the other node holds %d notes, want 2", got)
			}
			sameDigests(t, a, b)
		})
	}
}

// uuidColNote is a model keyed by UUID whose table holds the key in a
// PostgreSQL uuid column.
type uuidColNote struct {
	bun.BaseModel `bun:"table:uuid_col_notes"`
	ID            uuid.UUID `bun:"id,pk"`
	Body          string    `bun:"body"`
}

// TestPGUUIDColumnKeyUnchecked: on PostgreSQL, the capture function of a
// peer-synced table whose UUID key is in a uuid column, which holds only
// the canonical form, does not check the key's form on every write (a
// regular expression per write, for nothing); that of a table keeping it
// in a text column does, and refuses a key in another spelling.
func TestPGUUIDColumnKeyUnchecked(t *testing.T) {
	t.Parallel()
	db := dbtest.Open(t, dbtest.KindPostgres)
	for _, q := range []string{
		"CREATE TABLE text_uuid_notes (id TEXT PRIMARY KEY, body TEXT)",
		"CREATE TABLE uuid_col_notes (id UUID PRIMARY KEY, body TEXT)",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	reg, err := dbsync.Track(db, (*textUUIDNote)(nil), (*uuidColNote)(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := peer.New(ctx, db, reg, nil); err != nil {
		t.Fatal(err)
	}
	for table, checked := range map[string]bool{"text_uuid_notes": true, "uuid_col_notes": false} {
		var src string
		if err := db.QueryRowContext(ctx, `SELECT p.prosrc FROM pg_trigger tg JOIN pg_proc p ON p.oid = tg.tgfoid
WHERE tg.tgrelid = to_regclass(?) AND tg.tgname = '__sync_lww'`, table).Scan(&src); err != nil {
			t.Fatalf("capture function of %s: %v", table, err)
		}
		if got := strings.Contains(src, "canonical form"); got != checked {
			t.Errorf("the capture function of %s checks the key's form: %v, want %v", table, got, checked)
		}
	}
	// The text column still refuses a key in another spelling.
	if _, err := db.ExecContext(ctx, "INSERT INTO text_uuid_notes VALUES (?, 'upper')", strings.ToUpper(uuid.NewString())); err == nil || !strings.Contains(err.Error(), "text_uuid_notes.id") {
		t.Errorf("insert of an uppercase key in a text column: %v, want an error naming text_uuid_notes.id", err)
	}
	// The uuid column takes any spelling PostgreSQL parses, holds it in
	// canonical form, and the row is captured under that form.
	id := uuid.New()
	if _, err := db.ExecContext(ctx, "INSERT INTO uuid_col_notes VALUES (?, 'upper')", strings.ToUpper(id.String())); err != nil {
		t.Fatal(err)
	}
	if _, err := db.NewInsert().Model(&uuidColNote{ID: uuid.New(), Body: "bun's"}).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sync_lww WHERE row_id = ? AND NOT deleted", id.String()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("versions of the row keyed %s: %d, want 1", id, n)
	}
}

// TestResyncUUIDSpelling: a resynchronization page (Full) naming a row by
// its UUID identity in upper case keeps the row, as a page in canonical
// form does: Apply takes any spelling uuid.Parse reads and writes the row
// under the canonical form. Before, the state's key set kept the identity
// as sent, so the end of the resynchronization found the row it had just
// written missing from the peer's state and deleted it, with a tombstone
// at the peer's horizon that spread, and Apply reported success.
func TestResyncUUIDSpelling(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, table := range []string{"notes", "lists"} {
			for _, spell := range []struct {
				name string
				f    func(string) string
			}{{"lower", strings.ToLower}, {"upper", strings.ToUpper}} {
				t.Run(kind+"/"+table+"/"+spell.name, func(t *testing.T) {
					t.Parallel()
					n := newNode(t, kind, nil)
					id := uuid.NewString()
					var row []byte
					if table == "notes" {
						x := newNote("kept")
						x.ID = uuid.MustParse(id)
						row = noteRow(t, n, x)
					} else {
						var err error
						row, err = n.Registry().Table("lists").Codec().AppendRowWithout(nil, reflect.ValueOf(testmodels.List{Name: "kept"}), "id")
						if err != nil {
							t.Fatal(err)
						}
					}
					now := time.Now()
					page := &peer.Batch{
						Changes: []peer.Change{{Table: table, ID: spell.f(id), HLC: now.Add(-time.Hour).UnixMilli() << 16,
							Node: uuid.NewString(), Row: row, Seq: 1}},
						Last: 1, Full: true, PurgedHLC: now.Add(-time.Minute).UnixMilli() << 16,
					}
					if _, err := n.Apply(ctx, uuid.New(), batchOf(page)); err != nil {
						t.Fatalf("apply: %v", err)
					}
					if got := count(t, n, table); got != 1 {
						t.Fatalf("%s holds %d rows after the resynchronization, want 1", table, got)
					}
					if v, ok := versionOf(t, n.DB(), table, id); !ok || v.Deleted {
						t.Fatalf("version of %s %s: %v (found %v), want live", table, id, fmtVersion(v), ok)
					}
				})
			}
		}
	}
}

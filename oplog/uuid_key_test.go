package oplog_test

import (
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/oplog"
)

// textUUIDTodo is a model keyed by UUID whose table holds the key in a
// text column (SQLite's UUID columns are text too).
type textUUIDTodo struct {
	bun.BaseModel `bun:"table:text_uuid_todos"`
	ID            uuid.UUID `bun:"id,pk"`
	Title         string    `bun:"title"`
}

// TestCaptureRefusesNonCanonicalUUIDKeys: a write of a UUID key in a text
// column that is not a UUID in canonical form (uppercase, braces, no UUID
// at all, written by raw SQL) is refused, naming the column. Before, it
// was logged under its own spelling, and the push, reading rows by the
// parsed key, never found the row: it never reached the server, and the
// push said nothing. Keys as bun writes them are logged as before.
func TestCaptureRefusesNonCanonicalUUIDKeys(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := t.Context()
		if _, err := db.ExecContext(ctx, "CREATE TABLE text_uuid_todos (id TEXT PRIMARY KEY, title TEXT)"); err != nil {
			t.Fatal(err)
		}
		reg, err := dbsync.Track(db, (*textUUIDTodo)(nil))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := oplog.Install(ctx, db, reg, nil); err != nil {
			t.Fatal(err)
		}
		id := uuid.New()
		if _, err := db.NewInsert().Model(&textUUIDTodo{ID: id, Title: "bun's"}).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		for _, w := range []struct {
			what, q string
			args    []any
		}{
			{"insert uppercase", "INSERT INTO text_uuid_todos VALUES (?, 'upper')", []any{strings.ToUpper(uuid.NewString())}},
			{"insert braces", "INSERT INTO text_uuid_todos VALUES (?, 'braces')", []any{"{" + uuid.NewString() + "}"}},
			{"insert no UUID", "INSERT INTO text_uuid_todos VALUES ('not-a-uuid', 'bad')", nil},
			{"update key uppercase", "UPDATE text_uuid_todos SET id = ? WHERE id = ?", []any{strings.ToUpper(id.String()), id.String()}},
		} {
			if _, err := db.ExecContext(ctx, w.q, w.args...); err == nil {
				t.Errorf("%s: accepted", w.what)
			} else if !strings.Contains(err.Error(), "text_uuid_todos.id") {
				t.Errorf("%s: %v, want an error naming text_uuid_todos.id", w.what, err)
			}
		}
		if _, err := db.ExecContext(ctx, "UPDATE text_uuid_todos SET title = 'edited' WHERE id = ?", id.String()); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sync_operations WHERE row_id = ?", id.String()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			t.Fatalf("%d operations logged for the row, want 2 (insert, update)", n)
		}
	})
}

// TestInstallRefusesNonCanonicalUUIDKeys: a server's first capture of a
// table, which logs the rows written before it, refuses a UUID key in a
// text column that is not in canonical form, naming the column and the
// key. Before, the row was logged under its own spelling and never
// reached a node. Rewritten, the table is captured and the row logged.
func TestInstallRefusesNonCanonicalUUIDKeys(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := t.Context()
		if _, err := db.ExecContext(ctx, "CREATE TABLE text_uuid_todos (id TEXT PRIMARY KEY, title TEXT)"); err != nil {
			t.Fatal(err)
		}
		upper := strings.ToUpper(uuid.NewString())
		if _, err := db.ExecContext(ctx, "INSERT INTO text_uuid_todos VALUES (?, 'before')", upper); err != nil {
			t.Fatal(err)
		}
		reg, err := dbsync.Track(db, (*textUUIDTodo)(nil))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := oplog.Install(ctx, db, reg, nil); err == nil || !strings.Contains(err.Error(), "text_uuid_todos.id") || !strings.Contains(err.Error(), upper) {
			t.Fatalf("Install over a non-canonical UUID key: %v, want an error naming text_uuid_todos.id and the key", err)
		}
		if _, err := db.ExecContext(ctx, "UPDATE text_uuid_todos SET id = lower(id)"); err != nil {
			t.Fatal(err)
		}
		if _, err := oplog.Install(ctx, db, reg, nil); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sync_operations WHERE row_id = ?", strings.ToLower(upper)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("%d operations logged for the existing row, want 1", n)
		}
	})
}

// uuidColTodo is textUUIDTodo's twin whose key column has PostgreSQL's
// uuid type.
type uuidColTodo struct {
	bun.BaseModel `bun:"table:uuid_col_todos"`
	ID            uuid.UUID `bun:"id,pk,type:uuid"`
	Title         string    `bun:"title"`
}

// TestPGUUIDColumnKeyUnchecked: on PostgreSQL, the capture function of a
// table whose UUID key is in a uuid column, which holds only the
// canonical form, does not check the key's form on every write; that of
// a table keeping it in a text column does.
func TestPGUUIDColumnKeyUnchecked(t *testing.T) {
	db := dbtest.Postgres(t)
	ctx := t.Context()
	for _, q := range []string{
		"CREATE TABLE text_uuid_todos (id TEXT PRIMARY KEY, title TEXT)",
		"CREATE TABLE uuid_col_todos (id UUID PRIMARY KEY, title TEXT)",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	reg, err := dbsync.Track(db, (*textUUIDTodo)(nil), (*uuidColTodo)(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := oplog.Install(ctx, db, reg, nil); err != nil {
		t.Fatal(err)
	}
	for fn, checked := range map[string]bool{"sync_capture_text_uuid_todos": true, "sync_capture_uuid_col_todos": false} {
		var src string
		if err := db.QueryRowContext(ctx, "SELECT prosrc FROM pg_proc WHERE proname = ? AND pronamespace = current_schema()::regnamespace", fn).Scan(&src); err != nil {
			t.Fatalf("%s: %v", fn, err)
		}
		if got := strings.Contains(src, "canonical form"); got != checked {
			t.Errorf("%s checks the key's form: %v, want %v", fn, got, checked)
		}
	}
	if _, err := db.NewInsert().Model(&uuidColTodo{ID: uuid.New(), Title: "a"}).Exec(ctx); err != nil {
		t.Fatal(err)
	}
}

package peer_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/oplog"
	"github.com/go-dbsync/dbsync/peer"
)

// A table syncs in one mode: once client/server sync (oplog.Install)
// captures it, peer.New refuses it, and the reverse, with
// dbsync.ErrInvalidModel naming it. Before, both installed their
// triggers, and on SQLite each start re-created one mode's (taking the
// other's for a newer trigger of the application's); neither mode logged
// the rows the other applied (they share the capture switch). Other
// tables of the database may sync in the other mode, and a refused
// start leaves the first mode's triggers as they were.
func TestOneModePerTable(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, first := range []string{"oplog", "peer"} {
			t.Run(kind+"/"+first+" first", func(t *testing.T) {
				t.Parallel()
				db := dbtest.Open(t, kind)
				if err := testmodels.CreateSchema(ctx, db); err != nil {
					t.Fatal(err)
				}
				notes, err := dbsync.Track(db, (*testmodels.Note)(nil))
				if err != nil {
					t.Fatal(err)
				}
				lists, err := dbsync.Track(db, (*testmodels.List)(nil))
				if err != nil {
					t.Fatal(err)
				}
				installOplog := func(reg *dbsync.Registry) error {
					_, err := oplog.Install(ctx, db, reg, nil)
					return err
				}
				installPeer := func(reg *dbsync.Registry) error {
					_, err := peer.New(ctx, db, reg, nil)
					return err
				}
				// The first mode takes notes, the second lists: both fine.
				install, other := installOplog, installPeer
				if first == "peer" {
					install, other = installPeer, installOplog
				}
				if err := install(notes); err != nil {
					t.Fatal(err)
				}
				if err := other(lists); err != nil {
					t.Fatalf("the other mode on another table: %v", err)
				}
				before := allTriggers(t, db, kind)
				err = other(notes)
				if !errors.Is(err, dbsync.ErrInvalidModel) || !strings.Contains(err.Error(), "notes") {
					t.Fatalf("the other mode on the same table: %v, want dbsync.ErrInvalidModel naming notes", err)
				}
				// The first mode starts again as before.
				if err := install(notes); err != nil {
					t.Fatal(err)
				}
				if after := allTriggers(t, db, kind); after != before {
					t.Fatalf("triggers changed:\n%s\nwere:\n%s", after, before)
				}
			})
		}
	}
}

// allTriggers lists the database's triggers: on SQLite with their order of
// creation (a trigger re-created is newer), on PostgreSQL with their
// function's source (peer.New re-creates its triggers there each time).
func allTriggers(t *testing.T, db *bun.DB, kind string) string {
	t.Helper()
	q := "SELECT name || ' ' || rowid || ' ' || sql FROM sqlite_master WHERE type = 'trigger' ORDER BY rowid"
	if kind == dbtest.KindPostgres {
		q = `SELECT c.relname || ' ' || t.tgname || ' ' || p.prosrc FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid
WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal ORDER BY 1`
	}
	var rows []string
	if err := db.NewRaw(q).Scan(ctx, &rows); err != nil {
		t.Fatal(err)
	}
	return strings.Join(rows, "\n")
}

// lwwNote is a table whose oplog capture triggers (sync_ + lww_notes +
// _ai…) are named as the peer mode's of notes (sync_lww_ + notes + _ai…).
type lwwNote struct {
	bun.BaseModel `bun:"table:lww_notes"`

	ID   int64  `bun:"id,pk,autoincrement"`
	Body string `bun:"body,notnull"`
}

// SQLite trigger names are global: the second mode to install refuses a
// table whose capture trigger would take the name of the other's trigger
// on another table (dbsync.ErrInvalidModel), and the first keeps
// capturing. Before, it dropped that trigger and created its own: the
// first mode's table stopped capturing until its next start, which took
// the name back.
func TestModesTriggerNameClash(t *testing.T) {
	t.Parallel()
	for _, first := range []string{"oplog", "peer"} {
		t.Run(first+" first", func(t *testing.T) {
			t.Parallel()
			db := dbtest.Open(t, dbtest.KindSQLite)
			if err := testmodels.CreateSchema(ctx, db); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, "CREATE TABLE lww_notes (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)"); err != nil {
				t.Fatal(err)
			}
			notes, err := dbsync.Track(db, (*testmodels.Note)(nil))
			if err != nil {
				t.Fatal(err)
			}
			lww, err := dbsync.Track(db, (*lwwNote)(nil))
			if err != nil {
				t.Fatal(err)
			}
			installOplog := func() error {
				_, err := oplog.Install(ctx, db, lww, nil)
				return err
			}
			installPeer := func() error {
				_, err := peer.New(ctx, db, notes, nil)
				return err
			}
			install, other := installOplog, installPeer
			if first == "peer" {
				install, other = installPeer, installOplog
			}
			if err := install(); err != nil {
				t.Fatal(err)
			}
			if err := other(); !errors.Is(err, dbsync.ErrInvalidModel) {
				t.Fatalf("the other mode: %v, want dbsync.ErrInvalidModel", err)
			}
			// The first mode still captures its table's writes.
			q, count := "INSERT INTO lww_notes (body) VALUES ('x')", "SELECT count(*) FROM sync_operations"
			if first == "peer" {
				q, count = "INSERT INTO notes (id, body, created) VALUES ('"+uuid.NewString()+"', 'x', CURRENT_TIMESTAMP)", "SELECT count(*) FROM sync_lww"
			}
			if _, err := db.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := db.QueryRowContext(ctx, count).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Fatalf("%s: %d rows after an insert, want 1", count, n)
			}
		})
	}
}

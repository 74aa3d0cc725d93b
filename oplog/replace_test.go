package oplog_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/oplog"
)

// TestCaptureReplace: SQLite's REPLACE deletes the rows it replaces (one
// with the same key, or holding one of the row's unique values), and
// those deletes are captured: with recursive triggers on, which Install
// requires, they fire the delete trigger. Before, INSERT OR REPLACE of a
// list named as another deleted that list unlogged (the server kept it
// for ever), and a REPLACE of an existing key was logged as an insert (a
// node renumbers a pending insert of a key the server has: merge.md K1).
func TestCaptureReplace(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		sql  string
		want []string
	}{
		{"InsertOrReplaceUnique", "INSERT OR REPLACE INTO lists (id, name) VALUES (5, 'work')", []string{"lists:d:2", "lists:i:5"}},
		{"ReplaceSameKey", "REPLACE INTO lists (id, name) VALUES (2, 'office')", []string{"lists:d:2", "lists:i:2"}},
		{"UpdateOrReplace", "UPDATE OR REPLACE lists SET name = 'home' WHERE id = 2", []string{"lists:d:1", "lists:u:2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, dbtest.SQLite(t))
			b.seed(t)
			ctx := t.Context()
			// Lists without todos: REPLACE's delete of a referenced list
			// would be refused (its todos' foreign key).
			if _, err := b.db.ExecContext(ctx, "DELETE FROM todos"); err != nil {
				t.Fatal(err)
			}
			b.clear(t)
			if _, err := b.db.ExecContext(ctx, c.sql); err != nil {
				t.Fatal(err)
			}
			if got := b.logged(t); !sameSet(got, c.want) {
				t.Fatalf("%s logged %q, want %q", c.sql, got, c.want)
			}
		})
	}
}

// TestInstallRecursiveTriggersOff: Install refuses a SQLite database
// with recursive triggers off (SQLite's default), whose REPLACE would
// delete rows uncaptured, with dbsync.ErrDatabaseSettings naming the
// pragma, before it creates anything; the database of a DSN that turns
// them on is accepted.
func TestInstallRecursiveTriggersOff(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	for _, on := range []bool{false, true} {
		db := dbtest.SQLite(t)
		if !on {
			db = dbtest.SQLiteWithout(t, "recursive_triggers")
		}
		if err := testmodels.CreateSchema(ctx, db); err != nil {
			t.Fatal(err)
		}
		reg, err := dbsync.Track(db, testmodels.All()...)
		if err != nil {
			t.Fatal(err)
		}
		for _, client := range []bool{false, true} {
			_, err = oplog.Install(ctx, db, reg, &oplog.InstallOptions{Client: client})
			if on {
				if err != nil {
					t.Fatalf("recursive triggers on, client %v: %v", client, err)
				}
				continue
			}
			if !errors.Is(err, dbsync.ErrDatabaseSettings) || !strings.Contains(err.Error(), "recursive_triggers(1)") {
				t.Fatalf("recursive triggers off, client %v: %v, want ErrDatabaseSettings naming recursive_triggers(1)", client, err)
			}
			var n int
			if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE name LIKE 'sync_%'").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Fatalf("Install created %d objects before refusing", n)
			}
		}
	}
}

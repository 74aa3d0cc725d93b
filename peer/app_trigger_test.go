package peer_test

import (
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// TestAppTriggerWritesReachPeers: a trigger of the application's that
// deletes or updates the row a statement just wrote has its write
// versioned after the statement's own, so the row's last version is the
// trigger's (a tombstone for a delete) and peers follow. The capture
// triggers fire first: on PostgreSQL by their name, on SQLite because
// peer.New re-creates them after the application's.
func TestAppTriggerWritesReachPeers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		trigger map[string][]string // by database kind
		stmt    string
	}{
		{
			name: "UpdateThenDeleted",
			trigger: map[string][]string{
				dbtest.KindSQLite: {"CREATE TRIGGER a_drop AFTER UPDATE ON lists WHEN NEW.name = 'tmp' BEGIN DELETE FROM lists WHERE id = NEW.id; END"},
				dbtest.KindPostgres: {
					"CREATE FUNCTION a_drop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN DELETE FROM lists WHERE id = NEW.id; RETURN NULL; END $$",
					"CREATE TRIGGER a_drop AFTER UPDATE ON lists FOR EACH ROW WHEN (NEW.name = 'tmp') EXECUTE FUNCTION a_drop()",
				},
			},
			stmt: "UPDATE lists SET name = 'tmp' WHERE name = 'home'",
		},
		{
			name: "InsertThenDeleted",
			trigger: map[string][]string{
				dbtest.KindSQLite: {"CREATE TRIGGER a_drop AFTER INSERT ON lists WHEN NEW.name = 'tmp' BEGIN DELETE FROM lists WHERE id = NEW.id; END"},
				dbtest.KindPostgres: {
					"CREATE FUNCTION a_drop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN DELETE FROM lists WHERE id = NEW.id; RETURN NULL; END $$",
					"CREATE TRIGGER a_drop AFTER INSERT ON lists FOR EACH ROW WHEN (NEW.name = 'tmp') EXECUTE FUNCTION a_drop()",
				},
			},
			stmt: "INSERT INTO lists (name) VALUES ('tmp')",
		},
		{
			name: "InsertThenUpdated",
			trigger: map[string][]string{
				dbtest.KindSQLite: {"CREATE TRIGGER a_touch AFTER INSERT ON lists WHEN NEW.name = 'new' BEGIN UPDATE lists SET name = 'auto' WHERE id = NEW.id; END"},
				dbtest.KindPostgres: {
					"CREATE FUNCTION a_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE lists SET name = 'auto' WHERE id = NEW.id; RETURN NULL; END $$",
					"CREATE TRIGGER a_touch AFTER INSERT ON lists FOR EACH ROW WHEN (NEW.name = 'new') EXECUTE FUNCTION a_touch()",
				},
			},
			stmt: "INSERT INTO lists (name) VALUES ('new')",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, kind := range dbtest.Kinds {
				t.Run(kind, func(t *testing.T) {
					t.Parallel()
					db := dbtest.Open(t, kind)
					a := nodeOn(t, db, nil)
					b := newNode(t, dbtest.KindSQLite, nil)
					exec(t, a, "INSERT INTO lists (name) VALUES ('home'), ('work')")
					mustSync(t, a, b.AsPeer())
					for _, q := range tc.trigger[kind] {
						exec(t, a, q)
					}
					a = synctest.NewNodeWith(t, db, testmodels.All(), nil) // the application restarts
					exec(t, a, tc.stmt)
					mustSync(t, a, b.AsPeer())
					sameLive(t, a, b)
				})
			}
		})
	}
}

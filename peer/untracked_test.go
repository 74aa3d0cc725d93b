package peer_test

import (
	"slices"
	"sort"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
)

// TestUntrackedTableLosesTriggers: a table leaves the registry (the next
// release syncs notes only). peer.New with Config.DropUntracked drops the
// capture triggers (and on
// PostgreSQL their functions) of the tables it no longer tracks: their
// writes no longer tick the node's clock and feed, nor take the node
// row's lock, nor fail once the application drops the sync_uuid column.
// A trigger of the application's own on such a table stays, and the
// tracked table keeps capturing.
func TestUntrackedTableLosesTriggers(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			db := synctest.NodeDB(t, kind, "testmodels", testmodels.CreateSchema)
			all := synctest.NewNodeWith(t, db, testmodels.All(), nil)
			insert(t, all, &testmodels.List{Name: "home"})
			// The application's own trigger, named like ours.
			mine := "CREATE TRIGGER sync_lww_lists_mine AFTER INSERT ON lists BEGIN SELECT 1; END"
			if kind == dbtest.KindPostgres {
				exec(t, all, "CREATE FUNCTION lists_mine() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$")
				mine = "CREATE TRIGGER sync_lww_lists_mine AFTER INSERT ON lists FOR EACH ROW EXECUTE FUNCTION lists_mine()"
			}
			exec(t, all, mine)
			if got := triggers(t, kind, all, "lists"); len(got) < 2 {
				t.Fatalf("lists has triggers %v, want ours and the application's", got)
			}

			a := synctest.NewNodeWith(t, db, []any{(*testmodels.Note)(nil)}, &peer.Config{DropUntracked: true})
			for _, table := range []string{"lists", "todos"} {
				want := []string(nil)
				if table == "lists" {
					want = []string{"sync_lww_lists_mine"}
				}
				if got := triggers(t, kind, a, table); !slices.Equal(got, want) {
					t.Errorf("%s keeps triggers %v, want %v", table, got, want)
				}
			}
			if kind == dbtest.KindPostgres {
				var fns []string
				rows, err := db.QueryContext(ctx, `SELECT proname FROM pg_proc WHERE pronamespace = current_schema()::regnamespace
AND proname IN ('sync_lww_lists', 'sync_lwwid_lists', 'sync_lww_todos', 'sync_lwwid_todos', 'sync_lww_notes', 'sync_lwwlock_node')`)
				if err != nil {
					t.Fatal(err)
				}
				for rows.Next() {
					var f string
					if err := rows.Scan(&f); err != nil {
						t.Fatal(err)
					}
					fns = append(fns, f)
				}
				rows.Close()
				sort.Strings(fns)
				if want := []string{"sync_lww_notes", "sync_lwwlock_node"}; !slices.Equal(fns, want) {
					t.Errorf("trigger functions %v, want %v", fns, want)
				}
			}

			before := seq(t, a)
			exec(t, a, "INSERT INTO lists (name) VALUES ('work')")
			exec(t, a, "UPDATE lists SET name = 'house' WHERE name = 'home'")
			exec(t, a, "DELETE FROM lists WHERE name = 'work'")
			if after := seq(t, a); after != before {
				t.Errorf("writes to an untracked table moved the feed from %d to %d", before, after)
			}
			// The application drops the column it no longer needs; its
			// writes still work.
			exec(t, a, "DROP INDEX sync_uuid_lists")
			exec(t, a, "ALTER TABLE lists DROP COLUMN sync_uuid")
			exec(t, a, "INSERT INTO lists (name) VALUES ('garden')")

			insert(t, a, newNote("still captured"))
			if after := seq(t, a); after != before+1 {
				t.Errorf("a note moved the feed from %d to %d, want one step", before, after)
			}
		})
	}
}

// TestSubsetOpenKeepsCapture: a second program (a tool) opens the node's
// database with only some of its tables. Without Config.DropUntracked it
// leaves the capture of the others alone: the node's own program goes on
// writing them, and those writes must travel.
func TestSubsetOpenKeepsCapture(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			db := synctest.NodeDB(t, kind, "testmodels", testmodels.CreateSchema)
			main := synctest.NewNodeWith(t, db, testmodels.All(), nil)
			want := map[string][]string{}
			for _, table := range []string{"lists", "todos"} {
				want[table] = triggers(t, kind, main, table)
				if len(want[table]) == 0 {
					t.Fatalf("%s has no capture triggers", table)
				}
			}
			tool := synctest.NewNodeWith(t, db, []any{(*testmodels.Note)(nil)}, nil)
			for _, table := range []string{"lists", "todos"} {
				if got := triggers(t, kind, tool, table); !slices.Equal(got, want[table]) {
					t.Errorf("after a subset's New, %s has triggers %v, want %v", table, got, want[table])
				}
			}
			before := seq(t, main)
			insert(t, main, &testmodels.List{Name: "home"})
			if after := seq(t, main); after != before+1 {
				t.Errorf("the node's own write to lists moved the feed from %d to %d, want one step", before, after)
			}
		})
	}
}

// triggers lists the triggers on table (the constraint triggers of
// PostgreSQL's foreign keys left out), sorted.
func triggers(t *testing.T, kind string, n *peer.Node, table string) []string {
	t.Helper()
	q := "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?"
	if kind == dbtest.KindPostgres {
		q = `SELECT tg.tgname FROM pg_trigger tg JOIN pg_class cl ON cl.oid = tg.tgrelid
WHERE cl.relname = ? AND cl.relnamespace = current_schema()::regnamespace AND NOT tg.tgisinternal`
	}
	rows, err := n.DB().QueryContext(ctx, q, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func seq(t *testing.T, n *peer.Node) int64 {
	t.Helper()
	var s int64
	if err := n.DB().QueryRowContext(ctx, "SELECT seq FROM sync_lww_node WHERE id = 1").Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

package peer_test

import (
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// TestUntrackedDeleteActionsPeer: a table the node does not track
// references lists ON DELETE CASCADE and SET NULL; a list another node
// deleted goes when the node applies its page, and so do (or are
// unset) the untracked rows referencing it, as the database does at
// each delete: PostgreSQL at once, SQLite at the end of the apply
// (store.RunDeleteActions, as a pull's or a push's apply). Before, on
// SQLite, whose apply switches enforcement off, they kept referencing
// the missing list.
func TestUntrackedDeleteActionsPeer(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a, b := newNode(t, kind, nil), newNode(t, kind, nil)
			l := &testmodels.List{Name: "gone"}
			insert(t, a, l)
			mustSync(t, b, a.AsPeer())
			var id int64
			if err := b.DB().QueryRowContext(ctx, "SELECT id FROM lists WHERE name = 'gone'").Scan(&id); err != nil {
				t.Fatal(err)
			}
			exec(t, b, "CREATE TABLE list_marks (id INTEGER PRIMARY KEY, list_id BIGINT REFERENCES lists (id) ON DELETE CASCADE)")
			exec(t, b, "CREATE TABLE list_notes (id INTEGER PRIMARY KEY, list_id BIGINT REFERENCES lists (id) ON DELETE SET NULL)")
			exec(t, b, "INSERT INTO list_marks (id, list_id) VALUES (1, ?)", id)
			exec(t, b, "INSERT INTO list_notes (id, list_id) VALUES (1, ?)", id)
			tick()
			exec(t, a, "DELETE FROM lists WHERE name = 'gone'")
			mustSync(t, b, a.AsPeer())
			if n := count(t, b, "lists"); n != 0 {
				t.Fatalf("b holds %d lists, want none", n)
			}
			if n := count(t, b, "list_marks"); n != 0 {
				t.Fatalf("b holds %d marks of the deleted list, want none (ON DELETE CASCADE)", n)
			}
			if n := count(t, b, "list_notes WHERE list_id IS NOT NULL"); n != 0 {
				t.Fatalf("b holds %d notes referencing the deleted list, want none (ON DELETE SET NULL)", n)
			}
		})
	}
}

package peer_test

import (
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
)

// TestPlaceholderNotARowKey: a todo arrives in a page before its list (the
// list was edited after the todo was written), so its reference waits
// with a placeholder; a later page of the same apply deletes another list
// whose local key, on the receiving node, is -1 (an application's own
// negative key, as offline-first applications give rows they create).
// The waiting todo is no child of that list. Before, the placeholders
// were -1, -2, …, which such a key can hold: the delete rule took the
// todo for the deleted list's child and deleted it, and its tombstone,
// newer than the todo, deleted it on every node.
func TestPlaceholderNotARowKey(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			cfg := &peer.Config{BatchSize: 1}
			a, b := newNode(t, kind, cfg), newNode(t, kind, cfg)
			exec(t, b, "INSERT INTO lists (id, name) VALUES (-1, 'negative')")
			mustSync(t, a, b.AsPeer())
			tick()
			l := &testmodels.List{Name: "kept"}
			insert(t, a, l)
			insert(t, a, &testmodels.Todo{ListID: l.ID, Title: "t"})
			exec(t, a, "UPDATE lists SET name = 'kept2' WHERE id = ?", l.ID)
			exec(t, a, "DELETE FROM lists WHERE name = 'negative'")
			mustSync(t, b, a.AsPeer())
			mustSync(t, a, b.AsPeer())
			for _, n := range []*peer.Node{a, b} {
				var list string
				if err := n.DB().QueryRowContext(ctx, "SELECT l.name FROM todos t JOIN lists l ON l.id = t.list_id").Scan(&list); err != nil {
					t.Fatalf("the todo on %s: %v", n.ID(), err)
				}
				if list != "kept2" {
					t.Fatalf("the todo is in list %q, want kept2", list)
				}
			}
			if n := count(t, b, "lists"); n != 1 {
				t.Fatalf("b holds %d lists, want 1", n)
			}
			sameDigests(t, a, b)
		})
	}
}

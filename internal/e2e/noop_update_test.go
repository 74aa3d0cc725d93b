package e2e_test

import (
	"context"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

// An UPDATE on a node that changes no tracked column (the same value
// written again, or only a column the model lacks) is not a change: it
// does not carry the node's stale values over another node's edit that
// it has not pulled yet. Before, it was logged, pushed as an update, and
// (the node's change winning by default, merge.md M3) undid the edit on
// the server and on every node.
func TestNoOpUpdateKeepsOthersEdits(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := synctest.NewServer(t, kind, nil)
			a, b := synctest.NewClient(t, s, "a", nil), synctest.NewClient(t, s, "b", nil)
			run(t, a.DB, "INSERT INTO lists (id, name) VALUES (1, 'home')")
			run(t, a.DB, "INSERT INTO todos (id, list_id, title, done) VALUES (1, 1, 'milk', false)")
			mustSync(t, a)
			mustSync(t, b)

			run(t, a.DB, "UPDATE todos SET title = 'oat milk' WHERE id = 1")
			mustSync(t, a)
			run(t, b.DB, "ALTER TABLE todos ADD COLUMN viewed_at TEXT")
			run(t, b.DB, "UPDATE todos SET done = false, viewed_at = 'now' WHERE id = 1")
			mustSync(t, b)
			mustSync(t, a)
			for _, c := range []*synctest.Client{a, b} {
				var title string
				if err := c.DB.NewRaw("SELECT title FROM todos WHERE id = 1").Scan(ctx, &title); err != nil {
					t.Fatal(err)
				}
				if title != "oat milk" {
					t.Fatalf("%s holds title %q, want a's edit %q", c.Name, title, "oat milk")
				}
			}
		})
	}
}

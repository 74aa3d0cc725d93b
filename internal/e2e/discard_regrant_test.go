package e2e_test

import (
	"errors"
	"testing"

	"github.com/go-dbsync/dbsync"
)

// h5DiscardReferencedThenRegrant: bob renames project 10, which ann
// shares with him; ann stops sharing it; bob's sync is refused
// (ScopeError naming the project) and he gives the change up. The project
// is unreadable, and bob's node holds rows referencing it (its tasks, its
// member row) with no pending change: DiscardPending deletes them all
// locally. Ann shares it again before bob's next pull, which brings the
// project with the server's name. Before, the referenced project stayed
// with bob's discarded name for good, every sync succeeding.
func h5DiscardReferencedThenRegrant(e *h5Env) {
	h5Share(e)
	e.exec(e.bob, "UPDATE stuck_projects SET name = 'bob renamed' WHERE id = 10")
	e.exec(e.ann, "DELETE FROM stuck_members WHERE id = 1000")
	e.sync(e.ann)
	_, err := e.bob.Sync(e.ctx)
	var se *dbsync.ScopeError
	if !errors.As(err, &se) {
		e.t.Fatalf("bob: %v, want a ScopeError", err)
	}
	if err := e.bob.DiscardPending(e.ctx, se.Entries); err != nil {
		e.t.Fatal(err)
	}
	e.exec(e.ann, "INSERT INTO stuck_members (id, project_id, user_id) VALUES (1001, 10, 'bob')")
	e.sync(e.ann)
	e.settle(e.bob, "bob") // compares with a fresh node of bob's
}

func TestScopeDiscardReferencedThenRegrant(t *testing.T) {
	h5Run(t, false, nil, h5DiscardReferencedThenRegrant)
}

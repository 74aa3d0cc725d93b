package server_test

import (
	"fmt"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestScopeInManyRows: more rows than the pull's chunk size entering a
// node's scope go in several scope_in lines. On a PostgreSQL server the
// line's parents were read while the rows' query still held the
// connection: the pull failed (driver: bad connection).
func TestScopeInManyRows(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newScopedFixture(t, kind)
			ann := f.registerAs("ann")
			if _, err := f.DB.ExecContext(ctx, "INSERT INTO projects (id, owner_id, name) VALUES (1, 'ann', 'a')"); err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 12; i++ {
				if _, err := f.DB.ExecContext(ctx, "INSERT INTO tasks (id, project_id, title) VALUES (?, 1, ?)", i, fmt.Sprint("t", i)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := f.Srv.Seal(ctx); err != nil {
				t.Fatal(err)
			}
			msgs := mustPull(t, f.Srv, ann.id, &protocol.PullRequest{LatestVersionID: ptr(f.latest()), ChunkSize: 5,
				Held: map[string][]string{"projects": {}, "tasks": {}, "members": {}}})
			rows, lines := 0, 0
			for _, m := range msgs {
				if m.Type == protocol.MsgScopeIn && m.Table == "tasks" {
					rows += len(m.Rows)
					lines++
					if len(m.Rows) > 5 {
						t.Fatalf("a scope_in line of %d rows, the chunk size is 5", len(m.Rows))
					}
				}
			}
			if rows != 12 || lines != 3 {
				t.Fatalf("tasks: %d rows in %d scope_in lines, want 12 in 3", rows, lines)
			}
		})
	}
}

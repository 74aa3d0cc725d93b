package server_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestScopeInLinesWithinBudget: the rows entering a node's scope go in
// scope_in lines of up to the pull's chunk size in rows: large rows made a
// line past protocol.MaxLineBytes, and the node could never pull. They
// are split under the server's line budget as chunks are, and read a line
// at a time: a page of a chunk's rows was read whole first, held in memory
// however large its rows.
func TestScopeInLinesWithinBudget(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newScopedFixture(t, kind)
			f.Srv.SetLineBudget(5000)
			ann := f.registerAs("ann")
			if _, err := f.DB.ExecContext(ctx, "INSERT INTO projects (id, owner_id, name) VALUES (1, 'ann', 'a')"); err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 20; i++ {
				if _, err := f.DB.ExecContext(ctx, "INSERT INTO tasks (id, project_id, title) VALUES (?, 1, ?)",
					i, fmt.Sprintf("%02d", i)+strings.Repeat("x", 2000)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := f.Srv.Seal(ctx); err != nil {
				t.Fatal(err)
			}
			// ann holds none of her rows: they all enter her scope.
			meter := holdMeter(f.Srv)
			msgs := meteredPull(t, f.Srv, meter, ann.id, &protocol.PullRequest{LatestVersionID: ptr(f.latest()), ChunkSize: 1000,
				Held: map[string][]string{"projects": {}, "tasks": {}, "members": {}}})
			rows := 0
			for _, m := range msgs {
				if m.Type != protocol.MsgScopeIn {
					continue
				}
				size := 0
				for _, r := range m.Rows {
					size += len(r)
				}
				for _, rs := range m.Payload {
					for _, r := range rs {
						size += len(r)
					}
				}
				if size > 5000 {
					t.Fatalf("a scope_in line of %s holds %d bytes of rows, over the budget of 5000", m.Table, size)
				}
				rows += len(m.Rows)
			}
			if end := msgs[len(msgs)-1]; rows != 21 || end.ScopeInCount != 21 {
				t.Fatalf("scope_in rows %d, end counts %d; want 21", rows, end.ScopeInCount)
			}
			// About the budget and a row or two (2 KB each), not the 20
			// rows of the chunk.
			meter.check(t, 5000, 5000+2*2100+100, false)
		})
	}
}

package e2e_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/merge"
)

// TestD1AfterServerWins: a deletes P1 (C1 goes by cascade); b changed C1.
// The server logs P1's delete before C1's (parents first), so b's merge
// meets P1's delete while C1 is still pending. Under merge.ServerWins,
// C1's delete_update takes the server's side and drops b's change: no
// pending row references P1 any more, and D1 must not keep it (it did,
// and b's next push re-created on the server a parent nobody kept). With
// chunks of one operation ("chunk1"), C1's delete comes in a later chunk
// than P1's: D1 decides at the end of the pull, not of P1's chunk.
func TestD1AfterServerWins(t *testing.T) {
	t.Parallel()
	for _, chunk := range []int{0, 1} {
		for _, server := range dbtest.Kinds {
			for _, kind := range mrKinds {
				name := server + "/" + kind.name
				if chunk > 0 {
					name = fmt.Sprintf("chunk%d/%s", chunk, name)
				}
				t.Run(name, func(t *testing.T) {
					e := &mrEnv{t: t, ctx: context.Background(), kind: kind, server: server, keys: map[string]string{}, syms: map[string]string{}}
					e.start(&client.Config{DefaultPolicy: merge.ServerWins, ChunkSize: chunk})
					e.seed()
					e.del(e.a.DB, mrParents, "P1")
					e.retitle(e.b.DB, "C1", "c1-b")
					e.sync(e.a)
					res := e.pull(e.b)
					e.want("conflicts", res.Conflicts, map[string]int{merge.KindDeleteUpdate: 1})
					e.want("b's pending", e.pending(e.b), []string{})
					e.sync(e.b)
					e.sync(e.a)
					ps, cs := e.converged()
					e.want("parents", ps, map[string]string{"p2": "P2", "p3": "P3"})
					e.want("children", cs, map[string]string{"c2": "p2"})
				})
			}
		}
	}
}

package e2e_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
)

// orderReuseServer starts a server of the test models over HTTP, its
// answers lost on demand (loser).
func orderReuseServer(t *testing.T, kind string) (*synctest.Server, *synctest.AnswerLoser, string) {
	t.Helper()
	db := synctest.ServerDB(t, kind, "testmodels", testmodels.CreateSchema, synctest.Models())
	srv, h := synctest.NewHandler(t, db, synctest.Models(), nil)
	loser := synctest.NewAnswerLoser(h)
	hs := httptest.NewServer(loser)
	t.Cleanup(hs.Close)
	return &synctest.Server{DB: db, Reg: srv.Registry(), Srv: srv}, loser, hs.URL + "/sync"
}

// TestOrderReuseOneClientDiscard, servers of both dialects, one client:
// a push whose answer was lost (applied as version 1) is pending when the
// server trims past the node (reset_required). DiscardPending of a row of
// the push could not settle it (its pull refused) and went on: it deleted
// the row, which the node took for one it created and never pushed, on
// the node alone (its pulls leave its own versions out), and the
// attempt's last operation, the log's greatest, whose order the next
// local write took (before AUTOINCREMENT): the next Sync resent the
// attempt, now holding that write's operation, the server answered the
// duplicate of the first copy, and the settling deleted the operation
// unpushed. DiscardPending now settles the push through push-status, as
// a reset does: applied, its rows are no longer pending, and stay.
func TestOrderReuseOneClientDiscard(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv, loser, url := orderReuseServer(t, kind)
			a := synctest.NewClient(t, nil, "a", &client.Config{URL: url})
			lcExec(t, a.DB, "INSERT INTO lists (id, name) VALUES (1, 'one')", "INSERT INTO lists (id, name) VALUES (2, 'two')")
			loser.Arm("push")
			if _, err := a.Push(ctx); !errors.Is(err, dbsync.ErrNetwork) {
				t.Fatalf("push with a lost answer: %v, want ErrNetwork", err)
			}
			// The server trims past the node's version (0).
			run(t, srv.DB, "UPDATE sync_log_floor SET version_id = 1")
			discard := []protocol.ScopeEntry{{Table: "lists", PK: "2"}}
			if err := a.DiscardPending(ctx, discard); err != nil {
				t.Fatalf("discard while the node is behind: %v", err)
			}
			if n := pendingCount(t, a); n != 0 {
				t.Fatalf("%d pending operations after the discard, want none (the push settled applied)", n)
			}
			lcExec(t, a.DB, "INSERT INTO lists (id, name) VALUES (3, 'three')")
			mustSync(t, a)
			if got := keys(t, srv.DB, "lists"); !slices.Equal(got, []string{"1", "2", "3"}) {
				t.Fatalf("server lists %v, want [1 2 3] (node lists %v, %d pending)", got, keys(t, a.DB, "lists"), pendingCount(t, a))
			}
			if d := synctest.Diff(synctest.Dump(t, a.DB, a.Reg), synctest.Dump(t, srv.DB, srv.Reg)); d != "" {
				t.Fatalf("node and server differ:\n%s", d)
			}
		})
	}
}

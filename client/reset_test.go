package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/server"
)

// TestResetSettlesLostPush: a node pushes integer-keyed inserts and loses
// the answer (applied) or the request (not applied), goes silent past the
// horizon, and the server trims below it. Its reset asks the server about
// that push: applied, its rows are not pushed again under new keys (K1
// would otherwise move them and the server would hold them twice); not
// applied, they are pushed once. Sync settles it by resending the push
// (the server keeps each node's latest push through the trim); Reset
// called first asks the server (push-status).
func TestResetSettlesLostPush(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, mode := range []string{"applied", "not-applied", "applied/reset", "not-applied/reset"} {
			t.Run(kind+"/"+mode, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				clk := dbtest.NewClock(time.Now())
				// The server's clock moves a day ahead; requests are signed
				// with the real time.
				srv := synctest.NewTemplateServer(t, kind, &server.Config{Now: clk.Now, ClockSkew: 100 * time.Hour, NodeHorizon: 24 * time.Hour})
				tr := &transport{}
				a := synctest.NewTemplateClient(t, srv, "a", &client.Config{HTTPClient: tr.client()})
				b := synctest.NewTemplateClient(t, srv, "b", nil)
				list := insertList(t, a.DB, "a's")
				for _, c := range []*synctest.Client{a, b} {
					if _, err := c.Sync(ctx); err != nil {
						t.Fatal(err)
					}
				}
				insertTodos(t, a.DB, list, "a", 2)
				applied, explicit := strings.CutSuffix(mode, "/reset")
				if applied == "applied" {
					tr.setHook(loseReply("push"))
				} else {
					tr.setHook(failBefore("push"))
				}
				if _, err := a.Push(ctx); !errors.Is(err, dbsync.ErrNetwork) {
					t.Fatalf("push with a lost %s: %v", mode, err)
				}
				tr.setHook(nil)
				// b goes on and stays live; a falls behind the trim.
				insertTodos(t, b.DB, list, "b", 2)
				if _, err := b.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				clk.Advance(25 * time.Hour)
				insertList(t, b.DB, "b's")
				if _, err := b.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				if res, err := srv.Srv.Trim(ctx); err != nil || res.RetiredNodes != 1 {
					t.Fatalf("trim: %+v %v, want a retired", res, err)
				}
				if explicit {
					// Reset before any push: the lost push is settled by
					// asking the server, not by resending it.
					if _, err := a.Reset(ctx); err != nil {
						t.Fatalf("a reset: %v", err)
					}
				}
				res, err := a.Sync(ctx)
				if err != nil || (res.Reset == nil) != explicit {
					t.Fatalf("a sync: %v %v, want a reset unless a reset first", res, err)
				}
				if _, err := b.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				if n := count(t, srv.DB, "todos", "title LIKE 'a-%'"); n != 2 {
					t.Fatalf("the server holds %d of a's 2 todos: %v", n, titles(t, srv.DB))
				}
				converged(t, srv, a, b)
			})
		}
	}
}

package client_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestLostAnswerOfGet: the answer of a signed GET (query, repair,
// push-status) is lost after the server did the work, its connection
// closed (a server process dying, a proxy cutting it). Go's
// http.Transport resends such a request by itself, on a kept-alive
// connection, with the headers it had: the nonce the server spent on the
// first copy. The server rightly answers the copy 401 replayed; the
// client used to return that (dbsync.ErrUnauthorized, as for a wrong
// secret) instead of what was asked. It now signs the request again with
// a fresh nonce and sends it once more: the call succeeds, and a chunked
// push whose commit answer was lost too is settled once, as a
// duplicate.
func TestLostAnswerOfGet(t *testing.T) {
	ctx := context.Background()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			db := synctest.ServerDB(t, kind, "testmodels", testmodels.CreateSchema, synctest.Models())
			_, h := synctest.NewHandler(t, db, synctest.Models(), nil)
			loser := synctest.NewAnswerLoser(h)
			r := chi.NewRouter()
			r.Mount("/", loser)
			hs := httptest.NewServer(r)
			t.Cleanup(hs.Close)
			cfg := &client.Config{URL: hs.URL + "/sync", PushChunkOperations: 3}
			a := synctest.NewClient(t, nil, "a", cfg)
			list := insertList(t, a.DB, "groceries")
			if _, err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				ep   []string // endpoints whose next answer is lost, in order
				call func() error
				want string // the GET resent
			}{
				{[]string{"query"}, func() error {
					resp, err := a.Query(ctx, &protocol.QueryRequest{Table: "lists"})
					if err == nil && len(resp.Rows) != 1 {
						t.Errorf("query: %d rows, want 1", len(resp.Rows))
					}
					return err
				}, "query"},
				{[]string{"repair"}, func() error { _, err := a.Repair(ctx, nil); return err }, "repair"},
				{[]string{"push-commit"}, func() error {
					insertTodos(t, a.DB, list, "t", 10)
					if _, err := a.Push(ctx); !errors.Is(err, dbsync.ErrNetwork) {
						t.Fatalf("push whose commit answer is lost: %v, want dbsync.ErrNetwork", err)
					}
					// A kept-alive connection again, then the resumed
					// push asks which chunks the server holds.
					if _, err := a.Query(ctx, &protocol.QueryRequest{Table: "lists"}); err != nil {
						t.Fatal(err)
					}
					loser.Arm("push-status")
					res, err := a.Push(ctx)
					if err == nil && !res.Duplicate {
						t.Errorf("resumed push: %+v, want the duplicate of the first", res)
					}
					return err
				}, "push-status"},
			} {
				t.Run(tc.want, func(t *testing.T) {
					// A kept-alive connection, which the transport resends on.
					if _, err := a.Pull(ctx); err != nil {
						t.Fatal(err)
					}
					loser.Reset()
					for _, ep := range tc.ep {
						loser.Arm(ep)
					}
					if err := tc.call(); err != nil {
						t.Fatalf("%v (unauthorized: %v)", err, errors.Is(err, dbsync.ErrUnauthorized))
					}
					if n := loser.Served(tc.want); n < 2 {
						t.Fatalf("%s reached the server %d time(s): its lost answer was not resent", tc.want, n)
					}
					if d := synctest.Diff(synctest.Dump(t, a.DB, a.Reg), synctest.Dump(t, db, a.Reg)); d != "" {
						t.Errorf("node and server differ:\n%s", d)
					}
				})
			}
		})
	}
}

package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path"
	"sync"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
)

// answerLoser serves a real server's handler and, for the endpoints it is
// told to, serves a request whole (its nonce spent, its work done) and
// then drops the connection without the answer, as a server process that
// dies (or a proxy that cuts it) after the work. It counts the copies of
// each endpoint's requests that reach the server.
type answerLoser struct {
	h      http.Handler
	mu     sync.Mutex
	lose   map[string]int // endpoint → answers still to lose
	copies map[string]int // endpoint → requests served
}

func (l *answerLoser) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ep := path.Base(r.URL.Path)
	l.mu.Lock()
	l.copies[ep]++
	lose := l.lose[ep] > 0
	if lose {
		l.lose[ep]--
	}
	l.mu.Unlock()
	if !lose {
		l.h.ServeHTTP(w, r)
		return
	}
	l.h.ServeHTTP(httptest.NewRecorder(), r)
	panic(http.ErrAbortHandler) // the connection closes, no answer sent
}

func (l *answerLoser) arm(ep string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lose[ep]++
}

func (l *answerLoser) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.copies)
}

func (l *answerLoser) served(ep string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.copies[ep]
}

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
			loser := &answerLoser{h: h, lose: map[string]int{}, copies: map[string]int{}}
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
					loser.arm("push-status")
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
					loser.reset()
					for _, ep := range tc.ep {
						loser.arm(ep)
					}
					if err := tc.call(); err != nil {
						t.Fatalf("%v (unauthorized: %v)", err, errors.Is(err, dbsync.ErrUnauthorized))
					}
					if n := loser.served(tc.want); n < 2 {
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

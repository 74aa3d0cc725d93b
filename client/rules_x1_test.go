package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestX1AnswerSettlesAttempt pins merge.md X1: a refusal that proves the
// push was not applied and never will be (pull_needed, unique_conflict)
// drops the attempt and keeps its operations pending, so the next push
// goes under a new push id; a refusal before the server looked at the push
// id (a bad clock: 401) keeps the attempt, and the next push resends the
// same push id with the same operations, their rows read again. Either
// way the node's changes reach the server once.
func TestX1AnswerSettlesAttempt(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// refuse arranges the refusal of a's next push, which renames
		// list 1 to "a"; undo lets the push through afterwards.
		refuse func(t *testing.T, e *x1Env) (undo func())
		want   func(error) bool
		kept   bool // the attempt stays
	}{
		{
			name: "pull_needed",
			refuse: func(t *testing.T, e *x1Env) func() {
				exec(t, e.b.DB, "UPDATE lists SET name = 'b' WHERE id = 1")
				if _, err := e.b.Sync(context.Background()); err != nil {
					t.Fatal(err)
				}
				return func() {}
			},
			want: func(err error) bool { return errors.Is(err, dbsync.ErrPullNeeded) },
		},
		{
			name: "unique_conflict",
			refuse: func(t *testing.T, e *x1Env) func() {
				e.holdName.Store(true)
				return func() { e.holdName.Store(false) }
			},
			want: func(err error) bool {
				var uc *dbsync.UniqueConstraintError
				return errors.As(err, &uc) && len(uc.Entries) == 1 && uc.Entries[0].Table == "lists" && uc.Entries[0].PK == "1"
			},
		},
		{
			name: "unauthorized_before_the_push_id",
			refuse: func(t *testing.T, e *x1Env) func() {
				e.tr.setHook(badSignature("push"))
				return func() { e.tr.setHook(nil) }
			},
			want: func(err error) bool { return errors.Is(err, dbsync.ErrUnauthorized) },
			kept: true,
		},
	}
	for _, kind := range dbtest.Kinds {
		for _, tc := range cases {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				e := &x1Env{}
				srv := synctest.NewTemplateServer(t, kind, &server.Config{BeforePush: e.beforePush})
				tr := &transport{}
				e.tr = tr
				e.a = synctest.NewTemplateClient(t, srv, "a", &client.Config{HTTPClient: tr.client()})
				e.b = synctest.NewTemplateClient(t, srv, "b", nil)
				home := insertList(t, e.a.DB, "home")
				insertTodos(t, e.a.DB, home, "t", 1)
				for _, c := range []*synctest.Client{e.a, e.b} {
					if _, err := c.Sync(ctx); err != nil {
						t.Fatal(err)
					}
				}
				exec(t, e.a.DB, "UPDATE lists SET name = 'a' WHERE id = 1")
				undo := tc.refuse(t, e)
				sent := len(tr.requests("push"))
				_, err := e.a.Push(ctx)
				if !tc.want(err) {
					t.Fatalf("push: %v, want the %s refusal", err, tc.name)
				}
				if n := count(t, e.a.DB, "sync_push_attempts", ""); n != map[bool]int{true: 1, false: 0}[tc.kept] {
					t.Fatalf("%d push attempts after the refusal, want kept=%v", n, tc.kept)
				}
				if n := count(t, e.a.DB, "sync_operations", "version_id IS NULL"); n != 1 {
					t.Fatalf("%d pending operations after the refusal, want a's update", n)
				}
				undo()
				// A change made since: a resent attempt carries the row as
				// it is now.
				exec(t, e.a.DB, "UPDATE lists SET name = 'a2' WHERE id = 1")
				if _, err := e.a.Sync(ctx); err != nil {
					t.Fatalf("sync: %v", err)
				}
				// The refused push, and the one the server applied.
				pushes := tr.requests("push")[sent:]
				pushes = append(pushes[:1], pushes[len(pushes)-1])
				var first, second protocol.PushRequest
				for i, p := range []*protocol.PushRequest{&first, &second} {
					if err := json.Unmarshal(pushes[i].body, p); err != nil {
						t.Fatal(err)
					}
				}
				if same := first.PushID == second.PushID; same != tc.kept {
					t.Fatalf("push ids %s then %s: same=%v, want %v", first.PushID, second.PushID, same, tc.kept)
				}
				if rows := second.Payload["lists"]; len(rows) != 1 || !json.Valid(rows[0]) || !containsName(rows[0], "a2") {
					t.Fatalf("second push's payload %s, want list 1 named a2", rows)
				}
				if _, err := e.b.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				ds := converged(t, srv, e.a, e.b)
				if n := count(t, srv.DB, "lists", "id = 1 AND name = 'a2'"); n != 1 || len(ds["lists"]) != 1 || len(ds["todos"]) != 1 {
					t.Fatalf("server holds %v, want list 1 named a2 and its todo", ds)
				}
			})
		}
	}
}

// x1Env is the state of one TestX1AnswerSettlesAttempt case.
type x1Env struct {
	a, b     *synctest.Client
	holdName atomic.Bool // BeforePush gives "a" to another list first
	tr       *transport  // a's HTTP
}

// beforePush makes the push's transaction give the name "a" to another
// list when holdName is set: the push, fast-forward, is refused with
// unique_conflict, and the hook's row is rolled back with it.
func (e *x1Env) beforePush(ctx context.Context, tx bun.Tx, _ *server.PushInfo) error {
	if !e.holdName.Load() {
		return nil
	}
	_, err := tx.ExecContext(ctx, "INSERT INTO lists (id, name) VALUES (1000, 'a')")
	return err
}

func containsName(row json.RawMessage, name string) bool {
	var r struct{ Name string }
	return json.Unmarshal(row, &r) == nil && r.Name == name
}

package client_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/protocol"
)

// plainLoser is a Transport without push-status (not a
// ChunkedTransport) that loses the answer of a push when armed, after
// the server applied it.
type plainLoser struct {
	client.Transport
	lose bool
}

func (l *plainLoser) Push(ctx context.Context, call *client.Call, body []byte) (*protocol.PushResponse, error) {
	resp, err := l.Transport.Push(ctx, call, body)
	if l.lose {
		l.lose = false
		return nil, fmt.Errorf("%w: answer lost", dbsync.ErrNetwork)
	}
	return resp, err
}

// TestDiscardPendingLostPushPlainTransport: a push whose answer was lost
// (applied) is pending when the server trims past the node, so the pull
// that would settle it is refused reset_required; through a Transport
// without push-status nothing else can tell whether it was applied, and
// DiscardPending returns the refusal and changes nothing (before, it gave
// the push's operations up and deleted the row the push had inserted, on
// the node alone). The next Sync settles the push; the node and the
// server agree.
func TestDiscardPendingLostPushPlainTransport(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewLocalServer(t, kind, nil)
			tr := &plainLoser{Transport: synctest.NewTransport(srv.Srv)}
			a := synctest.NewClient(t, srv, "a", &client.Config{Transport: tr})
			execAll(t, a.DB, "INSERT INTO lists (id, name) VALUES (1, 'one')", "INSERT INTO lists (id, name) VALUES (2, 'two')")
			tr.lose = true
			if _, err := a.Push(ctx); !errors.Is(err, dbsync.ErrNetwork) {
				t.Fatalf("push with a lost answer: %v, want ErrNetwork", err)
			}
			exec(t, srv.DB, "UPDATE sync_log_floor SET version_id = 1")
			err := a.DiscardPending(ctx, []protocol.ScopeEntry{{Table: "lists", PK: "2"}})
			if !errors.Is(err, dbsync.ErrResetRequired) {
				t.Fatalf("discard: %v, want ErrResetRequired", err)
			}
			if n := pendingOps(t, a); n != 2 {
				t.Fatalf("%d pending operations after the refused discard, want 2", n)
			}
			syncNode(t, a)
			if d := synctest.Diff(synctest.Dump(t, a.DB, a.Reg), synctest.Dump(t, srv.DB, srv.Reg)); d != "" {
				t.Fatalf("node and server differ:\n%s", d)
			}
			if got := listKeys(t, srv.DB, "lists"); len(got) != 2 {
				t.Fatalf("server lists %v, want [1 2]", got)
			}
		})
	}
}

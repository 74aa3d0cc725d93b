package synctest_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/protocol"
)

// The in-process transport runs the checks the handlers run: schema,
// signature, timestamp window, body validation; refusals cross as
// *dbsync.ServerError; streams end with their end line.
func TestTransportChecks(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewLocalServer(t, kind, nil)
			tr := synctest.NewTransport(srv.Srv)
			schema := srv.Reg.Fingerprint()
			if _, err := tr.Register(ctx, &client.Call{Schema: "nope"}, "", &protocol.RegisterRequest{}); !errors.Is(err, dbsync.ErrSchemaMismatch) {
				t.Fatalf("register with another schema: %v, want ErrSchemaMismatch", err)
			}
			reg, err := tr.Register(ctx, &client.Call{Schema: schema}, "", &protocol.RegisterRequest{})
			if err != nil {
				t.Fatal(err)
			}
			call := func() *client.Call {
				return &client.Call{Schema: schema, NodeID: reg.Node.NodeID, Secret: reg.Node.Secret, Time: time.Now()}
			}

			bad := call()
			bad.Secret = "not the secret"
			if _, err := tr.Query(ctx, bad, &protocol.QueryRequest{Table: "lists"}); !errors.Is(err, dbsync.ErrUnauthorized) {
				t.Fatalf("query with a wrong secret: %v, want ErrUnauthorized", err)
			}
			var se *dbsync.ServerError
			if _, err := tr.Repair(ctx, bad); !errors.As(err, &se) || se.Code != protocol.CodeUnauthorized {
				t.Fatalf("repair with a wrong secret: %v, want a *dbsync.ServerError %s", err, protocol.CodeUnauthorized)
			}
			stale := call()
			stale.Time = stale.Time.Add(-time.Hour)
			if _, err := tr.Pull(ctx, stale, &protocol.PullRequest{}); !errors.Is(err, dbsync.ErrUnauthorized) {
				t.Fatalf("pull an hour old: %v, want ErrUnauthorized", err)
			}
			other := call()
			other.Schema = "nope"
			if _, err := tr.Push(ctx, other, []byte(`{}`)); !errors.Is(err, dbsync.ErrSchemaMismatch) {
				t.Fatalf("push with another schema: %v, want ErrSchemaMismatch", err)
			}
			for _, body := range []string{"", `{"push_id": "x"}`, `not json`} {
				if _, err := tr.Push(ctx, call(), []byte(body)); !errors.Is(err, dbsync.ErrBadRequest) {
					t.Fatalf("push %q: %v, want ErrBadRequest", body, err)
				}
			}
			if _, err := tr.Query(ctx, call(), &protocol.QueryRequest{Table: "lists", Equal: map[string]string{"nope": "1"}}); !errors.Is(err, dbsync.ErrUnknownColumn) {
				t.Fatalf("query of an unknown column: %v, want ErrUnknownColumn", err)
			}
			if _, err := tr.Query(ctx, call(), &protocol.QueryRequest{Table: "lists"}); err != nil {
				t.Fatalf("query: %v", err)
			}

			// A stream is read line by line up to its end line.
			for name, open := range map[string]func() (io.ReadCloser, error){
				"pull":   func() (io.ReadCloser, error) { return tr.Pull(ctx, call(), &protocol.PullRequest{}) },
				"repair": func() (io.ReadCloser, error) { return tr.Repair(ctx, call()) },
			} {
				r, err := open()
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				var types []string
				sc := bufio.NewScanner(r)
				for sc.Scan() {
					m, err := protocol.ParseMessage(sc.Bytes())
					if err != nil {
						t.Fatalf("%s line %q: %v", name, sc.Bytes(), err)
					}
					types = append(types, m.Type)
				}
				if err := sc.Err(); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				r.Close()
				if len(types) < 2 || types[0] != protocol.MsgHeader || types[len(types)-1] != protocol.MsgEnd {
					t.Fatalf("%s stream: %v", name, types)
				}
			}

			// A cancelled context cuts a stream, as a dropped connection
			// does; one cancelled before the call refuses it.
			cctx, cancel := context.WithCancel(ctx)
			r, err := tr.Repair(cctx, call())
			if err != nil {
				t.Fatal(err)
			}
			cancel()
			if _, err := io.ReadAll(r); !errors.Is(err, context.Canceled) {
				t.Fatalf("reading a cancelled stream: %v, want context.Canceled", err)
			}
			r.Close()
			if _, err := tr.Pull(cctx, call(), &protocol.PullRequest{}); !errors.Is(err, dbsync.ErrNetwork) {
				t.Fatalf("pull with a cancelled context: %v, want ErrNetwork", err)
			}
		})
	}
}

package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
)

// nilAnswers is a custom Transport over real HTTP whose procedure proc,
// once armed, returns a nil answer with a nil error: a buggy Transport.
// With proc PushStatus, the first PushCommit after arming loses its
// answer (dbsync.ErrNetwork), so that the next push asks for its status.
type nilAnswers struct {
	*client.HTTPTransport
	proc     string
	armed    atomic.Bool
	lostOnce atomic.Bool
	given    atomic.Int64 // nil answers given
}

func (tr *nilAnswers) nilFor(proc string) bool {
	if tr.armed.Load() && tr.proc == proc {
		tr.given.Add(1)
		return true
	}
	return false
}

func (tr *nilAnswers) Register(ctx context.Context, call *client.Call, credentials string, req *protocol.RegisterRequest) (*protocol.RegisterResponse, error) {
	if tr.nilFor("Register") {
		return nil, nil
	}
	return tr.HTTPTransport.Register(ctx, call, credentials, req)
}

func (tr *nilAnswers) Push(ctx context.Context, call *client.Call, body []byte) (*protocol.PushResponse, error) {
	if tr.nilFor("Push") {
		return nil, nil
	}
	return tr.HTTPTransport.Push(ctx, call, body)
}

func (tr *nilAnswers) Pull(ctx context.Context, call *client.Call, req *protocol.PullRequest) (io.ReadCloser, error) {
	if tr.nilFor("Pull") {
		return nil, nil
	}
	return tr.HTTPTransport.Pull(ctx, call, req)
}

func (tr *nilAnswers) Repair(ctx context.Context, call *client.Call) (io.ReadCloser, error) {
	if tr.nilFor("Repair") {
		return nil, nil
	}
	return tr.HTTPTransport.Repair(ctx, call)
}

func (tr *nilAnswers) Query(ctx context.Context, call *client.Call, req *protocol.QueryRequest) (*protocol.QueryResponse, error) {
	if tr.nilFor("Query") {
		return nil, nil
	}
	return tr.HTTPTransport.Query(ctx, call, req)
}

func (tr *nilAnswers) PushChunk(ctx context.Context, call *client.Call, body []byte) (*protocol.PushChunkResponse, error) {
	if tr.nilFor("PushChunk") {
		return nil, nil
	}
	return tr.HTTPTransport.PushChunk(ctx, call, body)
}

func (tr *nilAnswers) PushCommit(ctx context.Context, call *client.Call, req *protocol.PushCommit) (*protocol.PushResponse, error) {
	if tr.armed.Load() && tr.proc == "PushStatus" && !tr.lostOnce.Swap(true) {
		return nil, fmt.Errorf("%w: injected: the commit's answer was lost", dbsync.ErrNetwork)
	}
	if tr.nilFor("PushCommit") {
		return nil, nil
	}
	return tr.HTTPTransport.PushCommit(ctx, call, req)
}

func (tr *nilAnswers) PushStatus(ctx context.Context, call *client.Call, pushID string) (*protocol.PushChunkStatus, error) {
	if tr.nilFor("PushStatus") {
		return nil, nil
	}
	return tr.HTTPTransport.PushStatus(ctx, call, pushID)
}

func (tr *nilAnswers) Watch(ctx context.Context, call *client.Call, req *protocol.WatchRequest) (*protocol.WatchResponse, error) {
	if tr.nilFor("Watch") {
		return nil, nil
	}
	return tr.HTTPTransport.Watch(ctx, call, req)
}

func (tr *nilAnswers) WatchPull(ctx context.Context, call *client.Call, req *protocol.WatchRequest) (*protocol.WatchResponse, io.ReadCloser, error) {
	if tr.nilFor("WatchPull") {
		return nil, nil, nil
	}
	return tr.HTTPTransport.WatchPull(ctx, call, req)
}

// watchOnly is a WatchTransport that is not a WatchPullTransport.
type watchOnly struct{ client.WatchTransport }

// TestTransportNilAnswer: a custom Transport (ChunkedTransport,
// WatchTransport, WatchPullTransport) whose procedure returns a nil answer
// with a nil error fails the call with dbsync.ErrBadResponse, at every
// call site, and the node keeps its changes. Before, Pull, Repair,
// QueryAll, Watch and the chunked upload dereferenced the nil answer
// (panic), and Query returned it.
func TestTransportNilAnswer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		proc string
		call string // what the test calls
	}{
		{"Register", "register"},
		{"Push", "push"},
		{"PushChunk", "push"},
		{"PushCommit", "push"},
		{"PushStatus", "push"},
		{"Pull", "pull"},
		{"Repair", "repair"},
		{"Query", "query"},
		{"Query", "queryAll"},
		{"Watch", "watch"},
		{"WatchPull", "watch"},
	} {
		t.Run(tc.proc+"/"+tc.call, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewServer(t, dbtest.KindSQLite, nil)
			h, err := client.NewHTTPTransport(srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			na := &nilAnswers{HTTPTransport: h, proc: tc.proc}
			var tr client.Transport = na
			if tc.proc == "Watch" {
				tr = watchOnly{na}
			}
			watchErrs := make(chan error, 64)
			db := synctest.ClientSQLite(t, "testmodels", testmodels.CreateSchema, synctest.Models())
			reg, err := dbsync.Track(db, synctest.Models()...)
			if err != nil {
				t.Fatal(err)
			}
			chunks := 1 // the two lists go in chunks of one
			if tc.proc == "Push" {
				chunks = 10 // in one request
			}
			cl, err := client.New(ctx, db, reg, &client.Config{Transport: tr, PushChunkOperations: chunks,
				OnEvent: func(_ context.Context, e dbsync.Event) {
					if e.Op == "watch" && e.Err != nil {
						select {
						case watchErrs <- e.Err:
						default:
						}
					}
				}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cl.Register(ctx, nil); err != nil {
				t.Fatal(err)
			}
			insertList(t, db, "one")
			insertList(t, db, "two")
			na.armed.Store(true)
			switch tc.call {
			case "register":
				_, err = cl.Register(ctx, nil)
			case "push":
				if _, err = cl.Push(ctx); tc.proc == "PushStatus" {
					if !errors.Is(err, dbsync.ErrNetwork) {
						t.Fatalf("the push whose commit answer was lost: %v, want dbsync.ErrNetwork", err)
					}
					_, err = cl.Push(ctx) // resumed: asks for its status
				}
			case "pull":
				_, err = cl.Pull(ctx)
			case "repair":
				_, err = cl.Repair(ctx, &client.RepairOptions{Force: true})
			case "query":
				_, err = cl.Query(ctx, &protocol.QueryRequest{Table: "lists"})
			case "queryAll":
				_, err = client.QueryAll[testmodels.List](ctx, cl, nil)
			case "watch":
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				done := make(chan error, 1)
				go func() {
					done <- cl.Watch(wctx, &client.WatchOptions{Wait: 100 * time.Millisecond,
						MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
				}()
				select {
				case err = <-watchErrs:
				case <-wctx.Done():
					err = wctx.Err()
				}
				cancel()
				if werr := <-done; !errors.Is(werr, context.Canceled) && !errors.Is(werr, context.DeadlineExceeded) {
					t.Fatalf("Watch returned %v, want the context's end (it retries)", werr)
				}
			}
			if !errors.Is(err, dbsync.ErrBadResponse) {
				t.Fatalf("%s answered (nil, nil): %s gave %v, want dbsync.ErrBadResponse", tc.proc, tc.call, err)
			}
			if na.given.Load() == 0 {
				t.Fatalf("%s never called %s", tc.call, tc.proc)
			}
			if n := count(t, db, "lists", ""); n != 2 {
				t.Fatalf("the node holds %d lists, want its 2", n)
			}
			if tc.call == "push" {
				if n := count(t, db, "sync_operations", "version_id IS NULL"); n != 2 {
					t.Fatalf("%d operations pending after the failed push, want 2", n)
				}
			}
		})
	}
}

// streamAndError is a custom Transport over real HTTP whose Pull, Repair
// and WatchPull, once armed, return the real answer's stream together
// with an error: a buggy Transport.
type streamAndError struct {
	*client.HTTPTransport
	armed  atomic.Bool
	open   atomic.Int64 // streams handed over with an error, not closed yet
	handed atomic.Int64
	onHand func() // called after each stream handed over with an error, when set before armed
}

type closeCounting struct {
	io.ReadCloser
	tr   *streamAndError
	once atomic.Bool
}

func (c *closeCounting) Close() error {
	if !c.once.Swap(true) {
		c.tr.open.Add(-1)
	}
	return c.ReadCloser.Close()
}

func (tr *streamAndError) spoil(s io.ReadCloser, err error) (io.ReadCloser, error) {
	if err != nil || !tr.armed.Load() {
		return s, err
	}
	tr.open.Add(1)
	tr.handed.Add(1)
	if tr.onHand != nil {
		tr.onHand()
	}
	return &closeCounting{ReadCloser: s, tr: tr}, errors.New("injected: a stream with an error")
}

func (tr *streamAndError) Pull(ctx context.Context, call *client.Call, req *protocol.PullRequest) (io.ReadCloser, error) {
	return tr.spoil(tr.HTTPTransport.Pull(ctx, call, req))
}

func (tr *streamAndError) Repair(ctx context.Context, call *client.Call) (io.ReadCloser, error) {
	return tr.spoil(tr.HTTPTransport.Repair(ctx, call))
}

func (tr *streamAndError) WatchPull(ctx context.Context, call *client.Call, req *protocol.WatchRequest) (*protocol.WatchResponse, io.ReadCloser, error) {
	out, s, err := tr.HTTPTransport.WatchPull(ctx, call, req)
	if s == nil {
		return out, s, err
	}
	s, err = tr.spoil(s, err)
	return out, s, err
}

// TestTransportStreamWithError: a stream a custom Transport returns
// together with an error is closed by the client (it reads no stream
// then); before, it was dropped open, holding its connection.
func TestTransportStreamWithError(t *testing.T) {
	t.Parallel()
	for _, call := range []string{"pull", "repair", "watch"} {
		t.Run(call, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewServer(t, dbtest.KindSQLite, nil)
			h, err := client.NewHTTPTransport(srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			tr := &streamAndError{HTTPTransport: h}
			db := synctest.ClientSQLite(t, "testmodels", testmodels.CreateSchema, synctest.Models())
			reg, err := dbsync.Track(db, synctest.Models()...)
			if err != nil {
				t.Fatal(err)
			}
			cl, err := client.New(ctx, db, reg, &client.Config{Transport: tr})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cl.Register(ctx, nil); err != nil {
				t.Fatal(err)
			}
			// A watch retries until its context ends: it ends once the
			// watch has been handed a stream with an error (30 s at most).
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			tr.onHand = cancel
			tr.armed.Store(true)
			switch call {
			case "pull":
				_, err = cl.Pull(ctx)
			case "repair":
				_, err = cl.Repair(ctx, &client.RepairOptions{Force: true})
			case "watch":
				err = cl.Watch(wctx, &client.WatchOptions{Wait: 10 * time.Millisecond,
					MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
			}
			if err == nil {
				t.Fatalf("%s succeeded on a stream that came with an error", call)
			}
			if tr.handed.Load() == 0 {
				t.Fatalf("%s was never handed a stream with an error", call)
			}
			if n := tr.open.Load(); n != 0 {
				t.Fatalf("%d of %d streams handed over with an error were left open", n, tr.handed.Load())
			}
		})
	}
}

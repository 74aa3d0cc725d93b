package synctest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/httpclient"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// NewLocalServer starts a server on a fresh database of kind with the test
// models (as NewServer's), without HTTP: its clients (NewClient) call it in
// process, through a Transport.
func NewLocalServer(t testing.TB, kind string, cfg *server.Config) *Server {
	t.Helper()
	return newServer(t, templateServerDB(t, kind), testmodels.CreateSchema, Models(), cfg)
}

// Transport is a client.Transport that calls a server.Server in the same
// process, for tests of the client's logic without HTTP.
//
// Around each procedure it runs what the handlers run, through the same
// server methods: the schema check (Server.ForSchema), the signature of
// every request but register (Server.Authenticate over the bytes an HTTP
// client would sign: a wrong secret or a stale timestamp is refused, the
// nonce is recorded), and the decoding and validation of the bodies
// (protocol.DecodePushRequest, protocol.ParseQuery, JSON). It leaves out what
// only HTTP needs: the protocol-version header (both ends are this build),
// body size limits and the budgets of unauthenticated bodies, the
// registration rate limit per address, and deadlines.
//
// Errors cross as on the wire: a refusal becomes a *dbsync.ServerError
// (Status 0: there is no HTTP status) or a *dbsync.UniqueConstraintError,
// a cancelled context dbsync.ErrNetwork. Pull and repair answers stream
// through a pipe as the server emits them; a failure after the first line
// ends the stream with an error line, as the handlers do.
type Transport struct {
	srv *server.Server
	// RemoteAddr is what the server's AuthorizeRegister hook sees as the
	// caller's address (server.RegisterInfo.RemoteAddr).
	RemoteAddr string
	// WatchWait is the longest Watch holds a request, as
	// handlers.Config.WatchTimeout does over HTTP. NewTransport: 25 s.
	WatchWait time.Duration
}

// NewTransport returns an in-process transport to srv.
func NewTransport(srv *server.Server) *Transport {
	return &Transport{srv: srv, RemoteAddr: "in-process", WatchWait: 25 * time.Second}
}

var _ client.Transport = (*Transport)(nil)

// Register implements client.Transport.
func (tr *Transport) Register(ctx context.Context, call *client.Call, credentials string, req *protocol.RegisterRequest) (*protocol.RegisterResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("client: register: %w", err)
	}
	var got protocol.RegisterRequest
	if err := decode(body, &got); err != nil {
		return nil, refusal(ctx, err)
	}
	resp, err := tr.srv.Register(ctx, &server.RegisterInfo{Request: &got, Credentials: credentials, RemoteAddr: tr.RemoteAddr,
		Schema: &server.SchemaHeaders{Fingerprint: call.Schema, Tables: call.Tables, Nullable: call.Nullable}})
	if err != nil {
		return nil, refusal(ctx, err)
	}
	return resp, nil
}

// Push implements client.Transport.
func (tr *Transport) Push(ctx context.Context, call *client.Call, body []byte) (*protocol.PushResponse, error) {
	node, srv, err := tr.authenticate(ctx, call, "push", "", body)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, refusal(ctx, fmt.Errorf("%w: empty push body", dbsync.ErrBadRequest))
	}
	req, err := protocol.DecodePushRequest(body)
	if err != nil {
		return nil, refusal(ctx, err)
	}
	resp, err := srv.Push(ctx, node, req)
	if err != nil {
		return nil, refusal(ctx, err)
	}
	return resp, nil
}

// Pull implements client.Transport.
func (tr *Transport) Pull(ctx context.Context, call *client.Call, req *protocol.PullRequest) (io.ReadCloser, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	node, srv, err := tr.authenticate(ctx, call, "pull", "", body)
	if err != nil {
		return nil, err
	}
	var got protocol.PullRequest
	if err := decode(body, &got); err != nil {
		return nil, refusal(ctx, err)
	}
	return stream(ctx, func(emit server.Emit) error { return srv.Pull(ctx, node, &got, emit) })
}

// Repair implements client.Transport.
func (tr *Transport) Repair(ctx context.Context, call *client.Call) (io.ReadCloser, error) {
	node, srv, err := tr.authenticate(ctx, call, "repair", "", nil)
	if err != nil {
		return nil, err
	}
	return stream(ctx, func(emit server.Emit) error { return srv.Repair(ctx, node, emit) })
}

// Query implements client.Transport.
func (tr *Transport) Query(ctx context.Context, call *client.Call, req *protocol.QueryRequest) (*protocol.QueryResponse, error) {
	node, srv, err := tr.authenticate(ctx, call, "query", req.Values().Encode(), nil)
	if err != nil {
		return nil, err
	}
	got, err := protocol.ParseQuery(req.Values())
	if err != nil {
		return nil, refusal(ctx, err)
	}
	resp, err := srv.Query(ctx, node, got)
	if err != nil {
		return nil, refusal(ctx, err)
	}
	return resp, nil
}

// authenticate checks the schema as far as it can before the signature
// (Server.LookupSchema), signs the request as the HTTP transport does, has
// the server verify it (timestamp window, nonce, node, signature), then
// builds the view of a new schema (Server.ForSchema), as the handlers do.
// It returns the node.
func (tr *Transport) authenticate(ctx context.Context, call *client.Call, endpoint, query string, body []byte) (int64, *server.Server, error) {
	srv, err := tr.srv.LookupSchema(call.Schema, call.Tables)
	if err != nil {
		return 0, nil, refusal(ctx, err)
	}
	s := &protocol.Signed{
		Endpoint:  endpoint,
		Query:     query,
		NodeID:    call.NodeID,
		Timestamp: call.Time.UnixMilli(),
		Nonce:     protocol.NewNonce(),
		Body:      body,
	}
	sig := s.Sign(call.Secret)
	// The server verifies the query as it parses it, as the handlers do.
	values, err := url.ParseQuery(query)
	if err != nil {
		return 0, nil, refusal(ctx, fmt.Errorf("%w: %w", dbsync.ErrBadRequest, err))
	}
	received := *s
	received.Query = values.Encode()
	node, err := tr.srv.Authenticate(ctx, &received, sig)
	if err != nil {
		return 0, nil, refusal(ctx, err)
	}
	if srv == nil {
		if srv, err = tr.srv.ForSchema(call.Schema, call.Tables); err != nil {
			return 0, nil, refusal(ctx, err)
		}
	}
	if err := srv.CheckNullable(call.Nullable); err != nil {
		return 0, nil, refusal(ctx, err)
	}
	return node, srv, nil
}

// decode gives the server a body as the wire does: the JSON this
// transport marshalled, decoded again. (The handlers' stricter decoding,
// which refuses data after the value, has nothing to refuse here.)
func decode(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: invalid JSON: %w", dbsync.ErrBadRequest, err)
	}
	return nil
}

// stream runs a streamed procedure in its own goroutine and returns its
// lines as they are emitted, through a pipe. A failure before the first
// line is returned as the error; after it, the stream ends with an error
// line. Cancelling ctx cuts the stream, as a dropped connection does.
func stream(ctx context.Context, run func(server.Emit) error) (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	first := make(chan error, 1) // nil once the first line is on its way
	stop := context.AfterFunc(ctx, func() { pw.CloseWithError(ctx.Err()) })
	go func() {
		defer stop()
		started := false
		var line []byte
		write := func(m *protocol.Message) error {
			var err error
			if line, err = protocol.AppendMessage(line[:0], m); err != nil {
				return err
			}
			line = append(line, '\n')
			_, err = pw.Write(line)
			return err
		}
		err := run(func(m *protocol.Message) error {
			if !started {
				started = true
				first <- nil
			}
			return write(m)
		})
		switch {
		case !started:
			first <- err
		case err != nil:
			d := detail(err)
			_ = write(&protocol.Message{Type: protocol.MsgError, Error: &d})
		}
		pw.Close()
	}()
	if err := <-first; err != nil {
		return nil, refusal(ctx, err)
	}
	return &ctxReader{ctx: ctx, ReadCloser: pr}, nil
}

// ctxReader fails every read once its context is done, as the body of an
// HTTP response does.
type ctxReader struct {
	ctx context.Context
	io.ReadCloser
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.ReadCloser.Read(p)
}

// refusal turns a server error into what a client sees on the wire.
func refusal(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", dbsync.ErrNetwork, ctx.Err())
	}
	return httpclient.DetailError(0, detail(err))
}

// detail describes err as the handlers put it on the wire (the message of
// an internal error is kept: these are tests).
func detail(err error) protocol.ErrorDetail {
	d := protocol.ErrorDetail{Code: dbsync.Code(err), Message: err.Error()}
	switch d.Code {
	case protocol.CodePullNeeded:
		d.PullNeeded = true
	case protocol.CodeUniqueConflict:
		var uc *dbsync.UniqueConstraintError
		if errors.As(err, &uc) {
			d.Entries = uc.Entries
		}
	case protocol.CodeOutOfScope:
		var se *dbsync.ScopeError
		if errors.As(err, &se) {
			d.Rows = se.Entries
		}
	case protocol.CodeSchemaMismatch:
		var se *dbsync.SchemaError
		if errors.As(err, &se) {
			d.Schema, d.SchemaMore = se.Differences, se.More
		}
	}
	return d
}

var _ client.ChunkedTransport = (*Transport)(nil)

// PushChunk implements client.ChunkedTransport.
func (tr *Transport) PushChunk(ctx context.Context, call *client.Call, body []byte) (*protocol.PushChunkResponse, error) {
	node, srv, err := tr.authenticate(ctx, call, "push-chunk", "", body)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, refusal(ctx, fmt.Errorf("%w: empty chunk body", dbsync.ErrBadRequest))
	}
	resp, err := srv.StagePushChunk(ctx, node, body)
	if err != nil {
		return nil, refusal(ctx, err)
	}
	return resp, nil
}

// PushCommit implements client.ChunkedTransport.
func (tr *Transport) PushCommit(ctx context.Context, call *client.Call, req *protocol.PushCommit) (*protocol.PushResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	node, srv, err := tr.authenticate(ctx, call, "push-commit", "", body)
	if err != nil {
		return nil, err
	}
	var got protocol.PushCommit
	if err := decode(body, &got); err != nil {
		return nil, refusal(ctx, err)
	}
	resp, err := srv.CommitPush(ctx, node, &got)
	if err != nil {
		return nil, refusal(ctx, err)
	}
	return resp, nil
}

// PushStatus implements client.ChunkedTransport.
func (tr *Transport) PushStatus(ctx context.Context, call *client.Call, pushID string) (*protocol.PushChunkStatus, error) {
	node, srv, err := tr.authenticate(ctx, call, "push-status", url.Values{"push_id": {pushID}}.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := srv.ChunkStatus(ctx, node, pushID)
	if err != nil {
		return nil, refusal(ctx, err)
	}
	return resp, nil
}

var _ client.WatchTransport = (*Transport)(nil)

// Watch implements client.WatchTransport.
func (tr *Transport) Watch(ctx context.Context, call *client.Call, req *protocol.WatchRequest) (*protocol.WatchResponse, error) {
	query := req.Values().Encode()
	node, srv, err := tr.authenticate(ctx, call, "watch", query, nil)
	if err != nil {
		return nil, err
	}
	values, _ := url.ParseQuery(query)
	got, err := protocol.ParseWatch(values)
	if err != nil {
		return nil, refusal(ctx, err)
	}
	resp, err := srv.Watch(ctx, node, got, tr.WatchWait)
	if err != nil {
		return nil, refusal(ctx, err)
	}
	return resp, nil
}

package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/protocol"
)

// Transport carries the client's procedures to a server: one method per
// procedure of docs/protocol.md. The default, when Config.Transport is
// nil, is an [HTTPTransport] to Config.URL.
//
// The Client decides what to send and what an answer means; a Transport
// only carries requests and answers. It reports a refusal by the server as
// an error that errors.Is matches to dbsync's sentinel of the refusal's
// code (a *dbsync.ServerError does that), a unique conflict as a
// *dbsync.UniqueConstraintError, and a failure after which the outcome is
// unknown (the request may or may not have reached the server) as an
// error wrapping dbsync.ErrNetwork. It does not retry: the Client knows
// which procedures are safe to resend and how. A method that returns no
// answer (a nil pointer or stream) and no error, here or in the optional
// interfaces (ChunkedTransport, WatchTransport, WatchPullTransport), fails
// the call with an error wrapping dbsync.ErrBadResponse.
type Transport interface {
	// Register registers a new node. The request is not signed (call has
	// no node); credentials are the application's, for the server's
	// AuthorizeRegister hook (RegisterOptions.Credentials).
	Register(ctx context.Context, call *Call, credentials string, req *protocol.RegisterRequest) (*protocol.RegisterResponse, error)
	// Push sends body, the JSON of a protocol.PushRequest: the Client
	// encodes it once, in the transaction that records the push, and
	// resends the same bytes when the answer is lost.
	Push(ctx context.Context, call *Call, body []byte) (*protocol.PushResponse, error)
	// Pull and Repair return the answer as it arrives: a stream of
	// protocol message lines (docs/protocol.md), which the caller reads to
	// its end and closes. A failure before the first line is an error;
	// after it, the stream ends with an error line instead of its end line.
	// The caller may close the stream while a Read waits (a pull whose
	// apply failed gives up the rest): Close must then end that Read, as
	// an HTTP response body's or an io.Pipe's does.
	Pull(ctx context.Context, call *Call, req *protocol.PullRequest) (io.ReadCloser, error)
	Repair(ctx context.Context, call *Call) (io.ReadCloser, error)
	// Query reads one page of rows of the server's database.
	Query(ctx context.Context, call *Call, req *protocol.QueryRequest) (*protocol.QueryResponse, error)
}

// Call is what a request carries besides its own arguments: the schema the
// node tracks and the node that signs it (see protocol.Signed).
type Call struct {
	// Schema is the fingerprint of the node's tracked tables
	// (dbsync.Registry.Fingerprint), and Tables the schema itself, in the
	// text form of protocol.NodeSchema. A server serves a node whose
	// schema lacks some of its tables or columns (server.Server.ForSchema) and
	// refuses any other difference with dbsync.ErrSchemaMismatch (a
	// *dbsync.SchemaError naming the differences).
	Schema string
	Tables string
	// Nullable is the nullability of the node's columns whose field can
	// be nil, in the text form of protocol.Nullable: the server refuses a
	// difference a pull or a push would fail on
	// (server.Server.CheckNullable).
	Nullable string
	// NodeID and Secret are the node's registration, which signs the
	// request; zero for Register.
	NodeID int64
	Secret string
	// Time is the request's timestamp (Config.Now), covered by the
	// signature.
	Time time.Time
}

// ChunkedTransport is a [Transport] that also carries chunked pushes
// (docs/protocol.md, "Chunked push"): a push too large for one request
// sent as bounded chunks the server stages, then committed as one push.
// The Client sends a push above Config.PushChunkOperations operations or
// Config.PushChunkBytes bytes in chunks when its Transport implements this
// interface, and in one request otherwise. [HTTPTransport] implements it.
//
// It is a separate interface so that a Transport written for an earlier
// version keeps working (with single-request pushes). A wrapper around a
// ChunkedTransport must implement these methods too, or its pushes are
// sent whole.
type ChunkedTransport interface {
	Transport
	// PushChunk sends body, the JSON of a protocol.PushChunk, which the
	// Client encodes from its log and resends unchanged when the answer
	// is lost.
	PushChunk(ctx context.Context, call *Call, body []byte) (*protocol.PushChunkResponse, error)
	// PushCommit has the server apply the staged chunks as one push.
	PushCommit(ctx context.Context, call *Call, req *protocol.PushCommit) (*protocol.PushResponse, error)
	// PushStatus asks which chunks of a push the server holds.
	PushStatus(ctx context.Context, call *Call, pushID string) (*protocol.PushChunkStatus, error)
}

// transport is the client's side of its Transport: one method per
// procedure, each calling the Transport's and refusing an answer that is
// neither an answer nor an error (a nil answer with a nil error, which a
// Transport may return by mistake) as dbsync.ErrBadResponse, so that no
// caller dereferences a nil answer. It is the only way the client calls
// its Transport. The optional interfaces the Transport implements are
// its fields (nil when it does not).
type transport struct {
	tr        Transport
	chunked   ChunkedTransport
	watch     WatchTransport
	watchPull WatchPullTransport
}

func newTransport(tr Transport) transport {
	t := transport{tr: tr}
	t.chunked, _ = tr.(ChunkedTransport)
	t.watch, _ = tr.(WatchTransport)
	t.watchPull, _ = tr.(WatchPullTransport)
	return t
}

// errNoAnswer is the error of a procedure answered (nil, nil).
func errNoAnswer(proc string) error {
	return fmt.Errorf("%w: the transport's %s returned neither an answer nor an error", dbsync.ErrBadResponse, proc)
}

// answered refuses a nil answer that comes without an error.
func answered[T any](proc string, v *T, err error) (*T, error) {
	if err == nil && v == nil {
		return nil, errNoAnswer(proc)
	}
	return v, err
}

// streamed refuses a nil stream that comes without an error, and closes
// one that comes with an error (the client reads no stream then: left
// open, it would hold its connection).
func streamed(proc string, s io.ReadCloser, err error) (io.ReadCloser, error) {
	if err == nil && s == nil {
		return nil, errNoAnswer(proc)
	}
	if err != nil && s != nil {
		_ = s.Close()
		return nil, err
	}
	return s, err
}

func (t transport) Register(ctx context.Context, call *Call, credentials string, req *protocol.RegisterRequest) (*protocol.RegisterResponse, error) {
	out, err := t.tr.Register(ctx, call, credentials, req)
	return answered("Register", out, err)
}

func (t transport) Push(ctx context.Context, call *Call, body []byte) (*protocol.PushResponse, error) {
	out, err := t.tr.Push(ctx, call, body)
	return answered("Push", out, err)
}

func (t transport) Pull(ctx context.Context, call *Call, req *protocol.PullRequest) (io.ReadCloser, error) {
	s, err := t.tr.Pull(ctx, call, req)
	return streamed("Pull", s, err)
}

func (t transport) Repair(ctx context.Context, call *Call) (io.ReadCloser, error) {
	s, err := t.tr.Repair(ctx, call)
	return streamed("Repair", s, err)
}

func (t transport) Query(ctx context.Context, call *Call, req *protocol.QueryRequest) (*protocol.QueryResponse, error) {
	out, err := t.tr.Query(ctx, call, req)
	return answered("Query", out, err)
}

// errNotChunked is what the ChunkedTransport methods return for a
// Transport that is not one (the client checks t.chunked first).
var errNotChunked = errors.New("client: the transport is not a ChunkedTransport")

func (t transport) PushChunk(ctx context.Context, call *Call, body []byte) (*protocol.PushChunkResponse, error) {
	if t.chunked == nil {
		return nil, errNotChunked
	}
	out, err := t.chunked.PushChunk(ctx, call, body)
	return answered("PushChunk", out, err)
}

func (t transport) PushCommit(ctx context.Context, call *Call, req *protocol.PushCommit) (*protocol.PushResponse, error) {
	if t.chunked == nil {
		return nil, errNotChunked
	}
	out, err := t.chunked.PushCommit(ctx, call, req)
	return answered("PushCommit", out, err)
}

func (t transport) PushStatus(ctx context.Context, call *Call, pushID string) (*protocol.PushChunkStatus, error) {
	if t.chunked == nil {
		return nil, errNotChunked
	}
	out, err := t.chunked.PushStatus(ctx, call, pushID)
	return answered("PushStatus", out, err)
}

func (t transport) Watch(ctx context.Context, call *Call, req *protocol.WatchRequest) (*protocol.WatchResponse, error) {
	if t.watch == nil {
		return nil, ErrNoWatch
	}
	out, err := t.watch.Watch(ctx, call, req)
	return answered("Watch", out, err)
}

// WatchPull calls the WatchPullTransport's WatchPull; a stream, when
// there is one, is the answer.
func (t transport) WatchPull(ctx context.Context, call *Call, req *protocol.WatchRequest) (*protocol.WatchResponse, io.ReadCloser, error) {
	if t.watchPull == nil {
		return nil, nil, ErrNoWatch
	}
	out, s, err := t.watchPull.WatchPull(ctx, call, req)
	if err == nil && out == nil && s == nil {
		return nil, nil, errNoAnswer("WatchPull")
	}
	if err != nil && s != nil {
		_ = s.Close()
		return out, nil, err
	}
	return out, s, err
}

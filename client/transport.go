package client

import (
	"context"
	"io"
	"time"

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
// which procedures are safe to resend and how.
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

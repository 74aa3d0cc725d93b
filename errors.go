package dbsync

import (
	"errors"
	"fmt"
	"time"

	"github.com/go-dbsync/dbsync/internal/wire"
	"github.com/go-dbsync/dbsync/protocol"
)

// Errors. Each one has a stable code used on the wire (see [Code]); a
// client turns an error response back into the same error, so callers test
// with errors.Is on either side of the connection.
var (
	// ErrInvalidModel is returned by [Track] for a model dbsync cannot track,
	// and by oplog.Install (so client.New and server.New) and peer.New for a
	// model its table cannot serve as it is: a generated column, a key unique
	// only under DEFERRABLE constraints, a json column whose field's values
	// are not JSON (*ColumnTypeError).
	ErrInvalidModel = errors.New("dbsync: invalid model")

	// ErrBadRequest: a request or message is malformed (bad JSON, wrong
	// types, missing fields). Nothing was written.
	ErrBadRequest = wire.ErrBadRequest
	// ErrUnknownTable: a table name from the wire is not tracked.
	ErrUnknownTable = wire.ErrUnknownTable
	// ErrUnknownColumn: a column name from the wire is not a column of the
	// tracked table.
	ErrUnknownColumn = wire.ErrUnknownColumn
	// ErrHeldKeysNeeded: a pull from a server with scopes (partial sync)
	// did not list the rows the node holds (protocol.PullRequest.Held).
	// The client asks again with them by itself. Nothing was written.
	ErrHeldKeysNeeded = fmt.Errorf("%w: held keys needed", wire.ErrBadRequest)
	// ErrTooLarge: a request body exceeds the server's limit, or a line
	// of a pull or repair answer would exceed protocol.MaxLineBytes (the
	// stream then ends with an error line), or (on the node, never on
	// the wire) a pull, repair or reset answer exceeds
	// client.Config.MaxDownloadBytes, or the rows client.QueryAll collects
	// exceed client.Config.MaxQueryBytes.
	ErrTooLarge = errors.New("dbsync: request too large")
	// ErrBusy: the server cannot take the request now; nothing was
	// written. It holds as many request bodies as its budgets allow
	// (handlers.Config.PreauthMemory and PreauthDisk for unauthenticated
	// ones, BodyMemory for authenticated ones) or as many watch requests
	// (MaxWatchers, MaxWatchersPerNode), or a watch request finds it
	// closed (server.ErrClosed), or (a SQLite server) another writer held
	// the database past its busy timeout, or (PostgreSQL) the server's
	// lock_timeout or statement_timeout cut a statement, or its deadlock
	// detector failed the request's transaction, or lost its
	// connection to the database or could not make one (PostgreSQL down,
	// restarting, failing over, out of connection slots: then a request whose connection was lost
	// in its COMMIT may have been applied, as after any 5xx; a push sent
	// again is answered with its version); a stream's Serve runs its most
	// sessions (stream.Config.MaxSessions). Retry later: over HTTP, after
	// the delay of the Retry-After header.
	ErrBusy = errors.New("dbsync: server busy")
	// ErrTimeout: the request's body arrived more slowly than the server's
	// minimum rate (handlers.Config.Deadlines) and was cut; nothing was
	// written. Over HTTP: 408.
	ErrTimeout = errors.New("dbsync: request timeout")

	// ErrUnauthorized: a request lacks a valid signature, or its timestamp
	// is outside the allowed window.
	ErrUnauthorized = errors.New("dbsync: unauthorized")
	// ErrReplay: a signed request was seen before (same node and nonce).
	ErrReplay = fmt.Errorf("%w: replayed request", ErrUnauthorized)
	// ErrUnknownNode: the node id of a request is not registered on the
	// server.
	//
	// Deprecated: servers answer an unknown node as a wrong signature
	// (ErrUnauthorized), so node ids cannot be probed; it is kept so that
	// the unknown_node answer of older servers still decodes.
	ErrUnknownNode = fmt.Errorf("%w: unknown node", ErrUnauthorized)
	// ErrForbidden: the server's register hook refused the registration.
	ErrForbidden = errors.New("dbsync: forbidden")
	// ErrRateLimited: the caller sent too many requests of a kind (over
	// HTTP: 429 with Retry-After); try again later.
	ErrRateLimited = errors.New("dbsync: rate limited")

	// ErrNotRegistered is returned by the client's Sync, Push, Pull,
	// Repair, Query and Watch (and NodeID, UserID) before Register or
	// RegisterWith has succeeded.
	ErrNotRegistered = errors.New("dbsync: node not registered (call the client's Register or RegisterWith first)")

	// ErrNodeInUse is returned by the procedures of a client.Client
	// (Sync, Push, Pull, Repair, Reset, Register, DiscardPending,
	// Migrate, Watch) once another Client was created on the same node
	// database, in this process or another: the latest one syncs the
	// node. Two Clients syncing one node database would settle one push
	// attempt twice, and one's pull would merge the operations of the
	// other's push in flight: the node and the server would diverge.
	ErrNodeInUse = errors.New("dbsync: another client.Client was created on this node database since this one (in this process or another); the latest one syncs the node")

	// ErrPushRejected: the server refused a push. Nothing was applied.
	// A push refused for rows only the application can settle is not
	// wrapped in it: a *UniqueConstraintError (409 unique_conflict) or a
	// *ScopeError (403 out_of_scope), found with errors.As (Code tells
	// every refusal apart).
	ErrPushRejected = errors.New("dbsync: push rejected")
	// ErrPullNeeded: the push was rejected because the node does not hold
	// the server's latest version and the push cannot be rebased on the
	// versions it lacks (another node changed one of its rows, or the
	// server is fast-forward only); pull (and merge), then push again. It
	// wraps ErrPushRejected.
	ErrPullNeeded = fmt.Errorf("%w: pull needed", ErrPushRejected)
	// ErrRepairNeeded: the node claims a version the server does not have
	// (the server database was replaced or restored from a backup; a trim
	// keeps the latest version: see ErrResetRequired), or the node's
	// database is older than its own pushes (restored from a backup, or a
	// copy: docs/protocol.md "Restored nodes"); repair the node. It
	// wraps ErrPushRejected. A pull refused for it is ErrRepairNeeded too,
	// but its message reads "dbsync: repair needed", not "push rejected".
	ErrRepairNeeded = fmt.Errorf("%w: repair needed", ErrPushRejected)
	// ErrResetRequired: the node's version is below the oldest version the
	// server still keeps a log for (server.Server.Trim dropped the
	// versions it would pull), so it can neither pull nor push on top of
	// it. The client's Sync resets the node by itself (client.Client.Reset): it
	// downloads the server's rows and merges its unpushed changes into
	// them (merge.md, "Reset"). It does not wrap ErrPushRejected: a pull
	// gets it too. Over HTTP: 410.
	ErrResetRequired = errors.New("dbsync: reset required")
	// ErrPushAbandoned: a push id the node itself gave up on (in a pull) was
	// sent again. It wraps ErrPushRejected.
	ErrPushAbandoned = fmt.Errorf("%w: push abandoned", ErrPushRejected)
	// ErrPushIncomplete: a chunked push's commit names chunks the server
	// does not hold, or holds with other digests. Nothing was applied; ask
	// which chunks it holds, send the others, and commit again. It does
	// not wrap ErrPushRejected: the push may still be applied. From a
	// peer (peerhttp): a part of an apply body sent in parts that does not
	// follow the parts the peer staged (it dropped them); nothing was
	// applied, and the next sync sends the body again.
	ErrPushIncomplete = errors.New("dbsync: push incomplete")

	// ErrForeignKey: rows would be left referencing rows that are missing,
	// and nothing was applied. On a node: a pull, repair or reset whose
	// rows disagree with the node's beyond what a merge settles (rows
	// changed behind dbsync's back on either side); the message names the
	// rows, and Repair gives the node the server's rows. From the server: a
	// push refused for it; the error then wraps ErrPushRejected too (over
	// HTTP: 409 foreign_key, which servers before it answered
	// push_rejected). A peer's apply refused for it wraps it and
	// peer.ErrConstraint.
	ErrForeignKey = wire.ErrForeignKey

	// ErrSchemaMismatch: the two nodes track different schemas (tables,
	// columns or key kinds); see Registry.Fingerprint.
	ErrSchemaMismatch = errors.New("dbsync: schema mismatch")
	// ErrProtocolVersion: the peer speaks another protocol version.
	ErrProtocolVersion = errors.New("dbsync: unsupported protocol version")

	// ErrPendingChanges: a repair would discard local changes that were
	// never pushed; push them first or repair with Force. A pull or a
	// reset refuses with it, nothing applied, when the server deleted a
	// row of a table the node does not push (PullOnly) that the node's
	// unpushed rows reference (merge.md D1): it then wraps a *ScopeError
	// naming those rows, to point at other rows or give up with the
	// client's DiscardPending.
	ErrPendingChanges = errors.New("dbsync: local changes not pushed")
	// ErrLogBusy: a client on a PostgreSQL node waited more than 10 s for
	// the application's transactions that wrote (or locked rows of)
	// tracked tables to end, and gave up: preparing a push (it must hold
	// every operation logged before it; nothing was sent), or merging a
	// pull or a reset (a local write committed meanwhile would be unseen
	// and overwritten; nothing was applied). Sync again once they end. It
	// is a local error, never on the wire.
	ErrLogBusy = errors.New("dbsync: the node's log is busy")

	// ErrDatabaseSettings: a SQLite database was opened without a setting
	// capture relies on, and nothing was installed: foreign key
	// enforcement (_pragma=foreign_keys(1) in the DSN) where tracked
	// tables reference each other, or recursive triggers
	// (_pragma=recursive_triggers(1)), without which INSERT OR REPLACE
	// and REPLACE delete rows without firing their delete triggers (the
	// delete is never captured). It is a local error, never on the wire.
	ErrDatabaseSettings = errors.New("dbsync: database settings")

	// ErrBadResponse: the server's answer could not be understood (not
	// JSON, missing fields, stream cut short).
	ErrBadResponse = errors.New("dbsync: bad response")
	// ErrNetwork: the request could not be sent or its answer not received.
	// The operation may or may not have happened on the server; pushes are
	// safe to retry.
	ErrNetwork = errors.New("dbsync: network error")

	// ErrInternal: the server failed for a reason of its own.
	ErrInternal = errors.New("dbsync: internal server error")
)

// errPushForeignKey is what a client makes of a foreign_key answer: a push
// refused (ErrPushRejected) for ErrForeignKey.
var errPushForeignKey = fmt.Errorf("%w: %w", ErrPushRejected, ErrForeignKey)

// UniqueConstraintError reports unique-value collisions that the merge (or
// the server, for a push) cannot resolve by itself, as python-sync-db's
// UniqueConstraintError: both sides gave the same unique value to different
// rows. The application changes the local rows named by Entries and syncs
// again. Nothing was written. It is [protocol.UniqueConstraintError]: find
// it with errors.As under either name.
type UniqueConstraintError = protocol.UniqueConstraintError

// ScopeError is [protocol.ScopeError]: rows outside the node's scope
// (partial sync), a push refused for them or local changes a pull will not
// discard. Find it with errors.As under either name.
type ScopeError = protocol.ScopeError

// ValueError is [protocol.ValueError]: it names the row and column of a
// value dbsync cannot carry as it is (text that is not valid UTF-8, a NaN,
// a time outside years 1–9999 (UTC), JSON that is not valid). Find it with
// errors.As under either name.
type ValueError = protocol.ValueError

// ColumnTypeError is returned by server.New, client.New and peer.New
// (errors.Is(err, ErrInvalidModel) holds) for a tracked column whose type
// in the database cannot hold the values of its field: on PostgreSQL, a
// json or jsonb column for a field whose values are not JSON text
// (numbers, booleans, times, UUIDs, bytes, or a database/sql null type
// of text). bun's CreateTable declares jsonb for a struct type it does
// not know, sql.NullInt32, sql.NullInt16, sql.NullByte and sql.Null[T]
// among them; bun then writes such a field's value as a literal of its
// own type, which the column refuses (only NULL is taken): the
// application's own writes fail there, and so would the server's and the
// nodes' writes of the rows they receive. Declare the column with the
// type of its values: a bun:"type:…" tag on the field (Want) and the
// column altered to it.
type ColumnTypeError struct {
	Table, Column string
	// GoType is the field's Go type, as sql.NullInt32.
	GoType string
	// DBType is the column's type in the database: json or jsonb.
	DBType string
	// Want is a type that holds the field's values, as integer.
	Want string
}

// Error implements error: it names the table, column and types, and
// says what to change.
func (e *ColumnTypeError) Error() string {
	return fmt.Sprintf("%v: table %s, column %s (Go type %s): the column is %s, which takes only JSON, but bun writes the field's values as SQL values of their own type, which it refuses (bun's CreateTable declares %s for a struct type it does not know); declare the column %s: tag the field bun:\"%s,type:%s\" and ALTER TABLE %s ALTER COLUMN %s TYPE %s USING (%s #>> '{}')::%s",
		ErrInvalidModel, e.Table, e.Column, e.GoType, e.DBType, e.DBType, e.Want, e.Column, e.Want,
		e.Table, e.Column, e.Want, e.Column, e.Want)
}

// Unwrap returns ErrInvalidModel.
func (e *ColumnTypeError) Unwrap() error { return ErrInvalidModel }

// ClockError is a signed request refused because its timestamp is outside
// the server's window (server.Config.ClockSkew, default 5 minutes): the
// node's clock (client.Config.Now) is off. It wraps the refusal
// (errors.Is(err, ErrUnauthorized)). The answer carries the server's time,
// signed for the node and the request (protocol.ClockSignature): the Go
// client's HTTPTransport verifies it, corrects the timestamps it signs by
// the difference and sends the request again once, so an application
// sees a ClockError only when that fails.
type ClockError struct {
	// ServerTime is the server's clock when it refused the request.
	ServerTime time.Time
	// Salt and Signature: Signature is protocol.ClockSignature of
	// ServerTime and Salt (the answer's random digits) for the request's
	// node and nonce.
	Salt, Signature string
	// Err is the refusal.
	Err error
}

// Error implements error: the refusal's text.
func (e *ClockError) Error() string { return e.Err.Error() }

// Unwrap returns the refusal.
func (e *ClockError) Unwrap() error { return e.Err }

// ServerError is an error response from a dbsync server, as a client sees
// it. errors.Is(err, ErrPullNeeded) and friends work on it through Unwrap.
type ServerError struct {
	Status  int    // HTTP status
	Code    string // error code from the body
	Message string // human-readable message from the server
}

// Error implements error: the status, code and message.
func (e *ServerError) Error() string {
	return fmt.Sprintf("dbsync: server answered %d %s: %s", e.Status, e.Code, e.Message)
}

// Unwrap returns the sentinel error of the response's code.
func (e *ServerError) Unwrap() error { return ErrorForCode(e.Code) }

// codes is ordered from most to least specific: Code returns the first
// match.
var codes = []struct {
	code string
	err  error
}{
	{protocol.CodeUnknownTable, ErrUnknownTable},
	{protocol.CodeUnknownColumn, ErrUnknownColumn},
	{protocol.CodeHeldKeysNeeded, ErrHeldKeysNeeded},
	{protocol.CodeBadRequest, ErrBadRequest},
	{protocol.CodeTooLarge, ErrTooLarge},
	{protocol.CodeBusy, ErrBusy},
	{protocol.CodeTimeout, ErrTimeout},
	{protocol.CodeReplay, ErrReplay},
	{protocol.CodeUnknownNode, ErrUnknownNode},
	{protocol.CodeUnauthorized, ErrUnauthorized},
	{protocol.CodeForbidden, ErrForbidden},
	{protocol.CodeRateLimited, ErrRateLimited},
	{protocol.CodePullNeeded, ErrPullNeeded},
	{protocol.CodeRepairNeeded, ErrRepairNeeded},
	{protocol.CodeResetRequired, ErrResetRequired},
	{protocol.CodePushAbandoned, ErrPushAbandoned},
	{protocol.CodePushIncomplete, ErrPushIncomplete},
	{protocol.CodeForeignKey, errPushForeignKey},
	{protocol.CodePushRejected, ErrPushRejected},
	{protocol.CodeSchemaMismatch, ErrSchemaMismatch},
	{protocol.CodeProtocolVersion, ErrProtocolVersion},
}

// Code returns the wire code of an error (one of the protocol.Code*
// constants): the code of the most specific sentinel it wraps,
// protocol.CodeUniqueConflict for a [*UniqueConstraintError],
// protocol.CodeOutOfScope for a [*ScopeError], protocol.CodeForeignKey
// for a push refused for ErrForeignKey (wrapping both), or
// protocol.CodeInternal.
func Code(err error) string {
	var uc *UniqueConstraintError
	if errors.As(err, &uc) {
		return protocol.CodeUniqueConflict
	}
	var se *ScopeError
	if errors.As(err, &se) {
		return protocol.CodeOutOfScope
	}
	if errors.Is(err, ErrForeignKey) && errors.Is(err, ErrPushRejected) {
		return protocol.CodeForeignKey
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return protocol.CodeInternal
}

// ErrorForCode returns the sentinel error of a wire code; unknown codes give
// ErrInternal.
func ErrorForCode(code string) error {
	for _, c := range codes {
		if c.code == code {
			return c.err
		}
	}
	return ErrInternal
}

// RetryAfter returns how long the server asked the caller to wait before
// trying again, with the error it answered (over HTTP, the Retry-After
// header of a 429 or 503 answer: dbsync.ErrRateLimited, dbsync.ErrBusy),
// or 0 when it did not say. Client.Watch waits at least that long.
func RetryAfter(err error) time.Duration {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		return ra.RetryAfter()
	}
	return 0
}

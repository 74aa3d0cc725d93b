package dbsync

// Temporary aliases of the names moved to package protocol, so that the
// packages not yet rewritten compile unchanged. The rename pass
// (notes/rename.sh) rewrites their users and deletes this file. Every
// declaration here carries the marker "(removed by the rename pass)" that
// TestExportedNames skips.

import (
	"encoding/json"
	"net/url"
	"reflect"

	"github.com/go-dbsync/dbsync/protocol"
)

// Deprecated: use protocol.Operation (removed by the rename pass).
type Operation = protocol.Operation

// Deprecated: use protocol.Version (removed by the rename pass).
type Version = protocol.Version

// Deprecated: use protocol.Node (removed by the rename pass).
type Node = protocol.Node

// Deprecated: use protocol.RegisterRequest (removed by the rename pass).
type RegisterRequest = protocol.RegisterRequest

// Deprecated: use protocol.RegisterResponse (removed by the rename pass).
type RegisterResponse = protocol.RegisterResponse

// Deprecated: use protocol.Payload (removed by the rename pass).
type Payload = protocol.Payload

// Deprecated: use protocol.PushRequest (removed by the rename pass).
type PushRequest = protocol.PushRequest

// Deprecated: use protocol.PushResponse (removed by the rename pass).
type PushResponse = protocol.PushResponse

// Deprecated: use protocol.PullRequest (removed by the rename pass).
type PullRequest = protocol.PullRequest

// Deprecated: use protocol.PushStatus (removed by the rename pass).
type PushStatus = protocol.PushStatus

// Deprecated: use protocol.Message (removed by the rename pass).
type Message = protocol.Message

// Deprecated: use protocol.QueryRequest (removed by the rename pass).
type QueryRequest = protocol.QueryRequest

// Deprecated: use protocol.QueryResponse (removed by the rename pass).
type QueryResponse = protocol.QueryResponse

// Deprecated: use protocol.ErrorBody (removed by the rename pass).
type ErrorBody = protocol.ErrorBody

// Deprecated: use protocol.ErrorDetail (removed by the rename pass).
type ErrorDetail = protocol.ErrorDetail

// Deprecated: use protocol.Row (removed by the rename pass).
type Row = protocol.Row

// Deprecated: use protocol.Signed (removed by the rename pass).
type Signed = protocol.Signed

// Deprecated: use protocol.UniqueConstraintEntry (removed by the rename pass).
type UniqueConstraintEntry = protocol.UniqueConstraintEntry

// Deprecated: use protocol.KeyKind (removed by the rename pass).
type KeyKind = protocol.KeyKind

// Deprecated: use protocol.ForeignKey (removed by the rename pass).
type ForeignKey = protocol.ForeignKey

const (
	// Deprecated: use protocol.MsgHeader (removed by the rename pass).
	MsgHeader = protocol.MsgHeader
	// Deprecated: use protocol.MsgVersions (removed by the rename pass).
	MsgVersions = protocol.MsgVersions
	// Deprecated: use protocol.MsgChunk (removed by the rename pass).
	MsgChunk = protocol.MsgChunk
	// Deprecated: use protocol.MsgRows (removed by the rename pass).
	MsgRows = protocol.MsgRows
	// Deprecated: use protocol.MsgEnd (removed by the rename pass).
	MsgEnd = protocol.MsgEnd
	// Deprecated: use protocol.MsgError (removed by the rename pass).
	MsgError = protocol.MsgError
	// Deprecated: use protocol.HeaderProtocol (removed by the rename pass).
	HeaderProtocol = protocol.HeaderProtocol
	// Deprecated: use protocol.HeaderSchema (removed by the rename pass).
	HeaderSchema = protocol.HeaderSchema
	// Deprecated: use protocol.HeaderNode (removed by the rename pass).
	HeaderNode = protocol.HeaderNode
	// Deprecated: use protocol.HeaderTimestamp (removed by the rename pass).
	HeaderTimestamp = protocol.HeaderTimestamp
	// Deprecated: use protocol.HeaderNonce (removed by the rename pass).
	HeaderNonce = protocol.HeaderNonce
	// Deprecated: use protocol.HeaderSignature (removed by the rename pass).
	HeaderSignature = protocol.HeaderSignature
	// Deprecated: use protocol.ProtocolVersion (removed by the rename pass).
	ProtocolVersion = protocol.ProtocolVersion
	// Deprecated: use protocol.CodeBadRequest (removed by the rename pass).
	CodeBadRequest = protocol.CodeBadRequest
	// Deprecated: use protocol.CodeUnknownTable (removed by the rename pass).
	CodeUnknownTable = protocol.CodeUnknownTable
	// Deprecated: use protocol.CodeUnknownColumn (removed by the rename pass).
	CodeUnknownColumn = protocol.CodeUnknownColumn
	// Deprecated: use protocol.CodeTooLarge (removed by the rename pass).
	CodeTooLarge = protocol.CodeTooLarge
	// Deprecated: use protocol.CodeUnauthorized (removed by the rename pass).
	CodeUnauthorized = protocol.CodeUnauthorized
	// Deprecated: use protocol.CodeReplay (removed by the rename pass).
	CodeReplay = protocol.CodeReplay
	// Deprecated: use protocol.CodeUnknownNode (removed by the rename pass).
	CodeUnknownNode = protocol.CodeUnknownNode
	// Deprecated: use protocol.CodeForbidden (removed by the rename pass).
	CodeForbidden = protocol.CodeForbidden
	// Deprecated: use protocol.CodeRateLimited (removed by the rename pass).
	CodeRateLimited = protocol.CodeRateLimited
	// Deprecated: use protocol.CodePushRejected (removed by the rename pass).
	CodePushRejected = protocol.CodePushRejected
	// Deprecated: use protocol.CodePullNeeded (removed by the rename pass).
	CodePullNeeded = protocol.CodePullNeeded
	// Deprecated: use protocol.CodeRepairNeeded (removed by the rename pass).
	CodeRepairNeeded = protocol.CodeRepairNeeded
	// Deprecated: use protocol.CodePushAbandoned (removed by the rename pass).
	CodePushAbandoned = protocol.CodePushAbandoned
	// Deprecated: use protocol.CodeUniqueConflict (removed by the rename pass).
	CodeUniqueConflict = protocol.CodeUniqueConflict
	// Deprecated: use protocol.CodeSchemaMismatch (removed by the rename pass).
	CodeSchemaMismatch = protocol.CodeSchemaMismatch
	// Deprecated: use protocol.CodeProtocolVersion (removed by the rename pass).
	CodeProtocolVersion = protocol.CodeProtocolVersion
	// Deprecated: use protocol.CodeBusy (removed by the rename pass).
	CodeBusy = protocol.CodeBusy
	// Deprecated: use protocol.CodeTimeout (removed by the rename pass).
	CodeTimeout = protocol.CodeTimeout
	// Deprecated: use protocol.CodeInternal (removed by the rename pass).
	CodeInternal = protocol.CodeInternal
	// Deprecated: use protocol.KeyInt (removed by the rename pass).
	KeyInt = protocol.KeyInt
	// Deprecated: use protocol.KeyUUID (removed by the rename pass).
	KeyUUID = protocol.KeyUUID
	// Deprecated: use protocol.KeyText (removed by the rename pass).
	KeyText = protocol.KeyText
)

// Deprecated: use protocol.ParseQuery (removed by the rename pass).
func ParseQuery(v url.Values) (*protocol.QueryRequest, error) { return protocol.ParseQuery(v) }

// Deprecated: use protocol.DecodePushRequest (removed by the rename pass).
func DecodePushRequest(data []byte) (*protocol.PushRequest, error) {
	return protocol.DecodePushRequest(data)
}

// Deprecated: use protocol.AppendMessage (removed by the rename pass).
func AppendMessage(b []byte, m *protocol.Message) ([]byte, error) {
	return protocol.AppendMessage(b, m)
}

// Deprecated: use protocol.ParseMessage (removed by the rename pass).
func ParseMessage(line []byte) (*protocol.Message, error) { return protocol.ParseMessage(line) }

// Deprecated: use protocol.ParseRow (removed by the rename pass).
func ParseRow(data []byte) (protocol.Row, error) { return protocol.ParseRow(data) }

// Deprecated: use protocol.Key (removed by the rename pass).
func Key(v json.RawMessage) (string, bool) { return protocol.Key(v) }

// Deprecated: use protocol.NewSecret (removed by the rename pass).
func NewSecret() string { return protocol.NewSecret() }

// Deprecated: use protocol.NewNonce (removed by the rename pass).
func NewNonce() string { return protocol.NewNonce() }

// Deprecated: use protocol.ValidNonce (removed by the rename pass).
func ValidNonce(s string) bool { return protocol.ValidNonce(s) }

// Deprecated: use c.KeyOf(strct) (removed by the rename pass).
func ValueKey(c *Column, strct reflect.Value) string { return c.KeyOf(strct) }

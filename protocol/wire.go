package protocol

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-dbsync/dbsync/internal/wire"
)

// ProtocolVersion is the version of the HTTP+JSON protocol spoken by
// package client and package handlers (docs/protocol.md). Requests carry it in
// the X-Dbsync-Protocol header; a server refuses other versions.
const ProtocolVersion = 1

// Operation is one operation on the wire: which row of which table was
// inserted ("i"), updated ("u") or deleted ("d").
type Operation struct {
	Order     int64   `json:"order"`
	Table     string  `json:"table"`
	RowID     string  `json:"row_id"`
	Command   Command `json:"command"`
	VersionID *int64  `json:"version_id,omitempty"`
}

// Version is one version of the server's history.
type Version struct {
	VersionID int64     `json:"version_id"`
	NodeID    *int64    `json:"node_id"`
	Created   time.Time `json:"created"`
	// Token is the version's token (docs/protocol.md "Version
	// identity"): the node names the version by it with its number.
	// Empty for a version the server created before it drew tokens.
	Token string `json:"token,omitempty"`
}

// Node is a registered node as returned by register: the node id and the
// secret that signs its requests.
type Node struct {
	NodeID         int64     `json:"node_id"`
	Registered     time.Time `json:"registered"`
	RegistryUserID *string   `json:"registry_user_id"`
	Secret         string    `json:"secret"`
}

// RegisterRequest is the body of POST /register. ExtraData is handed to the
// server's register hook untouched.
type RegisterRequest struct {
	ExtraData json.RawMessage `json:"extra_data,omitempty"`
}

// RegisterResponse answers POST /register.
type RegisterResponse struct {
	Node Node `json:"node"`
}

// Payload holds row states by table name; each row is a JSON object (see
// [Row]).
type Payload map[string][]json.RawMessage

// PushRequest is the body of POST /push.
type PushRequest struct {
	// PushID identifies the push (a UUID chosen by the client). A retried
	// push with the same id is applied at most once.
	PushID string `json:"push_id"`
	// LatestVersionID is the push's base: the newest server version up to
	// which the node holds every version (nil for none). Based on the
	// server's latest, the push is applied on top of it; based on an older
	// version, it is rebased when no version since changed one of its rows
	// (docs/protocol.md, "Rebase").
	LatestVersionID *int64 `json:"latest_version_id"`
	// LatestVersionToken is the base's token (Version.Token), when the
	// node knows it: a server that holds the base with another token lost
	// it and numbered a new version as it (restored from a backup), and
	// answers repair_needed (docs/protocol.md "Version identity"). Empty:
	// the base is known by number only, as before tokens.
	LatestVersionToken string `json:"latest_version_token,omitempty"`
	// OwnVersionID is the greatest version the node's own pushes created
	// that the node has settled (nil: not known, as before it). A server
	// holding a newer version of that node's, past the base too, answers
	// repair_needed: the node's database is older than its own pushes
	// (restored from a backup), which it would push again
	// (docs/protocol.md "Restored nodes").
	OwnVersionID *int64 `json:"own_version_id,omitempty"`
	// Operations are the node's pending operations, oldest first.
	Operations []Operation `json:"operations"`
	// Payload carries the current state of every row inserted or updated.
	Payload Payload `json:"payload"`
}

// PushResponse answers an accepted push.
type PushResponse struct {
	NewVersionID int64 `json:"new_version_id"`
	// NewVersionToken is that version's token (Version.Token): the node
	// names the version by it when it holds it. Empty for an empty push,
	// and for a version created before tokens.
	NewVersionToken string `json:"new_version_token,omitempty"`
	// Duplicate is true when the push id had already been applied; the
	// version is the one it created then.
	Duplicate bool `json:"duplicate,omitempty"`
	// Empty is true when the push had no operations: nothing was created
	// and NewVersionID is the server's latest version (0 for none).
	Empty bool `json:"empty,omitempty"`
}

// PullRequest is the body of POST /pull.
type PullRequest struct {
	// LatestVersionID is the newest server version up to which the node
	// holds every version. The operations of the node's own versions after
	// it (rebased pushes) are left out of the answer.
	LatestVersionID *int64 `json:"latest_version_id"`
	// LatestVersionToken is that version's token, when the node knows it
	// (as PushRequest.LatestVersionToken): a server holding the version
	// with another token answers repair_needed.
	LatestVersionToken string `json:"latest_version_token,omitempty"`
	// PushID names a push whose answer the node never received. The server
	// reports whether it was applied and, if it was not, makes sure it never
	// will be.
	PushID string `json:"push_id,omitempty"`
	// ChunkSize bounds the operations per chunk line (server default when
	// zero; the server caps it).
	ChunkSize int `json:"chunk_size,omitempty"`
	// Deleted lists, by table, the rows the node deleted and has not
	// pushed. Chunks carry, besides the rows of inserts and updates, the
	// rows those reference that are in this list (merge.md D2). Absent
	// (null): every referenced row is sent, as python-sync-db did.
	Deleted map[string][]string `json:"deleted"`
	// Held lists, for each table a scoped server named in a pull header
	// (Message.Scoped), the keys of the rows the node holds as the server
	// sent them: its rows, less its unpushed inserts, plus the rows it
	// deleted and has not pushed. The server answers the difference with
	// its scope (scope_out, scope_in lines). Absent (null) on a scoped
	// server: refused with CodeHeldKeysNeeded, the node asks again with
	// the keys of every pulled table. Without a table the server holds
	// the node to in part (its rules changed since the header the node
	// read): refused so too when HeldRetry is set; else the node counts
	// as holding none of its rows, and its next pull lists them. A table
	// a server with scopes does not hold nodes to in part (its rules made
	// it global since the header the node read, or the node lists every
	// pulled table) is compared with all its rows: the rows the node
	// lacks come as scope_in lines, none leaves, and the header does not
	// name the table, so the node lists it no more. A server without
	// scopes ignores Held.
	Held map[string][]string `json:"held,omitempty"`
	// HeldRetry says the node, refused CodeHeldKeysNeeded for a Held
	// without a table, asks again at once with the keys of every pulled
	// table (the Go client does from the release that added it; earlier
	// ones asked again only for an absent Held, and would be refused the
	// same until their process restarted).
	HeldRetry bool `json:"held_retry,omitempty"`
	// Backfill asks, after an upgrade of the node's own schema, for the
	// columns and tables it gained since its last pull: the text form of
	// a protocol.NodeSchema naming, per table, its key and those columns
	// (every column for a table new to the node). The answer carries,
	// after the chunks, backfill lines with those columns of every row of
	// those tables the node may read (docs/protocol.md "Schema changes").
	Backfill string `json:"backfill,omitempty"`
}

// PushStatus tells a pulling node what became of the push it asked about.
type PushStatus struct {
	PushID string `json:"push_id"`
	// VersionID is the version the push created, or nil if it was never
	// applied (and now never will be).
	VersionID *int64 `json:"version_id"`
}

// Message types of the pull and repair streams.
const (
	MsgHeader   = "header"
	MsgVersions = "versions"
	MsgChunk    = "chunk"
	MsgRows     = "rows"
	MsgEnd      = "end"
	// MsgScopeOut lists keys of rows that left the node's scope: the node
	// deletes them without logging (children before parents).
	MsgScopeOut = "scope_out"
	// MsgScopeIn carries rows that entered the node's scope: the node
	// writes them without logging (parents before children).
	MsgScopeIn = "scope_in"
	// MsgBackfill carries, for a pull that asked for a backfill, rows of
	// one table with only their key and the columns asked for: the node
	// writes those columns of the rows it holds, without logging (rows of
	// a table new to the node are written whole).
	MsgBackfill = "backfill"
	// MsgError ends a stream that failed after it started; the line's
	// Error says why.
	MsgError = "error"
)

// MaxLineBytes bounds one line of a pull or repair response, its newline
// not counted. A server fails the stream (an error line) rather than send
// a longer line, and a client refuses one. Lines are bounded in rows
// (server.MaxChunkSize), not in bytes, so the bound is far above what a
// chunk of ordinary rows takes; a client cannot otherwise tell a line that
// never ends from one that is merely long, and would read it all into
// memory.
const MaxLineBytes = 256 << 20

// Message is one line of a pull or repair response, a stream of
// newline-delimited JSON objects (application/x-ndjson):
//
//	pull:   header, versions*, chunk*, backfill*, scope_out*, scope_in*, end
//	repair: header, rows*, end
//
// A stream without its end line was cut short and must be discarded.
type Message struct {
	Type string `json:"type"`

	// header
	LatestVersionID *int64 `json:"latest_version_id,omitempty"`
	// LatestVersionToken is the latest version's token (Version.Token;
	// empty for a version created before tokens): a repair's node, which
	// holds that version afterwards, names it by it.
	LatestVersionToken string      `json:"latest_version_token,omitempty"`
	Push               *PushStatus `json:"push,omitempty"`
	// NodeVersionID is, in a pull's header, the greatest version the
	// requesting node's own pushes created after its latest_version_id
	// (absent: none), and in a repair's, the greatest of all its own: a
	// node that knows of no such version (it settled none that new) is
	// older than its own pushes, restored from a backup (docs/protocol.md
	// "Restored nodes").
	NodeVersionID *int64   `json:"node_version_id,omitempty"`
	Tables        []string `json:"tables,omitempty"`
	// MaxKeys gives, for each pulled table with integer keys, the greatest
	// key the server has used. A node renumbers its own unpushed inserts
	// at or below it before merging (merge.md, rule K1).
	MaxKeys map[string]int64 `json:"max_keys,omitempty"`
	// Scoped names, on a server with scopes (partial sync), the tables
	// whose rows the node holds in part; the node sends their held keys in
	// its next pull (PullRequest.Held).
	Scoped []string `json:"scoped,omitempty"`
	// HeldRead says, on a server with scopes, that it read the request's
	// held keys (PullRequest.Held): of a table they list that Scoped no
	// longer names, the rows the node lacks come as scope_in lines. A
	// server without scopes ignores held keys: a node that held a table
	// in part asks for it whole (a backfill) instead.
	HeldRead bool `json:"held_read,omitempty"`

	// versions
	Versions []Version `json:"versions,omitempty"`

	// chunk: compressed operations and the rows they need (the rows of
	// inserts and updates, and the rows those reference)
	Operations []Operation `json:"operations,omitempty"`
	Payload    Payload     `json:"payload,omitempty"`

	// rows (repair, scope_in, backfill), keys (scope_out)
	Table string            `json:"table,omitempty"`
	Rows  []json.RawMessage `json:"rows,omitempty"`
	Keys  []string          `json:"keys,omitempty"`

	// end: totals, for a consistency check; on a scoped server also the
	// keys of the scope_out lines and the rows of the scope_in lines
	OperationCount int64 `json:"operation_count,omitempty"`
	RowCount       int64 `json:"row_count,omitempty"`
	BackfillCount  int64 `json:"backfill_count,omitempty"`
	ScopeOutCount  int64 `json:"scope_out_count,omitempty"`
	ScopeInCount   int64 `json:"scope_in_count,omitempty"`

	// error
	Error *ErrorDetail `json:"error,omitempty"`
}

// QueryRequest is a remote read of one tracked table (GET /query).
type QueryRequest struct {
	Table string
	// Equal filters: column = value. Each value is the column's wire form
	// (quotes optional where that is a JSON string); null means IS NULL.
	// See docs/protocol.md, "GET BASE/query".
	Equal map[string]string
	// After continues a previous page: rows with a primary key greater
	// than After.
	After string
	// AfterSet says After is given even when empty: the empty text is a
	// text key like any other (ParseQuery sets it for a parameter after).
	AfterSet bool
	// Limit bounds the rows returned (server default and maximum apply).
	Limit int
}

// QueryResponse answers GET /query.
type QueryResponse struct {
	Rows []json.RawMessage `json:"rows"`
	// Next is the After value of the next page, empty when there is none.
	Next string
	// More says a next page exists, also when Next is the empty text key
	// (the JSON member next is present exactly then).
	More bool
}

// queryResponseJSON is QueryResponse's JSON: next present when there is
// a next page, whatever its key.
type queryResponseJSON struct {
	Rows []json.RawMessage `json:"rows"`
	Next *string           `json:"next,omitempty"`
}

// MarshalJSON writes next when r.More or r.Next is set.
func (r QueryResponse) MarshalJSON() ([]byte, error) {
	w := queryResponseJSON{Rows: r.Rows}
	if r.More || r.Next != "" {
		w.Next = &r.Next
	}
	return json.Marshal(&w)
}

// UnmarshalJSON reads next, setting More when the member is present.
func (r *QueryResponse) UnmarshalJSON(data []byte) error {
	var w queryResponseJSON
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	*r = QueryResponse{Rows: w.Rows, More: w.Next != nil}
	if w.Next != nil {
		r.Next = *w.Next
	}
	return nil
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail describes an error response.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// PullNeeded is true on a push rejected because the node is behind.
	PullNeeded bool `json:"pull_needed,omitempty"`
	// Entries lists the rows of a unique_conflict.
	Entries []UniqueConstraintEntry `json:"entries,omitempty"`
	// Rows lists the rows of an out_of_scope refusal.
	Rows []ScopeEntry `json:"rows,omitempty"`
	// Schema lists the differences of a schema_mismatch between the
	// node's announced schema and the server's.
	Schema []SchemaDifference `json:"schema,omitempty"`
	// SchemaMore counts the differences found beyond those Schema lists
	// (the server lists at most 32).
	SchemaMore int `json:"schema_more,omitempty"`
	// ServerTime, in an unauthorized answer to a signed request whose
	// timestamp is outside the server's window, is the server's clock
	// (Unix milliseconds), ServerTimeSalt random digits of the answer's,
	// and ServerTimeSignature their ClockSignature for the request's node
	// and nonce (random digits when the node is not registered), so that
	// a node whose clock is off can correct it.
	ServerTime          int64  `json:"server_time,omitempty"`
	ServerTimeSalt      string `json:"server_time_salt,omitempty"`
	ServerTimeSignature string `json:"server_time_signature,omitempty"`
}

// Validate checks a push request's shape against the tracked tables: known
// tables, valid commands and keys (made canonical), and at most one
// operation per row (a node sends each row's compressed operation: its
// state since the version it holds). The server then checks the payload
// against the operations (a row for every insert and update, none else).
func (p *PushRequest) Validate(reg Schema) error {
	if p.PushID == "" {
		return fmt.Errorf("%w: push_id is required", wire.ErrBadRequest)
	}
	type rowRef struct{ table, key string }
	seen := make(map[rowRef]int64, len(p.Operations))
	for i := range p.Operations {
		op := &p.Operations[i]
		t := reg.TableSchema(op.Table)
		if t == nil {
			return fmt.Errorf("%w: %q", wire.ErrUnknownTable, op.Table)
		}
		if !op.Command.Valid() {
			return fmt.Errorf("%w: operation %d has command %q", wire.ErrBadRequest, op.Order, op.Command)
		}
		key, err := t.CanonicalKey(op.RowID)
		if err != nil {
			return err
		}
		op.RowID = key
		if first, dup := seen[rowRef{op.Table, key}]; dup {
			return fmt.Errorf("%w: operations %d and %d both name %s %s: a push carries one operation per row",
				wire.ErrBadRequest, first, op.Order, op.Table, key)
		}
		seen[rowRef{op.Table, key}] = op.Order
	}
	for table := range p.Payload {
		if reg.TableSchema(table) == nil {
			return fmt.Errorf("%w: %q", wire.ErrUnknownTable, table)
		}
	}
	return nil
}

// ParseQuery reads a query request from URL parameters: table, limit,
// after, and eq.<column> filters. Any other parameter is an error.
func ParseQuery(v url.Values) (*QueryRequest, error) {
	req := &QueryRequest{Equal: map[string]string{}}
	for name, vals := range v {
		if len(vals) != 1 {
			return nil, fmt.Errorf("%w: parameter %q given %d times", wire.ErrBadRequest, name, len(vals))
		}
		val := vals[0]
		switch {
		case name == "table":
			req.Table = val
		case name == "after":
			req.After, req.AfterSet = val, true
		case name == "limit":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("%w: limit must be a positive integer", wire.ErrBadRequest)
			}
			req.Limit = n
		case strings.HasPrefix(name, "eq.") && len(name) > 3:
			req.Equal[name[3:]] = val
		default:
			return nil, fmt.Errorf("%w: unknown parameter %q", wire.ErrBadRequest, name)
		}
	}
	if req.Table == "" {
		return nil, fmt.Errorf("%w: the table parameter is required", wire.ErrBadRequest)
	}
	return req, nil
}

// Values encodes a query request as URL parameters (the inverse of
// ParseQuery).
func (req *QueryRequest) Values() url.Values {
	v := url.Values{}
	v.Set("table", req.Table)
	if req.After != "" || req.AfterSet {
		v.Set("after", req.After)
	}
	if req.Limit > 0 {
		v.Set("limit", strconv.Itoa(req.Limit))
	}
	for c, val := range req.Equal {
		v.Set("eq."+c, val)
	}
	return v
}

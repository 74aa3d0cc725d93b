package protocol

import (
	"fmt"
	"strings"
)

// Error codes on the wire (ErrorDetail.Code). dbsync.Code maps an error to
// its code and dbsync.ErrorForCode a code back to the sentinel error.
const (
	CodeBadRequest      = "bad_request"
	CodeUnknownTable    = "unknown_table"
	CodeUnknownColumn   = "unknown_column"
	CodeTooLarge        = "too_large"
	CodeUnauthorized    = "unauthorized"
	CodeReplay          = "replayed"
	CodeUnknownNode     = "unknown_node" // Deprecated: see dbsync.ErrUnknownNode.
	CodeForbidden       = "forbidden"
	CodeRateLimited     = "rate_limited"
	CodePushRejected    = "push_rejected"
	CodePullNeeded      = "pull_needed"
	CodeRepairNeeded    = "repair_needed"
	CodeResetRequired   = "reset_required"
	CodePushAbandoned   = "push_abandoned"
	CodePushIncomplete  = "push_incomplete"
	CodeForeignKey      = "foreign_key"
	CodeUniqueConflict  = "unique_conflict"
	CodeOutOfScope      = "out_of_scope"
	CodeHeldKeysNeeded  = "held_keys_needed"
	CodeSchemaMismatch  = "schema_mismatch"
	CodeProtocolVersion = "protocol_version"
	CodeBusy            = "busy"
	CodeTimeout         = "timeout"
	CodeInternal        = "internal"
)

// UniqueConstraintEntry names one row whose unique column values collide
// with a row from the other side.
type UniqueConstraintEntry struct {
	Table   string   `json:"table"`
	PK      string   `json:"pk"`
	Columns []string `json:"columns"`
}

// UniqueConstraintError reports unique-value collisions that the merge (or
// the server, for a push) cannot resolve by itself, as python-sync-db's
// UniqueConstraintError: both sides gave the same unique value to different
// rows. The application changes the local rows named by Entries and syncs
// again. Nothing was written. dbsync.UniqueConstraintError is the same
// type; its wire code is CodeUniqueConflict.
type UniqueConstraintError struct {
	Entries []UniqueConstraintEntry
}

func (e *UniqueConstraintError) Error() string {
	parts := make([]string, 0, len(e.Entries))
	for _, en := range e.Entries {
		parts = append(parts, fmt.Sprintf("%s pk %s (%s)", en.Table, en.PK, strings.Join(en.Columns, ", ")))
	}
	return "dbsync: unique constraint conflict: " + strings.Join(parts, "; ")
}

// ValueError names the row and column of a value dbsync cannot carry as it
// is: text that is not valid UTF-8 (the wire is JSON, and PostgreSQL
// refuses such text), a NaN, a time outside years 1–9999 (UTC), JSON that is not
// valid. A node's Push and Sync fail with it (find it with errors.As) until
// the application rewrites or deletes that row; nothing else can be pushed
// meanwhile, so that no change is sent without the rows it depends on. On
// the server, such a value in a push is refused with bad_request (the
// error wraps dbsync.ErrBadRequest) and the message names table, key and column.
type ValueError struct {
	Table  string
	Key    string // primary key text; may be empty if the key itself is bad
	Column string
	Err    error
}

// Error implements error. It names what it knows: the column and the
// key are left out when empty (a database refusal that names no column).
func (e *ValueError) Error() string {
	where := e.Table
	if e.Column != "" {
		where += "." + e.Column
	}
	if e.Key != "" {
		where += fmt.Sprintf(" of row %q", e.Key)
	}
	return fmt.Sprintf("dbsync: %s: %v", where, e.Err)
}

// Unwrap returns the cause.
func (e *ValueError) Unwrap() error { return e.Err }

// ScopeEntry names one row a node may not write, or may no longer hold.
type ScopeEntry struct {
	Table string `json:"table"`
	PK    string `json:"pk"`
}

// ScopeError reports rows outside a node's scope (partial sync): on the
// server, a push inserting, updating or deleting rows the node may not
// write, or moving rows out of its scope, refused as a whole (nothing is
// written; over HTTP 403, code CodeOutOfScope); on a node, pending local
// changes to rows that left its scope, which a pull refuses to discard,
// or unpushed rows referencing a row of a pull-only table the server
// deleted, which a pull refuses to leave without it (wrapped in
// dbsync.ErrPendingChanges). dbsync.ScopeError is the same type.
type ScopeError struct {
	Entries []ScopeEntry
}

func (e *ScopeError) Error() string {
	parts := make([]string, 0, len(e.Entries))
	for _, en := range e.Entries {
		parts = append(parts, en.Table+" pk "+en.PK)
	}
	return "dbsync: rows the node may not change or keep (outside its scope, read-only, or referenced by rows it cannot see: give its changes up with DiscardPending): " + strings.Join(parts, "; ")
}

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
	CodePushAbandoned   = "push_abandoned"
	CodePushIncomplete  = "push_incomplete"
	CodeUniqueConflict  = "unique_conflict"
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

// Package models holds the bun models of dbsync's internal tables.
//
// The tables are created by package migrations; these structs only describe
// them so that bun can read and write their rows. Every table name starts with
// "sync_" so it never clashes with an application table. The package imports
// only package protocol (for [Command]) from the rest of the module.
package models

import (
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/protocol"
)

// Command is what an operation did to a row: insert, update or delete. It
// is protocol.Command.
type Command = protocol.Command

// The three commands of the operations log.
const (
	Insert = protocol.Insert
	Update = protocol.Update
	Delete = protocol.Delete
)

// ContentType maps a stable table id to a tracked table (sync_content_types).
//
// The id is the CRC-32 (IEEE) of the table name, so it stays the same when
// the Go model is renamed.
type ContentType struct {
	bun.BaseModel `bun:"table:sync_content_types"`

	ContentTypeID int64  `bun:"content_type_id,pk"`
	TableName     string `bun:"table_name,notnull"`
	ModelName     string `bun:"model_name,notnull"`
}

// Node is a registered client (sync_nodes). On the server there is one row
// per registered node; on a client, the row it received when it registered.
type Node struct {
	bun.BaseModel `bun:"table:sync_nodes"`

	NodeID         int64     `bun:"node_id,pk,autoincrement"`
	Registered     time.Time `bun:"registered,notnull"`
	RegistryUserID *string   `bun:"registry_user_id"`
	Secret         string    `bun:"secret,notnull"`
}

// Version is one step of the server's linear history (sync_versions): the
// operations of one accepted push, or of direct writes on the server
// database (NodeID nil).
type Version struct {
	bun.BaseModel `bun:"table:sync_versions"`

	VersionID int64     `bun:"version_id,pk"`
	NodeID    *int64    `bun:"node_id"`
	Created   time.Time `bun:"created,notnull"`
}

// VersionToken is a version's token (sync_version_tokens): a random
// string drawn when the server creates the version, so that the version a
// node holds is named by number and token. A server that lost versions
// (restored from a backup) and numbered new ones as those it lost tells
// them apart by it (docs/protocol.md "Version identity"). A node keeps the
// tokens of the versions it holds. A version without one (created before
// the table was) is known by number only.
type VersionToken struct {
	bun.BaseModel `bun:"table:sync_version_tokens"`

	VersionID int64  `bun:"version_id,pk"`
	Token     string `bun:"token,notnull"`
}

// Operation is one captured change (sync_operations): which row of which
// table was inserted, updated or deleted. It stores no data: the row's
// current state travels with it when it is pushed or pulled.
//
// VersionID is nil while the operation is pending (not yet pushed on a
// client; not yet sealed into a version on the server).
type Operation struct {
	bun.BaseModel `bun:"table:sync_operations"`

	Order         int64   `bun:"order,pk,autoincrement"`
	RowID         string  `bun:"row_id,notnull"`
	ContentTypeID int64   `bun:"content_type_id,notnull"`
	Command       Command `bun:"command,notnull"`
	VersionID     *int64  `bun:"version_id"`
}

// Push records a push id the server has seen (sync_pushes), so that a
// retried push is applied exactly once. VersionID is the version the push
// created; nil means the push was abandoned by its node and must never be
// applied.
type Push struct {
	bun.BaseModel `bun:"table:sync_pushes"`

	PushID    string    `bun:"push_id,pk"`
	NodeID    int64     `bun:"node_id,notnull"`
	VersionID *int64    `bun:"version_id"`
	Created   time.Time `bun:"created,notnull"`
}

// PushAttempt is a client's push whose outcome it does not know yet
// (sync_push_attempts): sent, but no answer received. It covers the pending
// operations whose order is at most MaxOrder. At most one row exists.
type PushAttempt struct {
	bun.BaseModel `bun:"table:sync_push_attempts"`

	PushID      string    `bun:"push_id,pk"`
	MaxOrder    int64     `bun:"max_order,notnull"`
	BaseVersion *int64    `bun:"base_version"`
	Created     time.Time `bun:"created,notnull"`
}

// Nonce is a request nonce the server has accepted from a node
// (sync_nonces); a request that reuses one is a replay.
type Nonce struct {
	bun.BaseModel `bun:"table:sync_nonces"`

	NodeID int64     `bun:"node_id,pk"`
	Nonce  string    `bun:"nonce,pk"`
	Seen   time.Time `bun:"seen,notnull"`
}

// State is client/server sync's capture switch read by its SQLite
// triggers (sync_state, a single row with ID 1; the peer mode's is
// sync_lww_capture). Capture false suppresses logging, VersionID tags
// logged operations with a version. PostgreSQL uses transaction-local
// settings instead and never reads this table.
type State struct {
	bun.BaseModel `bun:"table:sync_state"`

	ID        int64  `bun:"id,pk"`
	Capture   bool   `bun:"capture,notnull"`
	VersionID *int64 `bun:"version_id"`
}

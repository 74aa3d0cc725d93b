package dbsync

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Event describes one finished procedure (register, push, pull, repair,
// query), on the server or on a client, or one sync or apply of a peer
// node. Config.OnEvent of packages server, client and peer receives one
// per call: connect it to Prometheus, OpenTelemetry or a log without
// dbsync importing any of them.
type Event struct {
	// Op is "register", "push", "pull", "repair", "query" or "watch" (a
	// request of the change feed; VersionID: the server's latest), a
	// client's "reset" (client.Client.Reset: VersionID reached, Conflicts
	// resolved), or the server's "trim" (server.Server.Trim: VersionID is
	// the log floor, Operations the log entries deleted); for a peer
	// node "sync" (Node.Sync) or "apply" (Node.Apply: one per transaction
	// applying a peer's changes, also within a sync).
	Op string
	// Side is "server", "client" or "peer".
	Side string
	// NodeID is the node (0 when unknown, as for a failed register).
	NodeID int64
	// Peer is the other node of a peer's sync or apply.
	Peer uuid.UUID
	// Duration is how long the procedure took.
	Duration time.Duration
	// Err is nil on success.
	Err error
	// Operations and Rows count what was sent or received; for a peer,
	// Operations counts the versions that won (a sync's pulled plus
	// pushed).
	Operations int64
	Rows       int64
	// Bytes on the wire (request plus response), when known.
	Bytes int64
	// VersionID is the version created (push) or reached (pull, repair).
	VersionID int64
	// Conflicts counts the conflicts a pull resolved, by kind (see
	// package merge).
	Conflicts map[string]int
	// Shared is set on a server's pull answered with the answer computed
	// for another node's identical pull (server.Server.Pull).
	Shared bool
}

// EventFunc receives events. It is called synchronously at the end of each
// procedure: keep it fast.
type EventFunc func(ctx context.Context, e Event)

// Progress reports the advance of a long operation (a push, a pull, a
// repair or a reset).
type Progress struct {
	// Op is "push", "pull", "repair" or "reset".
	Op string
	// Phase, for a pull, a repair or a reset: "download", "apply" or
	// "done"; a reset reports "gone" after each page of rows the server no
	// longer has. For a push: "prepare" once its operations are compressed
	// and recorded (Operations: how many it carries), "upload" after each
	// chunk the server holds (a push sent in chunks; chunks it held from
	// an earlier try count, and a resend after the server lost some
	// reports only what goes further), "commit" when the push is sent
	// whole or its chunks are committed (the server applies it
	// meanwhile), then "done". A push sent in chunks that the server had
	// applied already (its answer was lost) goes from "prepare" to "done";
	// one resent whole reports "commit" as usual.
	Phase string
	// Bytes received so far (for a push, bytes the server holds or that
	// are being sent); Operations and Rows applied so far (for a push,
	// operations the server holds or that are being sent; Rows stays 0).
	Bytes      int64
	Operations int64
	Rows       int64
}

// ProgressFunc receives progress reports.
type ProgressFunc func(Progress)

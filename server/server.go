// Package server implements the server side of dbsync's five procedures —
// register, push, pull, repair and query — as plain Go methods on a
// [Server]. A push may also arrive in chunks (StagePushChunk, ChunkStatus,
// CommitPush), applied as one push; a node may wait for the next version
// (Watch, the change feed). It knows nothing of HTTP: package
// handlers exposes a Server over chi, and any other transport can call the
// same methods.
//
// A Server can run in several processes against one PostgreSQL database:
// version numbers are allocated under a transaction advisory lock, so they
// are committed in order and a pull never sees a gap, and replay protection
// (nonces) and push deduplication (push ids) live in the database.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/oplog"
	"github.com/go-dbsync/dbsync/protocol"
)

// Config tunes a [Server]. AuthorizeRegister is required ([New] fails
// without it); every other field's zero value is usable.
type Config struct {
	// Logger receives the server's log lines. Default: discard.
	Logger *slog.Logger

	// AuthorizeRegister decides whether a caller may register a node. It
	// gets the request and what the transport knows of the caller (see
	// RegisterInfo: the Authorization header, the remote address) and
	// returns the Registration to record, or an error to refuse (the
	// caller gets dbsync.ErrForbidden, nothing is written). Required: New
	// fails without it. OpenRegistration lets anyone register; choosing it
	// is an explicit decision.
	AuthorizeRegister func(ctx context.Context, info *RegisterInfo) (*Registration, error)

	// BeforePush runs inside the push transaction before the operations are
	// applied; an error refuses the push (nothing is written) and is
	// returned to the caller. AfterPush runs in the same transaction after
	// they are applied; an error rolls the push back. Over HTTP (package
	// handlers) the node gets an error's code and text only when it wraps
	// one of package dbsync's errors, e.g. fmt.Errorf("%w: …",
	// dbsync.ErrPushRejected) (409 push_rejected); any other error is
	// answered 500 internal, its text only in the handlers' log
	// (handlers.Config.Logger).
	BeforePush func(ctx context.Context, tx bun.Tx, push *PushInfo) error
	AfterPush  func(ctx context.Context, tx bun.Tx, push *PushInfo) error

	// FastForwardOnly refuses every push that is not based on the
	// server's latest version with dbsync.ErrPullNeeded, as python-sync-db
	// did: its node pulls and merges every newer version before it pushes.
	// Default false: a push based on an older version is rebased on the
	// versions since when none of them changed one of its rows (another
	// node's change to one of them is refused with ErrPullNeeded, as
	// under fast-forward). See Push, and docs/protocol.md.
	FastForwardOnly bool

	// Scopes turns on partial sync: per tracked table, the rule that
	// decides which rows a node may read and write, given the principal
	// its registration was accepted with (Registration.UserID). Nil: every
	// node reads and writes every row. See Scopes.
	Scopes Scopes

	// ClockSkew is how far a request's timestamp may be from the server's
	// clock. Default: 5 minutes.
	ClockSkew time.Duration

	// ChunkSize is the default number of operations per pull chunk, and
	// the number of rows per repair line. Default 1000; a pull may ask for
	// up to MaxChunkSize.
	ChunkSize int

	// QueryLimit is the default and MaxQueryLimit the maximum number of
	// rows one query returns. Defaults: 100 and 1000.
	QueryLimit    int
	MaxQueryLimit int

	// MaxStagedBytes bounds the bytes of the chunks staged for one node's
	// chunked push (StagePushChunk); a chunk beyond it is refused with
	// dbsync.ErrTooLarge. Default 2 GiB. It counts the chunks' bodies;
	// with the keys staged with them a staged push may take up to about
	// 4 times that much storage (docs/protocol.md, "Chunked push").
	MaxStagedBytes int64
	// StagedChunkTTL is how long staged chunks of a push never committed
	// are kept before they are swept. Default 24 hours.
	StagedChunkTTL time.Duration

	// WatchPoll is how often the change feed (Watch) reads the latest
	// version while it cannot listen for notifications: on PostgreSQL
	// while its listening connection is down or when the database is not
	// reached through the pgx driver. On PostgreSQL it is also how long
	// the listening connection goes without a notification before the
	// feed reads the latest version on it (waking the waiters of a
	// version whose notification never came; giving the connection up
	// when the read gets no answer within ten times that, at least a
	// second). Default 1 s.
	WatchPoll time.Duration

	// NodeHorizon is how long a node may stay silent and still hold the
	// log back: Trim keeps every version a node seen within it may pull;
	// a node silent longer is retired, and when it comes back it is
	// answered dbsync.ErrResetRequired if the log it needs is gone. A
	// request refused for the node's schema (dbsync.ErrSchemaMismatch)
	// does not count as seen: a node of a release the server no longer
	// serves is retired too, and resets once it upgrades.
	// Default: 30 days.
	NodeHorizon time.Duration
	// TrimBatch is the number of rows Trim deletes per transaction.
	// Default 1000.
	TrimBatch int
	// TrimEvery, when set, makes the server run Trim that often, from New
	// until Close; failures are logged. Default 0: the log is trimmed
	// only when the application calls Trim.
	TrimEvery time.Duration

	// OnEvent receives one event per procedure (for metrics).
	OnEvent dbsync.EventFunc

	// Now returns the current time. Default: time.Now.
	Now func() time.Time
}

// MaxChunkSize bounds the operations per pull chunk a client may ask for.
const MaxChunkSize = 10000

// PushInfo describes a push to the BeforePush and AfterPush hooks.
type PushInfo struct {
	// NodeID is the node that sent the push.
	NodeID int64
	// Request is the push: its id and base version, and, for a push sent
	// in one request, its operations and payload. A chunked push
	// (CommitPush) is applied a chunk at a time and never held whole:
	// Request carries no operations then.
	Request *protocol.PushRequest
	// Operations is the number of operations the push applies.
	Operations int
	// VersionID is the version the push creates.
	VersionID int64
}

func (c *Config) withDefaults() Config {
	out := Config{}
	if c != nil {
		out = *c
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	if out.ClockSkew <= 0 {
		out.ClockSkew = 5 * time.Minute
	}
	if out.ChunkSize <= 0 {
		out.ChunkSize = 1000
	}
	out.ChunkSize = min(out.ChunkSize, MaxChunkSize)
	if out.QueryLimit <= 0 {
		out.QueryLimit = 100
	}
	if out.MaxQueryLimit <= 0 {
		out.MaxQueryLimit = 1000
	}
	if out.MaxStagedBytes <= 0 {
		out.MaxStagedBytes = 2 << 30
	}
	if out.StagedChunkTTL <= 0 {
		out.StagedChunkTTL = 24 * time.Hour
	}
	if out.WatchPoll <= 0 {
		out.WatchPoll = time.Second
	}
	if out.Now == nil {
		out.Now = time.Now
	}
	if out.NodeHorizon <= 0 {
		out.NodeHorizon = 30 * 24 * time.Hour
	}
	if out.TrimBatch <= 0 {
		out.TrimBatch = 1000
	}
	return out
}

// Server serves one database to many nodes. It is safe for concurrent use.
type Server struct {
	db *bun.DB
	// reg is the registry as the node served sees it: full, or its
	// projection on an older node's schema (ForSchema).
	reg  *dbsync.Registry
	full *dbsync.Registry
	// fingerprint is full's; served is reg's, the schema this Server (a
	// view: ForSchema) serves.
	fingerprint, served string
	// required names, by pushed table, the columns a node must know: NOT
	// NULL without a default (its inserts could not leave them out).
	required map[string][]string
	// nullable lists the columns of full whose field can be nil, and
	// whether they are NOT NULL here (store.Nullable); nullableText is the
	// text form of those of reg: what a node like the server sends
	// (CheckNullable).
	nullable     protocol.Nullable
	nullableText string
	cfg          Config
	log          *slog.Logger
	kind         dialect.Kind

	scopes *scoper // nil: no partial sync
	// keyEq holds, by table, how the database compares the keys of a
	// text-keyed table whose keys it does not compare byte for byte
	// (dialect.KeyEquality): the rebase check compares the log's keys so.
	keyEq map[string]string

	*state // shared by a server and its views
}

// state is what a Server shares with the views ForSchema returns.
type state struct {
	sweepMu   sync.Mutex
	lastSweep time.Time

	feedOnce sync.Once
	feed     *feed // wakes Watch; see changes

	act        activity  // what this process recorded of each node (trim.go)
	trim       *trimmer  // the periodic trim; nil without Config.TrimEvery
	views      viewCache // by fingerprint and announced schema; see ForSchema
	sharesOnce sync.Once
	pullShares *pullShares // pulls' shared answers; see shares

	// lineBudget bounds the rows of one line of a pull or repair answer,
	// in bytes (lineReader.lines, streamRowsWith, fitLine), and so what
	// the server holds to answer: half of protocol.MaxLineBytes, which
	// leaves the operations and the JSON around the rows room. Tests set
	// it small.
	lineBudget int
	// rowsHeld, when not nil, is told the size in bytes of each row an
	// answer reads (encodeRow), and minus the size of rows it read and
	// let go unsent (dropped): tests count what a pull holds.
	rowsHeld func(bytes int)
	// repairNoting, when not nil, is called by Repair before it records
	// the version the node is sent (tests run a trim there).
	repairNoting func()
	// chunksSweeping, when not nil, is called by sweepChunks in its
	// transaction, before it deletes anything (tests stage a chunk again
	// there).
	chunksSweeping func()
	// pullSealed, when not nil, is called by a pull after it sealed the
	// direct writes, before its snapshot (tests commit one there).
	pullSealed func()
	// pushFailed, when not nil, is called by a push whose transaction
	// failed, before it decides whether its refusal is stale (tests seal
	// a direct write there).
	pushFailed func()
	// closeWait bounds Close's write of the held versions not written
	// yet (closeFlushWait; tests set it short).
	closeWait time.Duration
}

// New prepares db (oplog.Install: sync tables, capture triggers) and returns
// a Server for the registry's tables. Create the application's tables
// before calling New. On PostgreSQL it also makes the foreign keys between
// tracked tables DEFERRABLE INITIALLY IMMEDIATE (oplog.InstallOptions:
// the application sees no difference, a tool comparing schemas does). The
// server works on a copy of reg completed from the database catalog
// ([Server.Registry]); reg itself is not changed.
func New(ctx context.Context, db *bun.DB, reg *dbsync.Registry, cfg *Config) (*Server, error) {
	kind, err := dialect.Of(db)
	if err != nil {
		return nil, err
	}
	if reg == nil {
		return nil, errors.New("server: nil registry")
	}
	c := cfg.withDefaults()
	if c.AuthorizeRegister == nil {
		return nil, ErrRegisterHookRequired
	}
	reg, err = oplog.Install(ctx, db, reg, &oplog.InstallOptions{Logger: c.Logger})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	scopes, err := newScoper(ctx, db, reg, c.Scopes)
	if err != nil {
		return nil, err
	}
	required, err := requiredColumns(ctx, db, reg)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	nullable, err := store.Nullable(ctx, db, reg)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	keyEq, err := store.KeyEqualities(ctx, db, reg)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s := &Server{keyEq: keyEq, db: db, reg: reg, full: reg, fingerprint: reg.Fingerprint(), served: reg.Fingerprint(), required: required,
		nullable: nullable, nullableText: nullable.String(), cfg: c, log: c.Logger, kind: kind, scopes: scopes, state: &state{lineBudget: protocol.MaxLineBytes / 2, closeWait: closeFlushWait}}
	s.startTrimmer()
	return s, nil
}

// Registry returns the server's tracked tables: a copy of the registry
// given to New, with the foreign keys and unique indexes of the database
// catalog (for a view of ForSchema, as the node sees them). Treat it as
// read-only.
func (s *Server) Registry() *dbsync.Registry { return s.reg }

// Scoped reports whether the server holds nodes to scopes
// (Config.Scopes): only then does a pull carry the keys a node holds.
func (s *Server) Scoped() bool { return s.scopes != nil }

// DB returns the server's database.
func (s *Server) DB() *bun.DB { return s.db }

// emit sends an event to the OnEvent hook.
func (s *Server) emit(ctx context.Context, e dbsync.Event, start time.Time) {
	if s.cfg.OnEvent == nil {
		return
	}
	e.Side = "server"
	e.Duration = time.Since(start)
	s.cfg.OnEvent(ctx, e)
}

// CheckSchema compares a node's schema fingerprint with the server's: it
// is ForSchema for a node that announces nothing more.
func (s *Server) CheckSchema(fingerprint string) error {
	_, err := s.ForSchema(fingerprint, "")
	return err
}

// latestVersion returns the greatest version id (0 when there is none).
func latestVersion(ctx context.Context, db bun.IDB) (int64, error) {
	var v *int64
	if err := db.NewRaw("SELECT MAX(version_id) FROM sync_versions").Scan(ctx, &v); err != nil {
		return 0, fmt.Errorf("latest version: %w", err)
	}
	if v == nil {
		return 0, nil
	}
	return *v, nil
}

// Package peer synchronizes databases peer to peer with last-write-wins,
// without a central server: any two nodes exchange their changes both
// ways, over HTTP (package peer/peerhttp) or any byte stream
// (package stream), in any topology, and every node converges.
//
// # Model
//
// Every row of a peer-synced table has an identity (its UUID or text
// primary key, or an added sync_uuid column for an integer key, which
// the capture triggers refuse to change once set) and a version: a hybrid logical clock value
// (HLC: wall-clock milliseconds plus a logical counter) and the node that
// wrote it. Of two versions of a row the higher (HLC, node) wins,
// everywhere, so nodes converge whatever the order of their exchanges.
// Deletes are versions too (tombstones).
//
// Capture triggers record each local write's version in sync_lww, with a
// node-local sequence number taken in the writing transaction: the node's
// change feed. An UPDATE that changes neither the row's identity nor a
// column of its model is no write: it takes no new version, which would
// win over other nodes' edits with the node's unchanged values. A node
// pulls a peer's feed after its cursor for that peer and applies it in
// one transaction that also moves the cursor, so a
// crash never loses or repeats a change, and one node can sync with
// several peers at once. Rows a node receives get new sequence numbers of
// its own, so changes travel through any connected graph.
//
// # Foreign keys
//
// The node follows every foreign key between its synced tables, whether
// the bun models declare it or only the database schema does (New reads
// the database's catalog). A reference to a table with a UUID or text key
// travels as it is; a reference to a table with an integer key (local to
// each node) travels as the referenced row's identity and is turned back
// into the receiving node's own key, so a row lands under the same parent
// on every node. A row may arrive before the row it references (in a later
// page of the same sync, or in a cycle of references): its reference holds
// a placeholder (a key below any of the referenced table's and below 0,
// distinct per row) until the referenced row
// arrives and is set before the apply commits (foreign keys are checked at
// commit); a referenced row that never arrives fails the apply with
// ErrConstraint, and one deleted meanwhile takes the row with it.
//
// A delete wins over the rows that reference the deleted row: when a node
// applies a delete, its rows that still reference the deleted row are
// deleted too (children, grandchildren, any depth), and a winning live
// version that references a deleted row becomes a delete. Such a delete's
// version is (max(the row's version, the tombstones of every deleted row
// it references) + 1, the nil node), the same on every node, so a parent
// deleted on one node while another edits or adds its children converges
// to the same state everywhere (instead of a foreign key violation that
// would refuse the exchange forever). A row that moves away from a deleted
// parent in the same batch keeps its own children: the database's ON
// DELETE actions never run ahead of the log. The rule decides with what the
// node knows when it applies the delete: a node that learns of a parent's
// delete before it learns (in a later sync or page) that a child had moved
// away deletes the child and the child's own children; the move, newer,
// brings the child back, but not its children, and their deletes spread
// to every node. Nodes still converge. Index the referencing columns
// of large tables (as one should anyway): the rule looks rows up by them,
// one level of a chain at a time.
//
// # Tombstones
//
// [Node.Purge] removes tombstones older than a horizon. A peer whose cursor
// is older than the purge point must resynchronize: it receives the
// peer's whole state and deletes the rows it holds that the peer lacks and
// that are older than the peer's horizon (they were deleted). A node also
// refuses, from any peer, a live version older than its own horizon of a
// row it holds no version of: the row was deleted and forgotten there, and
// the version comes from a node that was offline too long. The refusal is
// a tombstone at the horizon, which reaches the sender and deletes the row
// there too. Neither applies to the node's own versions that the peer
// never received from it (past the peer's cursor of its feed,
// Batch.Received in a resynchronization): written offline, possibly with
// a clock far behind (a device whose clock reset), they are taken as the
// writes they are (a row of the node's that the peer got through another
// node and deleted while the node was out of reach longer than the
// horizon comes back). When a pull fails on a reference to a row this node deleted
// and forgot, Sync pushes first (the peer resynchronizes and drops the
// row) and pulls again. Choose the horizon longer than any write takes to
// reach every node, over the longest path of the mesh (in a chain A–B–C
// that syncs every 400 ms, a write of C reaches A after 800 ms), not only
// longer than any node stays offline: writes older than the horizon that
// reach a node through another node than their writer are lost, and with
// horizons far shorter than the
// nodes' sync intervals
// nodes can even end up holding different rows (a stress test purging
// every few milliseconds ends diverged in about one run in sixty).
//
// # Restores
//
// A node restored from a backup lost its writes made after the backup
// and reuses positions of its feed its peers read past. Each New starts
// an epoch of the feed; a peer's cursor keeps its epoch and is valid up
// to the epoch's end ([Position]). The node, asked for its feed after a
// position past what it holds now, or checking its peer's cursor at the
// start of Sync, has the peer take its whole state and asks each peer
// once for that peer's whole feed with its own versions (which feeds
// otherwise leave out for the node that wrote them). A restored database
// must be opened with New before the application writes to it.
package peer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/spool"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/internal/wire"
	"github.com/go-dbsync/dbsync/migrations"
	"github.com/go-dbsync/dbsync/protocol"
)

// Config tunes a [Node]. The zero value (or nil) is usable.
type Config struct {
	// ID is the node's identity. Default: the identity stored in the
	// database, or a new random one stored there.
	ID uuid.UUID
	// Logger receives the node's log lines. Default: discard.
	Logger *slog.Logger
	// BatchSize bounds the changes per batch. Default 1000.
	BatchSize int
	// MaxBatchBytes bounds the rows of a batch, in encoded bytes (a batch
	// holds at least one change, whatever its size). A peer receiving
	// batches must accept this much: peerhttp.Peer.MaxAnswer and
	// stream.Config.MaxFrame default to more. Default 32 MiB.
	MaxBatchBytes int
	// MaxPullBytes bounds what one pull (Pull, the first half of Sync)
	// reads from a peer, counted as its rows' bytes and 64 bytes more a
	// change and a page: past it the pull fails with a *LimitError,
	// nothing applied, so that a peer (broken, or hostile) whose pages
	// never end cannot fill the disk (a SQLite node spools a remote
	// peer's pages before it applies them) or hold a transaction open
	// for ever. A larger backlog is pulled with the bound raised. Default
	// 64 GiB, as client.Config.MaxDownloadBytes.
	MaxPullBytes int64
	// MaxSkew refuses changes whose clock is further ahead of this node's
	// wall clock: one peer with a wrong clock must not win every conflict
	// forever. Default 1 minute.
	MaxSkew time.Duration
	// Now returns the current time. Default: time.Now.
	Now func() time.Time
	// KeepConstraints, on PostgreSQL, leaves foreign keys between synced
	// tables as they are. By default New makes them DEFERRABLE INITIALLY
	// IMMEDIATE (the application sees no difference) so an apply can defer
	// their checks to commit. With KeepConstraints and foreign keys that
	// are not deferrable, a row that arrives before the row it references
	// fails the apply with ErrConstraint.
	KeepConstraints bool
	// DropUntracked makes New drop the capture triggers (and on
	// PostgreSQL their trigger functions) of the tables it finds captured
	// but not in the registry: tables taken out of the sync, whose writes
	// would else keep ticking the node's clock and feed for nothing, take
	// the node row's lock (PostgreSQL), and fail once the application
	// drops their sync_uuid column. Only triggers named as this package
	// names them are dropped; the sync_uuid column and the recorded
	// versions stay. Off by default: a program that opens the node's
	// database with only some of its tables (a tool, a second process)
	// would else stop the capture of the others, and the writes the node's
	// own program makes until its next New would never travel.
	DropUntracked bool
	// OnEvent receives one event per Sync and per Apply (for metrics):
	// Side "peer", Op "sync" or "apply", the peer, duration, versions
	// that won, error.
	OnEvent dbsync.EventFunc
	// SpoolDir is where a SQLite node keeps the pages of a remote peer
	// past the first 16 MiB, read before its transaction opens, in an
	// unlinked temporary file (""; os.TempDir(), which on Android is not
	// writable by apps: set it there). It must be an existing directory:
	// New refuses one that is not.
	SpoolDir string
}

// ptable is a peer-synced table.
type ptable struct {
	t *dbsync.Table
	// keyIdentity: the primary key is the row's identity, the same on
	// every node (a UUID, or a text key the application chooses); else
	// the key is local (an integer) and the identity is IdentityColumn.
	keyIdentity bool
	// keyFolds: the key is text and the database does not compare it
	// byte for byte (SQLite's NOCASE, citext, a nondeterministic ICU
	// collation): "ABC" names the row "abc" there, another identity
	// (store.KeyEqualities).
	keyFolds bool
	// intRefs are the table's foreign keys to synced tables whose key is
	// local: their values travel as the referenced row's identity.
	intRefs []intRef
}

// identity returns the identity a peer sent for a row of pt in its
// canonical form: a UUID (the key of a UUID-keyed table, or
// IdentityColumn) in canonical text, a text key as it is. One that is
// none (a text key with a NUL, which no database stores) is refused with
// dbsync.ErrBadRequest.
func (pt *ptable) identity(id string) (string, error) {
	if pt.keyIdentity && pt.t.KeyKind == protocol.KeyText {
		if strings.ContainsRune(id, 0) {
			return "", fmt.Errorf("%w: key of %s holds a NUL", dbsync.ErrBadRequest, pt.t.Name)
		}
		return id, nil
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return "", fmt.Errorf("%w: row identity %q of %s is not a UUID", dbsync.ErrBadRequest, id, pt.t.Name)
	}
	return u.String(), nil
}

type intRef struct {
	column string
	parent *ptable
}

// Node is one database synchronized peer to peer. It is safe for
// concurrent use, including syncs with several peers at once.
type Node struct {
	db     *bun.DB
	reg    *dbsync.Registry
	kind   dialect.Kind
	id     uuid.UUID
	cfg    Config
	log    *slog.Logger
	tables []*ptable // dependency order
	byName map[string]*ptable
	byCT   map[int64]*ptable
}

// Errors.
var (
	// ErrResync: the peer purged tombstones this node may not have seen;
	// it must pull the peer's whole state (Sync does).
	ErrResync = errors.New("peer: resynchronization needed")
	// ErrClockSkew: a change carries a clock too far ahead of this node's.
	ErrClockSkew = errors.New("peer: clock too far ahead")
	// ErrConstraint: the changes would break a foreign key or a unique
	// constraint of this node's database (a unique value taken by another
	// row here, a reference to a table with an integer key); nothing
	// was applied. Also, with dbsync.ErrForeignKey, the sending node
	// holds rows referencing rows it does not have (written with foreign
	// keys off): it names itself and them, and sends nothing.
	ErrConstraint = errors.New("peer: the changes break a constraint of this database")
	// ErrSameNode: the two ends of a sync are the same node (the same
	// node identity: a node syncing with itself, or two databases
	// opened with the same Config.ID, a copied database). Nothing was
	// exchanged.
	ErrSameNode = errors.New("peer: both ends are the same node")
)

// Codes of the errors above on the wire: in peerhttp's error answers and
// in package stream's error frames.
const (
	CodeResync     = "resync_needed"
	CodeClockSkew  = "clock_skew"
	CodeConstraint = "constraint"
	CodeSameNode   = "same_node"
)

// Code returns the wire code of the error above that err wraps, or "".
func Code(err error) string {
	switch {
	case errors.Is(err, ErrResync):
		return CodeResync
	case errors.Is(err, ErrClockSkew):
		return CodeClockSkew
	case errors.Is(err, ErrConstraint):
		return CodeConstraint
	case errors.Is(err, ErrSameNode):
		return CodeSameNode
	}
	return ""
}

// ErrorForCode returns the error above that code names (Code), or nil.
func ErrorForCode(code string) error {
	switch code {
	case CodeResync:
		return ErrResync
	case CodeClockSkew:
		return ErrClockSkew
	case CodeConstraint:
		return ErrConstraint
	case CodeSameNode:
		return ErrSameNode
	}
	return nil
}

// New prepares db for peer-to-peer sync of the registry's tables and
// returns the node. It creates the tables a node needs (Migrate), gives tables without a
// UUID or text key (an integer key) the sync_uuid identity column, installs the capture triggers,
// and records a version for every row that has none yet (rows written
// before New are synced too). Create the application's tables first.
// The node works on a copy of reg completed from the database catalog;
// reg itself is not changed.
func New(ctx context.Context, db *bun.DB, reg *dbsync.Registry, cfg *Config) (*Node, error) {
	kind, err := dialect.Of(db)
	if err != nil {
		return nil, err
	}
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 32 << 20
	}
	if c.MaxPullBytes <= 0 {
		c.MaxPullBytes = 64 << 30
	}
	if c.MaxSkew <= 0 {
		c.MaxSkew = time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if err := spool.CheckDir(c.SpoolDir); err != nil {
		return nil, fmt.Errorf("peer: Config.SpoolDir: %w", err)
	}
	if err := checkObjectNames(reg); err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	if err := dialect.CheckRecursiveTriggers(ctx, db); err != nil {
		return nil, fmt.Errorf("peer: %w: %w", dbsync.ErrDatabaseSettings, err)
	}
	n := &Node{db: db, reg: reg, kind: kind, cfg: c, log: c.Logger}
	if err := Migrate(ctx, db); err != nil {
		return nil, err
	}
	if err := n.install(ctx); err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	return n, nil
}

// Migrate creates or upgrades the tables a peer node needs: dbsync's own
// (migrations.Migrate: client/server sync's capture switch and content
// types) and the peer's (migrations.MigratePeer: sync_lww, sync_lww_node,
// sync_lww_peers, sync_lww_nonces, sync_lww_epochs, sync_lww_feed,
// sync_lww_cursor_epochs, sync_lww_capture: the peer's capture switch). New calls it; call it yourself to create the
// tables ahead of time, e.g. in a deployment step. Client/server deployments never
// create the peer's tables.
func Migrate(ctx context.Context, db *bun.DB) error {
	if err := migrations.Migrate(ctx, db); err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	if err := migrations.MigratePeer(ctx, db); err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	return nil
}

// ID returns the node's identity.
func (n *Node) ID() uuid.UUID { return n.id }

// DB returns the node's database.
func (n *Node) DB() *bun.DB { return n.db }

// Registry returns the node's tables.
func (n *Node) Registry() *dbsync.Registry { return n.reg }

// pgInstallLock serializes installs in one PostgreSQL schema ("dbsP": the
// first half of the advisory lock key).
const pgInstallLock = 0x6462_7350

func (n *Node) install(ctx context.Context) error {
	return n.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		schema, err := dialect.LockInstall(ctx, tx, pgInstallLock)
		if err != nil {
			return err
		}
		// A column the table lacks would break the capture triggers (and
		// every write of the application to the table); a generated
		// one, every apply of the table's rows.
		if err := store.CheckColumns(ctx, tx, n.reg.Tables()); err != nil {
			if !errors.Is(err, dbsync.ErrInvalidModel) {
				err = fmt.Errorf("%w: %w", dbsync.ErrInvalidModel, err)
			}
			return err
		}
		// Foreign keys the catalog declares count too (and decide the
		// order of the tables).
		fks, altered, err := store.AdoptForeignKeys(ctx, tx, n.reg, schema, n.cfg.KeepConstraints)
		if err != nil {
			return err
		}
		n.reg = n.reg.WithCatalog(dbsync.Catalog{ForeignKeys: fks})
		for _, c := range altered {
			n.log.InfoContext(ctx, "peer: foreign key made deferrable", slog.String("constraint", c))
		}
		n.setTables()
		eq, err := store.KeyEqualities(ctx, tx, n.reg)
		if err != nil {
			return err
		}
		for name := range eq {
			n.byName[name].keyFolds = true
		}
		// The node row: identity, clock, sequence.
		var stored string
		err = tx.QueryRowContext(ctx, "SELECT node FROM sync_lww_node WHERE id = 1").Scan(&stored)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			id := n.cfg.ID
			if id == uuid.Nil {
				id = uuid.New()
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO sync_lww_node (id, node, hlc, seq) VALUES (1, ?, 0, 0)", id.String()); err != nil {
				return err
			}
			n.id = id
		case err != nil:
			return err
		default:
			id, err := uuid.Parse(stored)
			if err != nil {
				return fmt.Errorf("stored node id %q: %w", stored, err)
			}
			if n.cfg.ID != uuid.Nil && n.cfg.ID != id {
				return fmt.Errorf("the database belongs to node %s, not %s", id, n.cfg.ID)
			}
			n.id = id
		}
		// The feed's new epoch, before this opening writes anything.
		if err := n.newEpoch(ctx, tx); err != nil {
			return err
		}
		if err := dialect.Capture(ctx, tx, dialect.PeerSwitch, false); err != nil {
			return err
		}
		// A key that is the row's identity must be unique under an
		// index checked at once (dialect.DeferrableKeys): a swap of two
		// rows' keys in one statement, recorded row by row, would leave
		// a tombstone on one of them.
		keys := map[string]string{}
		for _, pt := range n.tables {
			if pt.keyIdentity {
				keys[pt.t.Name] = pt.t.PK.Name
			}
		}
		bad, err := dialect.DeferrableKeys(ctx, tx, keys)
		if err != nil {
			return err
		}
		if len(bad) > 0 {
			return fmt.Errorf("%w: %s: %s", dbsync.ErrInvalidModel, strings.Join(bad, ", "), dialect.DeferrableKeyProblem)
		}
		var installed map[string]dialect.SQLiteTrigger // the SQLite triggers there are
		if n.kind == dialect.SQLite {
			if installed, err = dialect.SQLiteTriggers(ctx, tx); err != nil {
				return err
			}
		}
		// A table syncs in one mode: each mode's capture switch
		// silences its own triggers only, so each would log what the
		// other applies as this node's own writes.
		names := make([]string, len(n.tables))
		for i, pt := range n.tables {
			names[i] = pt.t.Name
		}
		logged, err := dialect.CapturedInto(ctx, tx, schema, installed, dialect.OperationsLog, names)
		if err != nil {
			return err
		}
		if len(logged) > 0 {
			return fmt.Errorf("%w: %s: synced client/server in this database (oplog.Install, client.New or server.New installed its capture triggers); a table syncs in one mode only: each mode would log the rows the other applies as this node's own writes. Take it out of one mode (oplog.Uninstall drops the capture triggers of a registry's tables)",
				dbsync.ErrInvalidModel, strings.Join(logged, ", "))
		}
		if n.cfg.DropUntracked {
			if err := n.dropUntracked(ctx, tx, schema, installed); err != nil {
				return fmt.Errorf("capture triggers of untracked tables: %w", err)
			}
		}
		for _, pt := range n.tables {
			if !pt.keyIdentity {
				if err := n.addIdentity(ctx, tx, pt); err != nil {
					return fmt.Errorf("identity column of %s: %w", pt.t.Name, err)
				}
			}
			if pt.keyIdentity && pt.t.KeyKind == protocol.KeyText {
				if err := adoptTextKeys(ctx, tx, pt); err != nil {
					return fmt.Errorf("versions of %s under its keys: %w", pt.t.Name, err)
				}
			}
			if pt.keyIdentity && pt.t.KeyKind == protocol.KeyUUID {
				if err := n.uuidKeysCanonical(ctx, tx, pt, schema); err != nil {
					return err
				}
			}
			if err := n.installTriggers(ctx, tx, pt, schema, installed); err != nil {
				return fmt.Errorf("capture triggers of %s: %w", pt.t.Name, err)
			}
			if err := n.backfill(ctx, tx, pt); err != nil {
				return fmt.Errorf("versions of existing rows of %s: %w", pt.t.Name, err)
			}
		}
		if n.kind == dialect.Postgres {
			// The triggers use the functions of this release's names now:
			// those of earlier releases' names go unless another table's
			// trigger uses one (its function of this release's name).
			var old []string
			for _, pt := range n.tables {
				old = append(old, pgOldFunctionNames(pt.t.Name)...)
			}
			if err := n.dropUnusedFunctions(ctx, tx, schema, old); err != nil {
				return fmt.Errorf("trigger functions of earlier releases: %w", err)
			}
		}
		return dialect.ResetCapture(ctx, tx, dialect.PeerSwitch)
	})
}

// Schema summarizes what two nodes must agree on to sync: the tracked
// tables and columns (the registry's fingerprint) and which columns
// reference rows by identity (foreign keys to tables with an integer
// key).
func (n *Node) Schema() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", n.reg.Fingerprint())
	var refs []string // sorted: the order of registration does not matter
	for _, pt := range n.tables {
		for _, r := range pt.intRefs {
			refs = append(refs, fmt.Sprintf("%s.%s -> %s\n", pt.t.Name, r.column, r.parent.t.Name))
		}
	}
	sort.Strings(refs)
	for _, r := range refs {
		h.Write([]byte(r))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// setTables lists the synced tables in dependency order, with their
// references to tables with an integer key.
func (n *Node) setTables() {
	n.tables, n.byName, n.byCT = nil, map[string]*ptable{}, map[int64]*ptable{}
	for _, t := range n.reg.Tables() {
		pt := &ptable{t: t, keyIdentity: t.KeyKind == protocol.KeyUUID || t.KeyKind == protocol.KeyText}
		n.tables = append(n.tables, pt)
		n.byName[t.Name] = pt
		n.byCT[t.ContentTypeID] = pt
	}
	for _, pt := range n.tables {
		for _, fk := range pt.t.ForeignKeys {
			if parent := n.byName[fk.RefTable]; parent != nil && !parent.keyIdentity {
				pt.intRefs = append(pt.intRefs, intRef{column: fk.Column, parent: parent})
			}
		}
	}
}

// addIdentity adds the sync_uuid column (if missing), its unique index,
// and fills it for existing rows.
func (n *Node) addIdentity(ctx context.Context, tx bun.Tx, pt *ptable) error {
	table := dialect.QuoteIdent(pt.t.Name)
	have, err := dialect.HasColumn(ctx, tx, pt.t.Name, IdentityColumn)
	if err != nil {
		return err
	}
	if !have {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s TEXT", table, dialect.QuoteIdent(IdentityColumn))); err != nil {
			return err
		}
	}
	idx := dialect.QuoteIdent(objectName("sync_uuid_", pt.t.Name))
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("CREATE UNIQUE INDEX IF NOT EXISTS %s ON %s (%s)", idx, table, dialect.QuoteIdent(IdentityColumn))); err != nil {
		return err
	}
	// Identities already there (an application's own sync_uuid column)
	// must be UUIDs, stored in canonical form: they are compared as text.
	col := dialect.QuoteIdent(IdentityColumn)
	fill, canon := dialect.NewUUID(tx), dialect.CanonUUID(tx, col)
	if dialect.MustOf(tx) == dialect.SQLite {
		// (On PostgreSQL the cast to uuid refuses what is not a UUID.)
		var bad int
		if err := tx.QueryRowContext(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE %s IS NOT NULL AND %s IS NULL", table, col, canon)).Scan(&bad); err != nil {
			return err
		}
		if bad > 0 {
			return fmt.Errorf("%d rows have a %s that is not a UUID", bad, IdentityColumn)
		}
	}
	// (Most installs find nothing to do: an update, whose statement
	// compiles the table's capture triggers, is not worth preparing.)
	var todo bool
	if err := tx.QueryRowContext(ctx, fmt.Sprintf("SELECT EXISTS (SELECT 1 FROM %s WHERE %s IS NULL OR %s <> %s)", table, col, col, canon)).Scan(&todo); err != nil {
		return err
	}
	if !todo {
		return nil
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("UPDATE %s SET %s = %s WHERE %s IS NOT NULL AND %s <> %s", table, col, canon, col, col, canon)); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, fmt.Sprintf("UPDATE %s SET %s = %s WHERE %s IS NULL", table, col, fill, col))
	return err
}

// adoptTextKeys moves the versions of pt's rows (a text-keyed table)
// that an earlier release recorded under the rows' sync_uuid identities
// to their keys, the identities now: kept, they would be versions of no
// row, and the rows would take new versions of this node's (backfill),
// winning over other nodes' edits. The sync_uuid column stays (no longer
// filled); tombstones of its identities stay too (they delete nothing),
// and so do the versions of rows with a NULL key (SQLite: that release
// applied a peer's rows without their keys), which have no identity now.
func adoptTextKeys(ctx context.Context, tx bun.Tx, pt *ptable) error {
	have, err := dialect.HasColumn(ctx, tx, pt.t.Name, IdentityColumn)
	if err != nil || !have {
		return err
	}
	table, col, key := dialect.QuoteIdent(pt.t.Name), dialect.QuoteIdent(IdentityColumn), dialect.QuoteIdent(pt.t.PK.Name)
	_, err = tx.ExecContext(ctx, fmt.Sprintf(`UPDATE sync_lww SET row_id = (SELECT CAST(t.%s AS TEXT) FROM %s t WHERE t.%s = sync_lww.row_id)
WHERE content_type_id = ? AND row_id IN (SELECT t.%s FROM %s t WHERE t.%s IS NOT NULL AND NOT EXISTS (
  SELECT 1 FROM sync_lww l WHERE l.content_type_id = ? AND l.row_id = CAST(t.%s AS TEXT)))`,
		key, table, col, col, table, key, key), pt.t.ContentTypeID, pt.t.ContentTypeID)
	return err
}

// dropUntracked drops the capture triggers of the tables the node does
// not track (Config.DropUntracked), and on PostgreSQL their trigger
// functions. Only triggers named as this package names them, on the
// table their name is derived from, are dropped. The sync_uuid column
// and the versions in sync_lww stay.
func (n *Node) dropUntracked(ctx context.Context, tx bun.Tx, schema string, installed map[string]dialect.SQLiteTrigger) error {
	if n.kind != dialect.Postgres {
		for name, trg := range installed {
			if n.byName[trg.Table] != nil || !slices.Contains(sqliteTriggerNames(trg.Table), name) {
				continue
			}
			if _, err := tx.ExecContext(ctx, "DROP TRIGGER "+dialect.QuoteIdent(name)); err != nil {
				return err
			}
			delete(installed, name)
			n.log.InfoContext(ctx, "peer: capture trigger of an untracked table dropped", slog.String("table", trg.Table), slog.String("trigger", name))
		}
		return nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT cl.relname, tg.tgname FROM pg_trigger tg JOIN pg_class cl ON cl.oid = tg.tgrelid
WHERE cl.relnamespace = ?::regnamespace AND NOT tg.tgisinternal AND tg.tgname IN (?)`, dialect.QuoteIdent(schema), bun.List(pgTriggerNames))
	if err != nil {
		return err
	}
	type trigger struct{ table, name string }
	var drop []trigger
	for rows.Next() {
		var trg trigger
		if err := rows.Scan(&trg.table, &trg.name); err != nil {
			rows.Close()
			return err
		}
		if n.byName[trg.table] == nil {
			drop = append(drop, trg)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	var fns []string
	for _, trg := range drop {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("DROP TRIGGER %s ON %s.%s", dialect.QuoteIdent(trg.name), dialect.QuoteIdent(schema), dialect.QuoteIdent(trg.table))); err != nil {
			return err
		}
		n.log.InfoContext(ctx, "peer: capture trigger of an untracked table dropped", slog.String("table", trg.table), slog.String("trigger", trg.name))
		fns = append(fns, pgFunctionNames(trg.table)...)
		fns = append(fns, pgOldFunctionNames(trg.table)...)
	}
	return n.dropUnusedFunctions(ctx, tx, schema, fns)
}

// dropUnusedFunctions drops those of the trigger functions named fns in
// schema (PostgreSQL) that no trigger uses: a name of an earlier release
// (pgOldFunctionNames) may be another table's function, or the shared
// lock function, still in use.
func (n *Node) dropUnusedFunctions(ctx context.Context, tx bun.Tx, schema string, fns []string) error {
	if len(fns) == 0 {
		return nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT p.proname FROM pg_proc p WHERE p.pronamespace = ?::regnamespace AND p.proname IN (?)
AND p.prorettype = 'trigger'::regtype AND p.pronargs = 0 AND NOT EXISTS (SELECT 1 FROM pg_trigger tg WHERE tg.tgfoid = p.oid)`,
		dialect.QuoteIdent(schema), bun.List(fns))
	if err != nil {
		return err
	}
	var unused []string
	for rows.Next() {
		var fn string
		if err := rows.Scan(&fn); err != nil {
			rows.Close()
			return err
		}
		unused = append(unused, fn)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, fn := range unused {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("DROP FUNCTION %s.%s()", dialect.QuoteIdent(schema), dialect.QuoteIdent(fn))); err != nil {
			return err
		}
		n.log.InfoContext(ctx, "peer: unused trigger function dropped", slog.String("function", fn))
	}
	return nil
}

// installTriggers installs pt's capture triggers; installed holds the
// statements of the SQLite triggers there were (dialect.SQLiteTriggers):
// one already as wanted is left alone.
func (n *Node) installTriggers(ctx context.Context, tx bun.Tx, pt *ptable, schema string, installed map[string]dialect.SQLiteTrigger) error {
	if n.kind == dialect.Postgres {
		// A UUID key in a text column is checked by the trigger; a uuid
		// column holds no other form.
		checkKey := false
		if pt.keyIdentity && pt.t.KeyKind == protocol.KeyUUID {
			uuidCol, err := store.PGUUIDColumn(ctx, tx, dialect.QuoteIdent(schema)+"."+dialect.QuoteIdent(pt.t.Name), pt.t.PK.Name)
			if err != nil {
				return err
			}
			checkKey = !uuidCol
		}
		for _, q := range pt.pgSQL(schema, checkKey) {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}
	// SQLite fires a table's newest trigger first: the capture triggers
	// are re-created when one of the application's is newer, so that an
	// application's trigger that writes the row a statement just wrote
	// has that write versioned after the statement's own.
	triggers := pt.sqliteTriggers()
	if name, other := dialect.SQLiteTriggerElsewhere(installed, pt.t.Name, sqliteTriggerNames(pt.t.Name)); name != "" {
		return fmt.Errorf("%w: its capture trigger %s would replace the trigger of that name on table %s (SQLite trigger names are global); rename one of the tables",
			dbsync.ErrInvalidModel, name, other)
	}
	late := dialect.FiredLate(installed, func(name string) bool {
		return slices.ContainsFunc(triggers, func(c sqlTrigger) bool { return c.name == name })
	})[strings.ToLower(pt.t.Name)]
	for _, trg := range triggers {
		have, ok := installed[trg.name]
		if ok && have.SQL == trg.sql && !late {
			continue
		}
		if ok && late {
			if _, err := dialect.SetSQLiteTrigger(ctx, tx, trg.name, ""); err != nil {
				return err
			}
		}
		if _, err := dialect.SetSQLiteTrigger(ctx, tx, trg.name, trg.sql); err != nil {
			return err
		}
	}
	return nil
}

// uuidKeysCanonical fails when a row of pt, a table keyed by UUID, has a
// key that is not a UUID in canonical form (the column is text: on
// SQLite, or a text column on PostgreSQL): the capture triggers refuse
// such a write (uuidKeyNotCanonical), and a row written so before would
// be recorded under its own spelling, which the feed never finds. schema
// is the PostgreSQL schema of the node's tables.
func (n *Node) uuidKeysCanonical(ctx context.Context, tx bun.Tx, pt *ptable, schema string) error {
	qtable := dialect.QuoteIdent(pt.t.Name)
	if n.kind == dialect.Postgres {
		qtable = dialect.QuoteIdent(schema) + "." + qtable
	}
	key, err := store.NonCanonicalUUIDKey(ctx, tx, n.kind, qtable, pt.t.PK.Name)
	if err != nil || key == "" {
		return err
	}
	return fmt.Errorf("peer: %s (key %q): rewrite such keys, and the references to them, before peer.New", uuidKeyNotCanonical(pt.t.Name, pt.t.PK.Name), key)
}

// identExpr is the SQL of a row's identity in a query on its table.
func (pt *ptable) identExpr() string {
	if pt.keyIdentity {
		return "CAST(" + dialect.QuoteIdent(pt.t.PK.Name) + " AS TEXT)"
	}
	return dialect.QuoteIdent(IdentityColumn)
}

// backfill gives every row without a version one, written by this node
// now.
func (n *Node) backfill(ctx context.Context, tx bun.Tx, pt *ptable) error {
	var count int64
	missing := fmt.Sprintf("FROM %s WHERE %s NOT IN (SELECT row_id FROM sync_lww WHERE content_type_id = %d)",
		dialect.QuoteIdent(pt.t.Name), pt.identExpr(), pt.t.ContentTypeID)
	if err := tx.QueryRowContext(ctx, "SELECT count(*) "+missing).Scan(&count); err != nil {
		return err
	}
	if count == 0 {
		return nil
	}
	hlc, seq, err := n.tick(ctx, tx, count, 0)
	if err != nil {
		return err
	}
	// Rows get consecutive clocks and sequence numbers ending at the ones
	// just taken.
	_, err = tx.ExecContext(ctx, fmt.Sprintf(`INSERT INTO sync_lww (content_type_id, row_id, hlc, node, deleted, seq)
SELECT %d, ident, ? - ? + rn, ?, %s, ? - ? + rn FROM (SELECT %s AS ident, row_number() OVER (ORDER BY %s) AS rn %s) x`,
		pt.t.ContentTypeID, dialect.False(tx), pt.identExpr(), pt.identExpr(), missing),
		int64(hlc), count, n.id.String(), seq, count)
	return err
}

// tick advances the node's clock and sequence by count events, the clock
// at least to seen (a remote clock), under the node row's lock, and
// returns the last clock and sequence number taken.
func (n *Node) tick(ctx context.Context, tx bun.IDB, count int64, seen HLC) (HLC, int64, error) {
	now := hlcAt(n.cfg.Now())
	var hlc, seq int64
	err := tx.QueryRowContext(ctx, `UPDATE sync_lww_node SET hlc = CASE
  WHEN hlc + ? >= ? AND hlc + ? >= ? THEN hlc + ?
  WHEN ? >= ? THEN ? + ?
  ELSE ? + ? END,
  seq = seq + ? WHERE id = 1 RETURNING hlc, seq`,
		count, int64(now), count, int64(seen), count,
		int64(now), int64(seen), int64(now), count,
		int64(seen), count,
		count).Scan(&hlc, &seq)
	if err != nil {
		return 0, 0, fmt.Errorf("tick the node clock: %w", err)
	}
	return HLC(hlc), seq, nil
}

// Change is one row version of a change feed.
type Change struct {
	Table   string          `json:"table"`
	ID      string          `json:"id"`
	HLC     int64           `json:"hlc"`
	Node    string          `json:"node"`
	Deleted bool            `json:"deleted,omitempty"`
	Row     json.RawMessage `json:"row,omitempty"`
	Seq     int64           `json:"seq"`
}

// Batch is a page of a node's change feed.
type Batch struct {
	Changes []Change `json:"changes"`
	// Last is the feed position the batch covers up to (inclusive).
	Last int64 `json:"last"`
	// More is true when the feed holds changes after Last.
	More bool `json:"more,omitempty"`
	// Full marks the pages of a resynchronization: the whole state.
	Full bool `json:"full,omitempty"`
	// PurgedHLC is the node's tombstone horizon: a resynchronizing peer
	// deletes its rows older than it that the full state lacks.
	PurgedHLC int64 `json:"purged_hlc,omitempty"`
	// Own is true when the batch holds the asking peer's own versions too
	// (it asked: Position.Own).
	Own bool `json:"own,omitempty"`
	// Epoch is the feed's epoch when the batch was read (see Position).
	Epoch string `json:"epoch,omitempty"`
	// Received, on the pages of a resynchronization (Full), is how far
	// the node serving them has applied the asking peer's feed (its
	// cursor of that peer's feed, 0 when none): a resynchronizing node
	// keeps its own versions after it, which the serving node lacks
	// because it never received them, not because it deleted them.
	Received int64 `json:"received,omitempty"`
	// ReceivedEpoch is the epoch of the asking peer's feed that Received
	// was read in: the asking peer, when it was restored from a backup
	// since, holds Received valid only up to that epoch's end in its
	// feed, and keeps its own versions past it (written after the
	// restore, at positions the lost feed had used).
	ReceivedEpoch string `json:"received_epoch,omitempty"`
	// CursorEnd, on the pages of a resynchronization, is set when the
	// position the asking peer sent carried an epoch of this node's feed
	// other than the current one (its cursor's, a resynchronization after
	// a restore): how far that epoch holds here (its end, or 0 when this
	// node does not know it). The asking peer's cursor of this node is
	// valid up to there only: this node's versions past it, which reused
	// the positions of the lost feed, it never received.
	CursorEnd *int64 `json:"cursor_end,omitempty"`
}

// Position is how far a node has applied a peer's feed: the last
// position applied (Seq) and the feed's epoch when it was read (Epoch),
// which the feed's node checks (see Changes), and whether the node asks
// for its own versions too (Own: it was restored from a backup and lost
// writes, which its peers may hold).
//
// Each opening of a node (New) starts an epoch of its feed at the feed's
// head, and ends the epoch before there. A position is valid up to the end
// of its epoch: a node restored from a backup lacks the epochs, or the
// ends, of the positions its peers read past the backup (they name other
// changes now), and such a position takes the node's whole state. A
// restored database must be opened anew (New) before the application
// writes to it or it serves its feed. A position without an epoch (read
// before epochs, by or from an older release) is not checked.
type Position struct {
	Seq   int64  `json:"pulled_seq"`
	Epoch string `json:"epoch,omitempty"`
	Own   bool   `json:"own,omitempty"`
}

// ValidEpoch reports whether epoch has the form of an epoch as a node
// hands it out (a UUID in canonical form, as uuid.NewString writes it) or
// is absent (""). A position or a page from another node with any other
// epoch is malformed: the transports refuse it (peerhttp, stream) before
// it is checked (Changes) or recorded as a cursor's (Apply), where it
// would count as a restore of the node.
func ValidEpoch(epoch string) bool {
	if epoch == "" {
		return true
	}
	id, err := uuid.Parse(epoch)
	return err == nil && id.String() == epoch
}

// Valid reports whether p is a position as a node hands it out: Seq not
// negative, Epoch absent or a UUID in canonical form (ValidEpoch), what
// GET /changes takes (peerhttp.ParsePosition). A position another node
// reports as its cursor (peerhttp's GET /cursor answer, a stream's
// CURSOR frame) that is not valid is refused by the transports: taken, it
// would count as a restore of the node, which would then send its whole
// state.
func (p Position) Valid() bool { return p.Seq >= 0 && ValidEpoch(p.Epoch) }

// versionOf is a version as stored in sync_lww.
type versionOf struct {
	hlc     int64
	node    string
	deleted bool
}

func newer(a, b versionOf) bool {
	if a.hlc != b.hlc {
		return a.hlc > b.hlc
	}
	return a.node > b.node
}

// changeOverhead is about what a change costs in a batch besides its row,
// identity and table name (clock, node, flags, JSON punctuation).
const changeOverhead = 128

// encodedSize is the size of row once encoding/json has written it inside
// a batch (peerhttp, stream): it escapes <, > and & as \u003c (6 bytes
// for 1), and U+2028 and U+2029 (6 bytes for 3).
func encodedSize(row json.RawMessage) int {
	n := len(row)
	for _, c := range [...]string{"<", ">", "&"} {
		n += 5 * bytes.Count(row, []byte(c))
	}
	for _, c := range [...]string{"\u2028", "\u2029"} {
		n += 3 * bytes.Count(row, []byte(c))
	}
	return n
}

// Changes returns the node's changes after position after.Seq, at most
// limit (0: the configured batch size) and about Config.MaxBatchBytes of
// rows, leaving out those written by except (the asking peer has them)
// unless after.Own. With full, a resynchronization, every live row and
// tombstone is returned whatever the purge point. Otherwise a position
// not valid in its epoch (checkPosition: the node was restored from a
// backup, see Position) or older than the node's purge point is refused
// with ErrResync. A restore found so is recorded (the node's next pull
// from each peer asks for its own versions too, Position.Own) and logged.
func (n *Node) Changes(ctx context.Context, after Position, limit int, except uuid.UUID, full bool) (*Batch, error) {
	if limit <= 0 || limit > n.cfg.BatchSize {
		limit = n.cfg.BatchSize
	}
	b := &Batch{Last: after.Seq, Changes: []Change{}, Full: full, Own: after.Own}
	restored := false
	err := dialect.Snapshot(ctx, n.db, func(ctx context.Context, tx bun.Tx) error {
		var seq, purgedSeq, purgedHLC int64
		if err := tx.QueryRowContext(ctx, "SELECT n.seq, n.purged_seq, n.purged_hlc, f.epoch FROM sync_lww_node n, sync_lww_feed f WHERE n.id = 1 AND f.id = 1").Scan(&seq, &purgedSeq, &purgedHLC, &b.Epoch); err != nil {
			return err
		}
		if !full {
			// The epoch first: a restore must be found whatever else
			// refuses the position (a purge past it), else the peer's
			// resynchronization hides it.
			err := n.checkPosition(ctx, tx, after, b.Epoch, seq)
			restored = errors.Is(err, errRestored)
			if err != nil {
				return err
			}
			if after.Seq < purgedSeq {
				return fmt.Errorf("%w: position %d is before the purge point %d", ErrResync, after.Seq, purgedSeq)
			}
		}
		b.PurgedHLC = purgedHLC
		if full {
			if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(pulled_seq), 0) FROM sync_lww_peers WHERE peer = ?", except.String()).Scan(&b.Received); err != nil {
				return fmt.Errorf("read the cursor of %s: %w", except, err)
			}
			if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(epoch), '') FROM sync_lww_cursor_epochs WHERE peer = ?", except.String()).Scan(&b.ReceivedEpoch); err != nil {
				return fmt.Errorf("read the cursor of %s: %w", except, err)
			}
			if after.Epoch != "" && after.Epoch != b.Epoch {
				end, err := n.epochEnd(ctx, tx, after.Epoch)
				if err != nil {
					return err
				}
				b.CursorEnd = &end
			}
		}
		rows, err := tx.QueryContext(ctx, `SELECT content_type_id, row_id, hlc, node, deleted, seq FROM sync_lww
WHERE seq > ? ORDER BY seq LIMIT ?`, b.Last, limit+1)
		if err != nil {
			return err
		}
		// The page covers the feed's positions it read, versions of
		// tables no longer tracked (left out) too: counted apart, a page
		// of them ended the feed there (More false, Last not moving), and
		// a resynchronization took the state before them for the whole.
		var all []Change
		read := 0
		for rows.Next() {
			var c Change
			var ct int64
			if err := rows.Scan(&ct, &c.ID, &c.HLC, &c.Node, &c.Deleted, &c.Seq); err != nil {
				rows.Close()
				return err
			}
			if read++; read > limit {
				b.More = true
				break
			}
			b.Last = c.Seq
			pt := n.byCT[ct]
			if pt == nil {
				continue
			}
			c.Table = pt.t.Name
			all = append(all, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		skip := except.String()
		for _, c := range all {
			if c.Deleted && !dialect.PlainText(c.ID) {
				// The delete of a row whose text key is not valid UTF-8
				// without NUL: no peer received it (store.KeyArgs refuses
				// to read it, JSON cannot carry its key), and sent, its
				// key would name another row.
				continue
			}
			if c.Node != skip || full || after.Own {
				b.Changes = append(b.Changes, c)
			}
		}
		if b.Changes, err = n.loadRows(ctx, tx, b.Changes); err != nil {
			return err
		}
		// Rows of many kilobytes: the batch ends before MaxBatchBytes, the
		// next starts after its last change.
		size := 0
		for i, c := range b.Changes {
			size += encodedSize(c.Row) + len(c.ID) + len(c.Table) + changeOverhead
			if i > 0 && size > n.cfg.MaxBatchBytes {
				b.Changes, b.Last, b.More = b.Changes[:i], b.Changes[i-1].Seq, true
				break
			}
		}
		return nil
	})
	if restored {
		n.restored(ctx, b.Epoch, except, err)
	}
	if err != nil {
		return nil, err
	}
	return b, nil
}

// errRestored is a position past what this node's feed holds now in the
// position's epoch: the node was restored from a backup.
var errRestored = fmt.Errorf("%w: this node was restored from a backup since the position was read", ErrResync)

// checkPosition checks that pos is valid in its epoch (see Position), of
// the node's epochs in tx (current: the epoch now, head: the feed's last
// position). A position past the head is errRestored (the database
// restored under a running node, or a position from elsewhere). Up to
// the head, one of the current epoch is valid, one of an earlier epoch up
// to that epoch's end, and one without an epoch (read by or from a
// release before epochs) is not checked; any other (an epoch this node
// does not know, or past its end) is errRestored.
func (n *Node) checkPosition(ctx context.Context, tx bun.IDB, pos Position, current string, head int64) error {
	if pos.Seq > head {
		return fmt.Errorf("%w (position %d is beyond this node's feed, %d)", errRestored, pos.Seq, head)
	}
	if pos.Epoch == current || pos.Epoch == "" {
		return nil // "": read before epochs (an older release), unchecked
	}
	var end sql.NullInt64
	err := tx.QueryRowContext(ctx, "SELECT end_seq FROM sync_lww_epochs WHERE epoch = ?", pos.Epoch).Scan(&end)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w (position %d of epoch %q, which this node does not know)", errRestored, pos.Seq, pos.Epoch)
	}
	if err != nil {
		return fmt.Errorf("peer: read the feed's epochs: %w", err)
	}
	if end.Valid && pos.Seq > end.Int64 {
		return fmt.Errorf("%w (position %d of epoch %q, which ends at %d here)", errRestored, pos.Seq, pos.Epoch, end.Int64)
	}
	return nil
}

// epochEnd returns how far a position of epoch holds in this node's feed:
// the epoch's end, the feed's head for the current epoch, 0 for an epoch
// it does not know (read past a backup it was restored from).
func (n *Node) epochEnd(ctx context.Context, tx bun.IDB, epoch string) (int64, error) {
	var end sql.NullInt64
	err := tx.QueryRowContext(ctx, `SELECT CASE WHEN f.epoch = e.epoch THEN n.seq ELSE e.end_seq END
FROM sync_lww_epochs e, sync_lww_feed f, sync_lww_node n WHERE e.epoch = ? AND f.id = 1 AND n.id = 1`, epoch).Scan(&end)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("peer: read the feed's epochs: %w", err)
	}
	if !end.Valid {
		return 0, nil
	}
	return end.Int64, nil
}

// validReceived returns how much of this node's feed a peer's cursor of it
// (seq read in epoch) covers: all of it when the position is valid
// (checkPosition), else up to its epoch's end here, or none when the
// epoch is unknown (the node was restored from a backup since: its
// versions past there reuse positions of the lost feed, which the peer
// never received).
func (n *Node) validReceived(ctx context.Context, tx bun.IDB, seq int64, epoch string) (int64, error) {
	var current string
	var head int64
	if err := tx.QueryRowContext(ctx, "SELECT f.epoch, n.seq FROM sync_lww_feed f, sync_lww_node n WHERE f.id = 1 AND n.id = 1").Scan(&current, &head); err != nil {
		return 0, fmt.Errorf("peer: read the node: %w", err)
	}
	err := n.checkPosition(ctx, tx, Position{Seq: seq, Epoch: epoch}, current, head)
	if err == nil {
		return seq, nil
	}
	if !errors.Is(err, errRestored) {
		return 0, err
	}
	if epoch == "" || epoch == current {
		return min(seq, head), nil
	}
	end, err := n.epochEnd(ctx, tx, epoch)
	if err != nil {
		return 0, err
	}
	return min(seq, end), nil
}

// restored records that the position of peer rid showed this node lost
// writes (why; in the feed's epoch current): the node's next pull from
// each peer asks for its own versions too (Position.Own). Found again in
// the same epoch, it records nothing more.
//
// Only this node hands out positions of its feed, so one it does not hold
// means it was restored, or the peer is wrong (a bug, a peer that copied
// another node's cursors, or one that holds the secret and lies): it
// cannot tell. Either way the cost is bounded: the peer takes the whole
// state once (what a position 0 costs, which any peer may ask for), its
// cursor then is the feed's head, and the restore is recorded once per
// epoch. The warning names the peer, so that an operator who restored
// nothing can find it.
func (n *Node) restored(ctx context.Context, current string, rid uuid.UUID, why error) {
	n.log.WarnContext(ctx, "peer: a peer's cursor is past this node's feed: this node lost writes its peers had read (restored from a backup), or the peer's cursor is wrong; the peer takes this node's whole state, and this node asks each peer once for its own versions back",
		slog.String("peer", rid.String()), slog.String("error", why.Error()))
	if _, err := n.db.ExecContext(ctx, "UPDATE sync_lww_feed SET restores = restores + 1, restored_epoch = epoch WHERE id = 1 AND epoch = ? AND restored_epoch <> epoch",
		current); err != nil {
		n.log.ErrorContext(ctx, "peer: record a restore", slog.String("error", err.Error()))
	}
}

// newEpoch ends the feed's current epoch at its head and starts a new one
// there, in tx (install: each time the node is opened, before it writes).
func (n *Node) newEpoch(ctx context.Context, tx bun.Tx) error {
	_, seq, err := n.tick(ctx, tx, 0, 0) // the node row's lock: no write in between
	if err != nil {
		return err
	}
	epoch := uuid.NewString()
	if _, err := tx.ExecContext(ctx, "UPDATE sync_lww_epochs SET end_seq = ? WHERE epoch = (SELECT epoch FROM sync_lww_feed WHERE id = 1) AND end_seq IS NULL", seq); err != nil {
		return fmt.Errorf("end the feed's epoch: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO sync_lww_epochs (epoch, start_seq) VALUES (?, ?)", epoch, seq); err != nil {
		return fmt.Errorf("start an epoch of the feed: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE sync_lww_feed SET epoch = ? WHERE id = 1", epoch); err != nil {
		return fmt.Errorf("start an epoch of the feed: %w", err)
	}
	return nil
}

// loadRows fills the rows of live changes and returns the changes left
// (in place).
func (n *Node) loadRows(ctx context.Context, tx bun.IDB, changes []Change) ([]Change, error) {
	byTable := map[string][]int{}
	for i, c := range changes {
		if !c.Deleted {
			byTable[c.Table] = append(byTable[c.Table], i)
		}
	}
	for _, pt := range n.tables {
		idx := byTable[pt.t.Name]
		if len(idx) == 0 {
			continue
		}
		ids := make([]string, len(idx))
		pos := make(map[string]int, len(idx))
		for j, i := range idx {
			ids[j] = changes[i].ID
			pos[changes[i].ID] = i
		}
		err := n.readRows(ctx, tx, pt, ids, func(id string, raw json.RawMessage) {
			changes[pos[id]].Row = raw
		})
		if err != nil {
			return nil, err
		}
	}
	// A live version whose row is gone: the row was deleted by a write not
	// yet visible in this snapshot; its tombstone follows later.
	kept := changes[:0]
	for _, c := range changes {
		if c.Deleted || c.Row != nil {
			kept = append(kept, c)
		}
	}
	clear(changes[len(kept):])
	return kept, nil
}

// readRows reads rows by identity and hands each, encoded, to fn. Tables
// with an integer key are sent without their (local) primary key, and
// references to such tables as identities.
func (n *Node) readRows(ctx context.Context, tx bun.IDB, pt *ptable, ids []string, fn func(id string, raw json.RawMessage)) error {
	t := pt.t
	var outIDs []string
	var raws []json.RawMessage
	add := func(id string, raw []byte) {
		outIDs = append(outIDs, id)
		raws = append(raws, raw)
	}
	if pt.keyIdentity {
		err := store.Load(ctx, tx, t, ids, func(strct reflect.Value) error {
			raw, err := t.Codec().AppendRow(nil, strct)
			if err != nil {
				return err
			}
			add(t.Codec().KeyOf(strct), raw)
			return nil
		})
		if err != nil {
			return err
		}
	} else {
		keyOf, err := n.localKeys(ctx, tx, pt, ids)
		if err != nil {
			return err
		}
		idOf := make(map[string]string, len(keyOf))
		keys := make([]string, 0, len(keyOf))
		for id, k := range keyOf {
			idOf[k] = id
			keys = append(keys, k)
		}
		err = store.Load(ctx, tx, t, keys, func(strct reflect.Value) error {
			raw, err := t.Codec().AppendRowWithout(nil, strct, t.PK.Name)
			if err != nil {
				return err
			}
			add(idOf[t.Codec().KeyOf(strct)], raw)
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := n.refsToIdentities(ctx, tx, pt, outIDs, raws); err != nil {
		return err
	}
	for i, id := range outIDs {
		fn(id, raws[i])
	}
	return nil
}

func (n *Node) localKeys(ctx context.Context, tx bun.IDB, pt *ptable, ids []string) (map[string]string, error) {
	out := make(map[string]string, len(ids))
	for start := 0; start < len(ids); start += store.Batch {
		batch := ids[start:min(start+store.Batch, len(ids))]
		rows, err := tx.QueryContext(ctx, fmt.Sprintf("SELECT %s, CAST(%s AS TEXT) FROM %s WHERE %s IN (?)",
			dialect.QuoteIdent(IdentityColumn), dialect.QuoteIdent(pt.t.PK.Name), dialect.QuoteIdent(pt.t.Name), dialect.QuoteIdent(IdentityColumn)), bun.List(batch))
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id, k string
			if err := rows.Scan(&id, &k); err != nil {
				rows.Close()
				return nil, err
			}
			out[id] = k
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Cursor returns how far this node has applied the feed of peer, or,
// when it detected a restore since it last got that peer's feed with its
// own versions, the start of the feed with Position.Own. A stored cursor
// whose epoch is not one a node hands out (ValidEpoch: recorded unchecked
// by an earlier release, or a damaged database) is reset to the start of
// the feed, without an epoch: sent, the peer would refuse it at every
// pull (peerhttp answers 400, a stream ends) or take it for a restore of
// its own. The node reads the peer's whole feed again, once.
func (n *Node) Cursor(ctx context.Context, peer uuid.UUID) (Position, error) {
	var pos Position
	var reclaimed, restores int64
	err := n.db.QueryRowContext(ctx, `SELECT COALESCE(p.pulled_seq, 0), COALESCE(c.epoch, ''), COALESCE(c.reclaimed, 0), f.restores
FROM sync_lww_feed f LEFT JOIN sync_lww_peers p ON p.peer = ? LEFT JOIN sync_lww_cursor_epochs c ON c.peer = ? WHERE f.id = 1`,
		peer.String(), peer.String()).Scan(&pos.Seq, &pos.Epoch, &reclaimed, &restores)
	if err != nil {
		return Position{}, fmt.Errorf("peer: read the cursor: %w", err)
	}
	if !ValidEpoch(pos.Epoch) {
		if err := n.resetCursor(ctx, peer, pos.Epoch); err != nil {
			return Position{}, err
		}
		pos.Seq, pos.Epoch = 0, ""
	}
	if restores > reclaimed {
		// The node's own versions it lost may be anywhere in the peer's
		// feed, before the cursor too (pulls between the restore and its
		// detection left them out): it asks for the whole feed once.
		pos.Seq, pos.Epoch, pos.Own = 0, "", true
	}
	return pos, nil
}

// resetCursor sets this node's cursor for peer, whose stored epoch is
// malformed (see Cursor), to the start of the feed without an epoch,
// unless an apply recorded another epoch meanwhile.
func (n *Node) resetCursor(ctx context.Context, peer uuid.UUID, malformed string) error {
	n.log.WarnContext(ctx, "peer: the cursor stored for a peer has a malformed epoch: it starts over, and this node reads the peer's whole feed again",
		slog.String("peer", peer.String()), slog.String("epoch", malformed))
	err := n.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE sync_lww_cursor_epochs SET epoch = '' WHERE peer = ? AND epoch = ?", peer.String(), malformed)
		if err != nil {
			return err
		}
		if k, err := res.RowsAffected(); err != nil || k == 0 {
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE sync_lww_peers SET pulled_seq = 0 WHERE peer = ?", peer.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("peer: reset the cursor: %w", err)
	}
	return nil
}

// Digest summarizes the node's data: every row's identity, version and
// content, table by table. Two nodes hold the same data when their digests
// are equal. Time columns count by their instant (read in UTC, whichever
// zone the database answers in); other values as they are. A row
// referencing a row the node does not have fails it as it fails a sync
// (ErrConstraint, dbsync.ErrForeignKey).
func (n *Node) Digest(ctx context.Context) (string, error) {
	h := sha256.New()
	// One snapshot (repeatable read on PostgreSQL): under concurrent
	// writes a row and the row it references are read as of one moment.
	err := dialect.Snapshot(ctx, n.db, func(ctx context.Context, tx bun.Tx) error {
		for _, pt := range n.tables {
			fmt.Fprintf(h, "table %s\n", pt.t.Name)
			rows, err := tx.QueryContext(ctx, `SELECT row_id, hlc, node, deleted FROM sync_lww WHERE content_type_id = ? ORDER BY row_id`, pt.t.ContentTypeID)
			if err != nil {
				return err
			}
			var live []string
			for rows.Next() {
				var id, node string
				var hlc int64
				var deleted bool
				if err := rows.Scan(&id, &hlc, &node, &deleted); err != nil {
					rows.Close()
					return err
				}
				fmt.Fprintf(h, "%s %d %s %t\n", id, hlc, node, deleted)
				if !deleted {
					live = append(live, id)
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			// The rows' contents in identity order, a batch at a time:
			// memory for a batch of rows, not for the table.
			sort.Strings(live)
			times := timeColumns(pt.t)
			found := 0
			for start := 0; start < len(live); start += store.Batch {
				contents := map[string]json.RawMessage{}
				batch := live[start:min(start+store.Batch, len(live))]
				err := n.readRows(ctx, tx, pt, batch, func(id string, raw json.RawMessage) {
					contents[id] = raw
				})
				if err != nil {
					return err
				}
				for _, id := range batch {
					if c, ok := contents[id]; ok {
						c, err := utcTimes(c, times)
						if err != nil {
							return fmt.Errorf("digest of %s %s: %w", pt.t.Name, id, err)
						}
						fmt.Fprintf(h, "%s %s\n", id, c)
						found++
					}
				}
			}
			if found != len(live) {
				fmt.Fprintf(h, "missing rows: %d versions, %d rows\n", len(live), found)
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// timeColumns returns the names of t's columns that hold times: of wire
// class "time" (time.Time, *time.Time, sql.NullTime), or a struct
// embedding a time.Time (bun.NullTime).
func timeColumns(t *dbsync.Table) map[string]bool {
	out := map[string]bool{}
	for _, c := range t.Codec().Columns {
		typ := c.Field.StructField.Type
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if c.Class() == "time" || typ.Kind() == reflect.Struct && typ.NumField() == 1 &&
			typ.Field(0).Anonymous && typ.Field(0).Type == reflect.TypeFor[time.Time]() {
			out[c.Name] = true
		}
	}
	return out
}

// utcTimes returns row (a row's wire form) with the values of its time
// columns written in UTC: the databases read one instant back in
// different zones (PostgreSQL "+00:00", SQLite "Z"), which Digest must
// not count as a difference. Other columns are left as they are: a text
// that ends like a time is not one (Digest rewrote every `+00:00"` of a
// row, text included, and text values "x+00:00" and "xZ" hashed the same).
func utcTimes(row json.RawMessage, times map[string]bool) (json.RawMessage, error) {
	if len(times) == 0 {
		return row, nil
	}
	out := make([]byte, 0, len(row))
	out = append(out, '{')
	err := wire.ForEachMember(row, func(key string, val []byte) error {
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = wire.AppendString(out, key)
		out = append(out, ':')
		if times[key] && len(val) > 0 && val[0] == '"' {
			if s, err := wire.Unquote(val); err == nil {
				if tm, err := time.Parse(time.RFC3339Nano, s); err == nil {
					out = wire.AppendString(out, tm.UTC().Format(time.RFC3339Nano))
					return nil
				}
			}
		}
		out = append(out, val...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return append(out, '}'), nil
}

// Package client is the node side of dbsync: it registers with a server,
// pushes the node's captured changes, pulls and merges the server's, and
// can repair the local database or query the server's. It reaches the
// server through a [Transport]: HTTP to Config.URL by default
// ([HTTPTransport], docs/protocol.md), or Config.Transport.
//
//	reg, _ := dbsync.Track(db, (*List)(nil), (*Todo)(nil))
//	c, _ := client.New(ctx, db, reg, &client.Config{URL: "http://host/sync"})
//	if ok, _ := c.IsRegistered(ctx); !ok {
//		c.Register(ctx, nil)
//	}
//	// … the application writes to db as it likes, online or not …
//	res, err := c.Sync(ctx) // push; on rejection pull, merge, push again
//
// Every call is safe to retry. A push whose answer was lost is resent with
// the same push id and applied once; a pull or repair that fails leaves the
// local database as it was: it is applied in one transaction, rolled back
// on any failure (a response over 256 KiB is applied while it downloads,
// a smaller one once downloaded).
package client

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/spool"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
)

// Config tunes a [Client]. URL is required unless Transport is set.
type Config struct {
	// URL is where the server's handlers are mounted, e.g.
	// "https://example.com/sync".
	URL string
	// HTTPClient sends the requests. Default: a client with 30 s dial,
	// TLS handshake and response-header timeouts and no overall timeout (pulls and
	// repairs stream), following redirects on the server's host only
	// (NewHTTPTransport); pass contexts with deadlines to bound a call.
	HTTPClient *http.Client
	// Transport carries the procedures to the server. Default: an
	// HTTPTransport to URL with HTTPClient; when Transport is set, URL and
	// HTTPClient are not used.
	Transport Transport
	// Logger receives the client's log lines. Default: discard.
	Logger *slog.Logger
	// Policies sets the conflict policy of individual tables (by table
	// name, e.g. "todos"; New refuses a name that is not a tracked
	// table); DefaultPolicy the others. Default: merge.Default (dbsync's
	// rules). See merge.md.
	Policies      map[string]merge.Policy
	DefaultPolicy merge.Policy
	// MaxSyncRounds bounds the pulls of one Sync (each followed by a
	// push). Default 5.
	MaxSyncRounds int
	// ChunkSize asks the server for at most this many operations per pull
	// chunk (0: the server's default).
	ChunkSize int
	// PushChunkOperations and PushChunkBytes bound one request of a push:
	// when the log holds more pending operations (before compression), or
	// the body would be larger, the push is sent as a chunked push
	// (docs/protocol.md) of chunks within both bounds, when the Transport
	// is a ChunkedTransport. The log is then compressed, and read with its
	// rows, a page at a time. Defaults: 10000 operations and 8 MiB (the
	// server's default chunk limit is 16 MiB).
	PushChunkOperations int
	PushChunkBytes      int
	// SpoolDir is where pull responses over 256 KiB and repair responses
	// over 1 MiB are downloaded (smaller ones are held in memory): a
	// repair's before it is applied, a pull's as it is applied (Pull).
	// Default: os.TempDir(). It must be an existing directory: New
	// refuses one that is not.
	SpoolDir string
	// MaxDownloadBytes bounds the answer of one pull, repair or reset,
	// which may go to a file in SpoolDir: past it the download stops and
	// the call fails with dbsync.ErrTooLarge (nothing is written), so a
	// server, broken or hostile, that sends an answer without end cannot
	// fill the node's disk. Default: 64 GiB, more than the database of
	// any node should be (a repair's answer is about the size of the
	// node's copy of the pulled tables); raise it for a node whose
	// database is larger.
	MaxDownloadBytes int64
	// MaxQueryBytes bounds the rows QueryAll collects, counted as they
	// came (their JSON): a result past it fails with an error wrapping
	// dbsync.ErrTooLarge that names the bound, so that a large table (or
	// a server, broken or hostile, whose pages never end) cannot take
	// all the node's memory. QueryEach, which holds a page at a time, is
	// not bounded by it. Default 256 MiB; negative: no bound.
	MaxQueryBytes int64
	// StallTimeout bounds how long one read of a streamed answer (a
	// pull's, a repair's or a reset's, or a pull carried in a watch
	// answer) may wait for the answer's next bytes: past it the answer
	// is given up (its stream closed) and the call fails with an error
	// wrapping dbsync.ErrNetwork, nothing written, so a server or
	// connection that stalls mid-answer without closing cannot hold the
	// call for ever (Watch then retries, as after any network error).
	// Only the waits on the network count, not the answer's length, nor
	// the time the apply takes between reads. The default transport
	// bounds the reads of its JSON answers (a push's, a query's, …) by
	// it too. Default 60 s; negative: no bound (then only ctx bounds a
	// call).
	StallTimeout time.Duration
	// AnswerTimeout bounds how long the client reads one answer (a
	// pull's, a repair's or a reset's stream, a pull carried in a watch
	// answer, and the default transport's JSON answers), from its first
	// read: past it the answer is given up as StallTimeout gives it up
	// (dbsync.ErrNetwork, nothing written; Watch retries). StallTimeout
	// bounds each wait only: a server trickling a byte every
	// StallTimeout − ε holds a call until Config.MaxDownloadBytes at
	// that pace, years at the defaults, so a production client bounds
	// the whole, with this or with a ctx deadline on each call (Watch
	// runs with one ctx for all its syncs: only this bounds its carried
	// pulls). Set it above the longest answer the node's link takes (a
	// large repair or first pull). Default 0: no bound, only ctx.
	AnswerTimeout time.Duration
	// OnEvent receives one event per procedure (for metrics).
	OnEvent dbsync.EventFunc
	// OnMoved, when not nil, receives the keys a pull or a reset gave the
	// node's unpushed inserts (merge.md K1: the server's rows took their
	// keys), each as table, old key and new key, once that pull or reset
	// committed, whichever procedure ran it: Pull, Sync, Reset, and Watch,
	// which runs its syncs itself (PullResult.Moved and ResetResult.Moved
	// tell the caller of the others the same). An application that kept
	// a key from an insert maps it through them: the old key names
	// another node's row from then on. It is called holding the client's
	// lock: keep it fast, and do not call the client from it.
	OnMoved func(ctx context.Context, moves []merge.Move)
	// OnProgress receives progress reports during pushes, pulls, repairs
	// and resets (dbsync.Progress), one call at a time.
	OnProgress dbsync.ProgressFunc
	// Now returns the current time (request timestamps). Default: time.Now.
	Now func() time.Time
}

// Client is one node. It is safe for concurrent use; its procedures are
// serialized. One Client syncs a node database: the latest created on it
// (New records it in the database), in this process or another; the
// procedures of an earlier one fail with dbsync.ErrNodeInUse.
type Client struct {
	db   *bun.DB
	base *dbsync.Registry // as given to New
	// reg is base completed from the catalog. Migrate replaces it holding
	// both mu and regMu: the procedures (under mu) read it as is, the rest
	// through registry().
	reg   *dbsync.Registry
	regMu sync.RWMutex
	cfg   Config
	tr    transport // Config.Transport's answers checked
	log   *slog.Logger
	mu    chanMutex
	// owner is the client's id in sync_client_owner (owned).
	owner string
	// scoped names the tables a scoped server holds the node to, as its
	// latest pull header said (nil: none); guarded by mu. Read from
	// sync_node_tables (loadScoped) before the client's first pull, so
	// that a new Client knows them too; scopedLoaded is true once read.
	scoped       []string
	scopedLoaded bool
	// schemaRecorded is true once sync_node_schema is known to hold the
	// schema the node announces (which changes only with the models given
	// to New): nothing to backfill or record; guarded by mu.
	schemaRecorded bool
	// resetPage is how many keys of rows the server no longer has a reset
	// merges at a time (0: defaultResetPage); tests set it small.
	resetPage int
	// nullable is the text form of the nullability of the tracked tables'
	// columns whose field can be nil (store.Nullable), read with reg (setRegistry);
	// sent with every request (Call.Nullable); guarded by regMu.
	nullable string
	// keyEq holds, by table, how the node's database compares the keys
	// of a text-keyed table when not byte for byte (store.KeyEqualities:
	// "ABC" names the row "abc"), read with reg (setRegistry); guarded
	// by regMu. The merge takes such keys for one row (merge.md K2).
	keyEq map[string]string
	// logLockWait bounds the wait of a push's preparation for the
	// transactions writing the log (0: dialect.LogLockWait); tests set it
	// small.
	logLockWait time.Duration
	// maxLine bounds a line of a pull or repair answer (0:
	// protocol.MaxLineBytes); tests set it small.
	maxLine int
	// noWatchToken is set once a watch request naming the node's version
	// with its token (after_token) was refused 400 bad_request: a server
	// of an earlier release, which refuses unknown parameters. Watch
	// requests leave the token out from then on (pulls and pushes, whose
	// bodies such a server reads leniently, still carry it).
	noWatchToken atomic.Bool
	// progressMu keeps Config.OnProgress to one call at a time: a pull
	// reports its download and its apply from two goroutines.
	progressMu sync.Mutex
}

// chanMutex is a mutex whose Lock honours a context.
type chanMutex chan struct{}

// lock takes the client's procedure lock, once the client is still the
// one syncing its node database (owned); release it with c.mu.unlock.
func (c *Client) lock(ctx context.Context) error {
	if err := c.mu.lock(ctx); err != nil {
		return err
	}
	if err := c.owned(ctx, c.db); err != nil {
		c.mu.unlock()
		return err
	}
	return nil
}

// owned fails with dbsync.ErrNodeInUse once another Client was created on
// the node database (sync_client_owner holds its id): the latest Client
// syncs the node. Procedures check it when they start (lock), and their
// transactions that write the node's sync state check it again, in the
// transaction: a Client created meanwhile (in another process) stops
// this one's procedure before it writes.
func (c *Client) owned(ctx context.Context, db bun.IDB) error {
	if c.owner == "" {
		return nil // (tests: a Client of a release before sync_client_owner)
	}
	// On PostgreSQL the row is locked against New's update until the
	// transaction ends (FOR SHARE): a Client created meanwhile waits for
	// the checked transaction rather than let it commit after it. SQLite
	// serializes writing transactions already.
	q := "SELECT owner FROM sync_client_owner WHERE id = 1"
	if dialect.MustOf(db) == dialect.Postgres {
		q += " FOR SHARE"
	}
	var owner string
	err := db.NewRaw(q).Scan(ctx, &owner)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("client: read the node database's client: %w", err)
	}
	if owner != c.owner {
		return dbsync.ErrNodeInUse
	}
	return nil
}

// own records c as the Client syncing its node database (New).
func (c *Client) own(ctx context.Context) error {
	c.owner = uuid.NewString()
	_, err := c.db.NewRaw("INSERT INTO sync_client_owner (id, owner) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET owner = excluded.owner", c.owner).Exec(ctx)
	if err != nil {
		return fmt.Errorf("client: record the node database's client: %w", err)
	}
	return nil
}

func (m chanMutex) lock(ctx context.Context) error {
	select {
	case m <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m chanMutex) unlock() { <-m }

// New prepares db for sync (oplog.Install: sync tables, capture triggers on
// the pushed tables) and returns a client. Create the application's tables
// before calling New. On PostgreSQL it also makes the foreign keys between
// tracked tables DEFERRABLE INITIALLY IMMEDIATE, as server.New does. The
// client works on a copy of reg completed from the
// database catalog ([Client.Registry]); reg itself is not changed. A
// SQLite database must enforce foreign keys (_pragma=foreign_keys(1) in
// its DSN) when tracked tables reference each other, and have recursive
// triggers on (_pragma=recursive_triggers(1)): New refuses it otherwise
// (dbsync.ErrDatabaseSettings).
func New(ctx context.Context, db *bun.DB, reg *dbsync.Registry, cfg *Config) (*Client, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	tr := cfg.Transport
	if tr == nil {
		h, err := NewHTTPTransport(cfg.URL, cfg.HTTPClient)
		if err != nil {
			return nil, err
		}
		tr = h
	}
	if _, err := dialect.Of(db); err != nil {
		return nil, err
	}
	if reg == nil {
		return nil, errors.New("client: nil registry")
	}
	if err := checkPolicies(cfg.Policies, reg); err != nil {
		return nil, err
	}
	if err := spool.CheckDir(cfg.SpoolDir); err != nil {
		return nil, fmt.Errorf("client: Config.SpoolDir: %w", err)
	}
	c := &Client{db: db, base: reg, reg: reg, cfg: *cfg, tr: newTransport(tr), mu: make(chanMutex, 1)}
	if h, ok := tr.(*HTTPTransport); ok && cfg.Transport == nil {
		h.stall, h.answer = c.stallTimeout(), c.answerTimeout() // its JSON answers too
	}
	if c.cfg.Logger == nil {
		c.cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c.log = c.cfg.Logger
	if c.cfg.MaxSyncRounds <= 0 {
		c.cfg.MaxSyncRounds = 5
	}
	if c.cfg.PushChunkOperations <= 0 {
		c.cfg.PushChunkOperations = 10000
	}
	if c.cfg.PushChunkBytes <= 0 {
		c.cfg.PushChunkBytes = 8 << 20
	}
	if c.cfg.Now == nil {
		c.cfg.Now = time.Now
	}
	full, err := oplog.Install(ctx, db, reg, &oplog.InstallOptions{Client: true, Logger: c.log})
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if err := checkForeignKeysOn(ctx, db, full); err != nil {
		return nil, err
	}
	if err := c.setRegistry(ctx, full); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if err := c.own(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// checkPolicies refuses a key of Config.Policies that names no tracked
// table: that table would fall under the default policy unnoticed.
func checkPolicies(policies map[string]merge.Policy, reg *dbsync.Registry) error {
	keys := make([]string, 0, len(policies))
	for k := range policies {
		if reg.Table(k) == nil {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	sort.Strings(keys)
	tracked := make([]string, 0, len(reg.Tables()))
	for _, t := range reg.Tables() {
		tracked = append(tracked, t.Name)
	}
	return fmt.Errorf("client: Config.Policies names %q, not a tracked table (tracked: %s)", keys[0], strings.Join(tracked, ", "))
}

// checkForeignKeysOn refuses a SQLite database whose connections do not
// enforce foreign keys when tracked tables reference each other: its
// deletes would not cascade (nor be refused) locally, and the server would
// refuse every push that leaves rows referencing a deleted one.
func checkForeignKeysOn(ctx context.Context, db *bun.DB, reg *dbsync.Registry) error {
	if dialect.MustOf(db) != dialect.SQLite {
		return nil
	}
	var ref *dbsync.Table
	for _, t := range reg.Tables() {
		if len(t.ForeignKeys) > 0 {
			ref = t
			break
		}
	}
	if ref == nil {
		return nil
	}
	var on int
	if err := db.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&on); err != nil {
		return fmt.Errorf("client: read PRAGMA foreign_keys: %w", err)
	}
	if on != 1 {
		return fmt.Errorf("client: %w: SQLite foreign key enforcement is off, and tracked table %s references %s: open the database with _pragma=foreign_keys(1) in its DSN (README, Quick start), or its deletes neither cascade nor are refused and the server refuses its pushes",
			dbsync.ErrDatabaseSettings, ref.Name, ref.ForeignKeys[0].RefTable)
	}
	return nil
}

// ClockOffset returns how far the server's clock is ahead of the node's
// (Config.Now; negative: behind), as the server last said when it refused
// a request for its timestamp: the correction the transport adds to the
// timestamps it signs (HTTPTransport.ClockOffset; a Transport without a
// ClockOffset method reports 0). 0 until the node's clock was found off.
func (c *Client) ClockOffset() time.Duration {
	if co, ok := c.tr.tr.(interface{ ClockOffset() time.Duration }); ok {
		return co.ClockOffset()
	}
	return 0
}

// Registry returns the client's tracked tables: a copy of the registry
// given to New, with the foreign keys and unique indexes of the database
// catalog. Treat it as read-only.
func (c *Client) Registry() *dbsync.Registry { return c.registry() }

func (c *Client) registry() *dbsync.Registry {
	c.regMu.RLock()
	defer c.regMu.RUnlock()
	return c.reg
}

func (c *Client) policy(table string) merge.Policy {
	if p, ok := c.cfg.Policies[table]; ok && p != nil {
		return p
	}
	if c.cfg.DefaultPolicy != nil {
		return c.cfg.DefaultPolicy
	}
	return merge.Default
}

// moved hands a committed pull's or reset's moves to Config.OnMoved.
func (c *Client) moved(ctx context.Context, moves []merge.Move) {
	if c.cfg.OnMoved != nil && len(moves) > 0 {
		c.cfg.OnMoved(ctx, slices.Clone(moves))
	}
}

func (c *Client) emit(ctx context.Context, e dbsync.Event, start time.Time) {
	if c.cfg.OnEvent == nil {
		return
	}
	e.Side = "client"
	e.Duration = time.Since(start)
	c.cfg.OnEvent(ctx, e)
}

func (c *Client) progress(p dbsync.Progress) {
	if c.cfg.OnProgress != nil {
		c.progressMu.Lock()
		defer c.progressMu.Unlock()
		c.cfg.OnProgress(p)
	}
}

// node returns the node this client registered as (Register keeps one).
func (c *Client) node(ctx context.Context, db bun.IDB) (*models.Node, error) {
	var n models.Node
	err := db.NewSelect().Model(&n).OrderExpr("node_id DESC").Limit(1).Scan(ctx)
	if isNoRows(err) {
		return nil, dbsync.ErrNotRegistered
	}
	if err != nil {
		return nil, fmt.Errorf("load node: %w", err)
	}
	return &n, nil
}

// latestVersion returns the node's version (0 for none): the newest server
// version up to which it holds every version. sync_versions holds no
// version past a gap: the node's own rebased versions are recorded by the
// pull that fills the gap (pushed).
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

// latestIdentity returns the node's version (0 for none) and its token
// ("" when the node has none for it: the version is named by number
// only).
func latestIdentity(ctx context.Context, db bun.IDB) (int64, string, error) {
	var rows []struct {
		VersionID int64   `bun:"version_id"`
		Token     *string `bun:"token"`
	}
	if err := db.NewRaw(`SELECT v.version_id, t.token FROM sync_versions v
LEFT JOIN sync_version_tokens t ON t.version_id = v.version_id ORDER BY v.version_id DESC LIMIT 1`).Scan(ctx, &rows); err != nil {
		return 0, "", fmt.Errorf("latest version: %w", err)
	}
	if len(rows) == 0 {
		return 0, "", nil
	}
	if rows[0].Token == nil {
		return rows[0].VersionID, "", nil
	}
	return rows[0].VersionID, *rows[0].Token, nil
}

// baseToken returns the token the node holds for a push's base (nil:
// none), "" when it holds none.
func baseToken(ctx context.Context, db bun.IDB, base *int64) (string, error) {
	if base == nil {
		return "", nil
	}
	var tokens []string
	if err := db.NewRaw("SELECT token FROM sync_version_tokens WHERE version_id = ?", *base).Scan(ctx, &tokens); err != nil {
		return "", fmt.Errorf("read version %d's token: %w", *base, err)
	}
	if len(tokens) == 0 {
		return "", nil
	}
	return tokens[0], nil
}

// recordVersion records that the node holds version, with its token
// ("": none), created at created, by node (nil: none known). A version
// recorded already keeps its row; its token is the one the server last
// gave.
func recordVersion(ctx context.Context, tx bun.IDB, version int64, node *int64, created time.Time, token string) error {
	if _, err := tx.NewInsert().Model(&models.Version{VersionID: version, NodeID: node, Created: created}).
		On("CONFLICT (version_id) DO NOTHING").Exec(ctx); err != nil {
		return err
	}
	return recordTokens(ctx, tx, []models.VersionToken{{VersionID: version, Token: token}})
}

// recordTokens records versions' tokens (those without one are skipped).
func recordTokens(ctx context.Context, tx bun.IDB, tokens []models.VersionToken) error {
	tokens = slices.DeleteFunc(tokens, func(t models.VersionToken) bool { return t.Token == "" })
	if len(tokens) == 0 {
		return nil
	}
	if _, err := tx.NewInsert().Model(&tokens).On("CONFLICT (version_id) DO UPDATE").Set("token = EXCLUDED.token").Exec(ctx); err != nil {
		return fmt.Errorf("record version tokens: %w", err)
	}
	return nil
}

// call is what a request of node carries besides its arguments; node nil
// for register.
func (c *Client) call(node *models.Node) *Call {
	c.regMu.RLock()
	ns, nullable := c.reg.NodeSchema(), c.nullable
	c.regMu.RUnlock()
	call := &Call{Schema: ns.Fingerprint(), Tables: ns.String(), Nullable: nullable, Time: c.cfg.Now()}
	if node != nil {
		call.NodeID, call.Secret = node.NodeID, node.Secret
	}
	return call
}

func versionPtr(v int64) *int64 {
	if v == 0 {
		return nil
	}
	return &v
}

func isNoRows(err error) bool { return errors.Is(err, sqlErrNoRows) }

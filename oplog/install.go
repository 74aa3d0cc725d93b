// Package oplog captures changes to tracked tables into the operations log
// (sync_operations) and compresses that log.
//
// # Capture
//
// [Install] creates dbsync's tables (package migrations) and, for every
// tracked table, capture triggers generated from the bun model: AFTER
// INSERT, UPDATE and DELETE row triggers (and a BEFORE TRUNCATE trigger on
// PostgreSQL). Because the database itself records each change, in the
// statement that makes it, nothing escapes: bun model queries, bulk and
// Where-only updates, raw SQL, ON DELETE CASCADE children, writes from other
// processes. A rolled-back transaction rolls its operations back with it.
// An UPDATE that changes the primary key is logged as a delete of the old
// key and an insert of the new one.
//
// dbsync's own writes (applying a pull, a repair, a push on the server) run
// with capture switched off or tagged with a version (internal/dialect), so
// pulled changes are never logged again as local ones.
//
// The [Guard] query hook refuses the statements that would silently escape
// capture (DROP TABLE, ALTER TABLE … RENAME, dropping capture triggers,
// and on PostgreSQL disabling them) on tracked tables.
//
// # Compression
//
// [CompressLocal] and [CompressRemote] implement python-sync-db's two rule
// sets (merge.md, rules C1–C7 and R1–R8): the local log before a push, and
// the operations a pull brings.
package oplog

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/migrations"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// ErrCaptureMissing is returned by [Check] when a tracked table has lost its
// capture triggers (for example after SQLite rebuilt the table during a
// migration outside [Migrate]). Run [Install] again (client pushes do
// it by themselves).
var ErrCaptureMissing = errors.New("dbsync: capture triggers missing")

// ErrTableMissing is returned by [Install] when a tracked table does not
// exist yet: create the application's tables first.
var ErrTableMissing = errors.New("dbsync: tracked table does not exist")

// ErrColumnMissing is returned by [Install] when a tracked table lacks a
// column of its model: migrate the table before starting the release
// whose models have the column. (peer.New returns it too, wrapped in
// dbsync.ErrInvalidModel.) A generated column in a model is
// dbsync.ErrInvalidModel, and so is a PostgreSQL json or jsonb column
// whose field's values are not JSON (a *dbsync.ColumnTypeError: bun's
// CreateTable declares jsonb for sql.NullInt32 and sql.Null[T]).
var ErrColumnMissing = store.ErrColumnMissing

// InstallOptions tune [Install]. The zero value (or nil) suits a server.
type InstallOptions struct {
	// Client is true for a client node's database. Pull-only tables get no
	// capture triggers there (their local changes are never pushed), as in
	// python-sync-db.
	Client bool
	// KeepConstraints, on PostgreSQL, leaves foreign keys between tracked
	// tables as they are. By default Install makes them DEFERRABLE
	// INITIALLY IMMEDIATE: the application sees no difference, and sync can
	// defer the checks to commit while it applies a batch of rows.
	KeepConstraints bool
	// Logger receives a line for each schema change Install makes, and a
	// warning for each tracked table whose integer key has no sequence
	// (a deleted row's key may be given to a new row: merge.md K1).
	// Default: discard.
	Logger *slog.Logger
	// Check, when set, runs first in the transaction of Install and
	// Migrate (after the install lock, before the migration): an error
	// ends it, nothing changed. client.Client checks with it that it
	// still syncs the node database (dbsync.ErrNodeInUse).
	Check func(ctx context.Context, tx bun.IDB) error
}

// pgLockClass serializes Install across processes on one PostgreSQL
// schema ("dbsI": the first half of the advisory lock key).
const pgLockClass = 0x6462_7349

// Install prepares db for sync: it creates or upgrades dbsync's tables,
// records the tracked tables' content types, reads their foreign keys and
// unique indexes from the catalog, and creates or refreshes the capture
// triggers. On a server (InstallOptions.Client false) a table tracked for
// the first time has the rows it already holds logged as inserts, pending
// like direct writes, so that nodes pull them; on a node
// (InstallOptions.Client) the capture of a table reg no longer tracks is
// removed, and on SQLite a renamed tracked table loses the triggers of
// its old name (dropUntrackedCapture). It returns reg completed
// with the catalog's constraints (Registry.WithCatalog); reg itself is not
// changed. It is idempotent; call it at every start, after the
// application's own migrations (client.New and server.New do).
func Install(ctx context.Context, db *bun.DB, reg *dbsync.Registry, opts *InstallOptions) (*dbsync.Registry, error) {
	return Migrate(ctx, db, reg, opts, nil)
}

// migrating marks a context inside [Migrate] (and so [Install]): the
// [Guard] lets its statements through.
type migrating struct{}

// Migrate runs the application's schema migration fn and [Install] in one
// transaction: when fn rebuilds a tracked table (SQLite drops a table's
// triggers with it: a column type change, a dropped column or a new
// constraint is done by creating a new table, copying the rows, dropping
// the old one and renaming the new; ALTER TABLE … DROP COLUMN fails on a
// tracked table, whose update trigger names every column), the capture
// triggers are back before
// the transaction commits, so no write can slip between the rebuild and
// the triggers. The [Guard] lets fn's statements through (DROP TABLE and
// RENAME included) when they run with the context fn is given.
//
// fn's own writes to tracked tables are captured like any other (a
// backfilling UPDATE is logged and pushed); the rows a rebuild copies are
// not (the new table has no triggers yet, and a DROP TABLE deletes
// nothing row by row). A nil fn is [Install].
//
// On SQLite fn runs with foreign key enforcement off, as SQLite's
// procedure for schema changes does: with it on, DROP TABLE first deletes
// the table's rows and runs their ON DELETE actions, so rebuilding a
// table that others reference deleted (or set NULL) every referencing
// row, and logged those changes. fn's own deletes run no ON DELETE action
// either: a row left referencing a missing one fails Migrate with
// dbsync.ErrForeignKey naming rows (PRAGMA foreign_key_check), nothing
// applied; rows that referenced missing rows before fn ran do not.
//
// On PostgreSQL a transaction that the deadlock detector fails (SQLSTATE
// 40P01: another server process pushing while the triggers are
// re-created) runs again, fn too, up to 8 times: fn must do nothing
// outside the transaction it is given.
func Migrate(ctx context.Context, db *bun.DB, reg *dbsync.Registry, opts *InstallOptions, fn func(ctx context.Context, tx bun.Tx) error) (*dbsync.Registry, error) {
	if opts == nil {
		opts = &InstallOptions{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	kind, err := dialect.Of(db)
	if err != nil {
		return nil, err
	}
	if err := checkObjectNames(reg); err != nil {
		return nil, err
	}
	if err := dialect.CheckRecursiveTriggers(ctx, db); err != nil {
		return nil, fmt.Errorf("%w: %w", dbsync.ErrDatabaseSettings, err)
	}
	// The Guard lets dbsync's own statements (dropping and creating
	// capture triggers) and fn's through.
	ctx = context.WithValue(ctx, migrating{}, true)
	if err := migrations.Migrate(ctx, db); err != nil {
		return nil, err
	}
	var cat dbsync.Catalog
	// On PostgreSQL the transaction locks tracked tables (capture
	// triggers re-created, fn's DDL) and the log (its indexes) while other
	// server processes on the database push: a push holding a tracked
	// table and waiting for the log, the transaction holding the log and
	// waiting for the table, PostgreSQL fails one of the two (40P01).
	// Nothing of it committed: it runs again, fn too.
	for attempt := 1; ; attempt++ {
		cat, err = migrateTx(ctx, db, kind, reg, opts, fn, log)
		if err == nil || attempt == installDeadlockAttempts || !dialect.IsDeadlock(err) || ctx.Err() != nil {
			break
		}
		log.InfoContext(ctx, "oplog: install deadlocked with another transaction; retrying", slog.Int("attempt", attempt), slog.Any("err", err))
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, err
	}
	return reg.WithCatalog(cat), nil
}

// installDeadlockAttempts bounds the runs of Migrate's transaction that
// PostgreSQL's deadlock detector fails.
const installDeadlockAttempts = 8

// migrateTx is one run of [Migrate]'s transaction. On SQLite a migration
// (fn) runs in dialect.ApplyTx, with foreign key enforcement off on its
// connection and restored after (or the connection discarded):
// SQLite's DROP TABLE first deletes the table's rows, running their ON
// DELETE actions when enforcement is on, so a table rebuilt so (new
// table, copy, DROP TABLE, rename: SQLite's way to change or drop a
// column) had its children deleted, or set NULL, and those changes
// logged and pushed. SQLite's procedure for schema changes turns
// enforcement off and checks the references before the commit
// (newDangling).
func migrateTx(ctx context.Context, db *bun.DB, kind dialect.Kind, reg *dbsync.Registry, opts *InstallOptions, fn func(ctx context.Context, tx bun.Tx) error, log *slog.Logger) (dbsync.Catalog, error) {
	var cat dbsync.Catalog
	run := func(f func(ctx context.Context, tx bun.Tx) error) error { return db.RunInTx(ctx, nil, f) }
	if kind == dialect.SQLite && fn != nil {
		run = func(f func(ctx context.Context, tx bun.Tx) error) error { return dialect.ApplyTx(ctx, db, f) }
	}
	err := run(func(ctx context.Context, tx bun.Tx) error {
		schema, err := dialect.LockInstall(ctx, tx, pgLockClass)
		if err != nil {
			return err
		}
		if opts.Check != nil {
			if err := opts.Check(ctx, tx); err != nil {
				return err
			}
		}
		if fn != nil {
			check := kind == dialect.SQLite && dialect.EnforcesForeignKeys(ctx)
			var before map[string]int
			if check {
				if before, err = dialect.ForeignKeyViolations(ctx, tx); err != nil {
					return fmt.Errorf("migration: %w", err)
				}
			}
			if err := fn(ctx, tx); err != nil {
				return fmt.Errorf("migration: %w", err)
			}
			if check {
				if err := newDangling(ctx, tx, before); err != nil {
					return err
				}
			}
		}
		cat, err = install(ctx, tx, kind, schema, reg, opts, log)
		return err
	})
	return cat, err
}

// newDangling refuses (dbsync.ErrForeignKey, naming rows) a SQLite
// migration run with enforcement off that left rows referencing missing
// rows in tables that had fewer such rows before it (before:
// dialect.ForeignKeyViolations): rows the application wrote so earlier,
// with enforcement off, do not fail every later migration.
func newDangling(ctx context.Context, tx bun.Tx, before map[string]int) error {
	after, err := dialect.ForeignKeyViolations(ctx, tx)
	if err != nil {
		return fmt.Errorf("migration: %w", err)
	}
	var grown []string
	for t, k := range after {
		if k > before[t] {
			grown = append(grown, t)
		}
	}
	if len(grown) == 0 {
		return nil
	}
	slices.Sort(grown)
	err = dialect.ForeignKeyCheck(ctx, tx, grown)
	if err == nil {
		err = fmt.Errorf("%w: rows of %s", dbsync.ErrForeignKey, strings.Join(grown, ", "))
	}
	return fmt.Errorf("migration: it left rows referencing missing rows (run with SQLite's foreign key enforcement off, as its schema changes are: its deletes run no ON DELETE action): %w", err)
}

// install is [Migrate]'s part after the migration, in its transaction.
func install(ctx context.Context, tx bun.Tx, kind dialect.Kind, schema string, reg *dbsync.Registry, opts *InstallOptions, log *slog.Logger) (dbsync.Catalog, error) {
	var cat dbsync.Catalog
	tables := reg.Tables()
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.Name
	}
	if err := checkTablesExist(ctx, tx, names); err != nil {
		return cat, err
	}
	if err := store.CheckColumns(ctx, tx, tables); err != nil {
		return cat, err
	}
	if kind == dialect.Postgres {
		if err := checkKeysImmediate(ctx, tx, tables); err != nil {
			return cat, err
		}
	}
	// The tables tracked here before: the others are captured for the
	// first time (logExisting).
	known := map[int64]bool{}
	if len(tables) > 0 {
		var ids []int64
		if err := tx.NewSelect().Model((*models.ContentType)(nil)).Column("content_type_id").Scan(ctx, &ids); err != nil {
			return cat, fmt.Errorf("read content types: %w", err)
		}
		for _, id := range ids {
			known[id] = true
		}
		cts := make([]models.ContentType, len(tables))
		for i, t := range tables {
			cts[i] = models.ContentType{ContentTypeID: t.ContentTypeID, TableName: t.Name, ModelName: t.ModelName}
		}
		if _, err := tx.NewInsert().Model(&cts).
			On("CONFLICT (content_type_id) DO UPDATE").
			Set("table_name = EXCLUDED.table_name, model_name = EXCLUDED.model_name").
			Exec(ctx); err != nil {
			return cat, fmt.Errorf("record content types: %w", err)
		}
	}
	fks, altered, err := store.AdoptForeignKeys(ctx, tx, reg, schema, opts.KeepConstraints)
	if err != nil {
		return cat, err
	}
	cat.ForeignKeys = fks
	for _, c := range altered {
		log.InfoContext(ctx, "oplog: foreign key made deferrable", slog.String("constraint", c))
	}
	uniques, err := dialect.UniqueIndexes(ctx, tx, names)
	if err != nil {
		return cat, err
	}
	cat.Uniques = map[string][][]string{}
	for _, u := range uniques {
		cat.Uniques[u.Table] = append(cat.Uniques[u.Table], u.Columns)
	}
	// A server reads its log by version (pulls), looks for pending
	// direct writes, and asks whether the rows of a push changed after its
	// base (rebase: by row, then version); a client's log holds only
	// pending operations, read whole, so the indexes would only slow every
	// write down.
	for _, ix := range [][2]string{
		{"sync_operations_version_id_idx", "version_id"},
		{"sync_operations_row_idx", "content_type_id, row_id, version_id"},
	} {
		name, q := ix[0], "DROP INDEX IF EXISTS "+ix[0]
		if !opts.Client {
			q = "CREATE INDEX IF NOT EXISTS " + name + " ON sync_operations (" + ix[1] + ")"
		}
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return cat, fmt.Errorf("log index %s: %w", name, err)
		}
	}
	var all map[string]dialect.SQLiteTrigger // SQLite: the triggers there are
	var existing map[string]string           // SQLite: the capture triggers there are
	var late map[string]bool
	if kind == dialect.SQLite {
		if all, err = dialect.SQLiteTriggers(ctx, tx); err != nil {
			return cat, err
		}
		existing, late = sqliteTriggerSQL(all, tables)
	}
	// A table syncs in one mode: each mode's capture switch silences its
	// own triggers only, so each would log what the other applies as the
	// node's own writes.
	peerCaptured, err := dialect.CapturedInto(ctx, tx, schema, all, dialect.PeerVersions, names)
	if err != nil {
		return cat, err
	}
	if len(peerCaptured) > 0 {
		return cat, fmt.Errorf("%w: %s: synced in peer mode in this database (peer.New installed its capture triggers); a table syncs in one mode only: each mode would log the rows the other applies as the node's own writes. Take it out of one mode (peer.Config.DropUntracked drops the peer's triggers of tables its registry no longer holds)",
			dbsync.ErrInvalidModel, strings.Join(peerCaptured, ", "))
	}
	if opts.Client || kind == dialect.SQLite {
		if err := dropUntrackedCapture(ctx, tx, kind, schema, names, all, opts.Client, log); err != nil {
			return cat, err
		}
		if kind == dialect.SQLite {
			existing, late = sqliteTriggerSQL(all, tables) // less those dropped
		}
	}
	for _, t := range tables {
		capture := !(opts.Client && !t.Direction.Pushed())
		// A server's rows written before the table was first captured are
		// in no version: logged now (as direct writes are), nodes pull
		// them. Only then: once tracked, a row may have no operation left
		// because the log was trimmed.
		fresh := false
		if capture && !opts.Client && !known[t.ContentTypeID] {
			if fresh, err = captureAbsent(ctx, tx, kind, t, existing); err != nil {
				return cat, fmt.Errorf("capture triggers of %s: %w", t.Name, err)
			}
		}
		if capture && opts.Client && !known[t.ContentTypeID] {
			if err := warnUncaptured(ctx, tx, kind, schema, t, existing, log); err != nil {
				return cat, err
			}
		}
		var err error
		if kind == dialect.Postgres {
			err = installPG(ctx, tx, t, schema, capture, log)
		} else {
			if capture {
				var own []string // t's capture trigger names
				for _, trg := range sqliteTriggers(t) {
					own = append(own, trg.name)
				}
				if name, other := dialect.SQLiteTriggerElsewhere(all, t.Name, own); name != "" {
					return cat, fmt.Errorf("%w: %s: its capture trigger %s would replace the trigger of that name on table %s (SQLite trigger names are global); rename one of the tables",
						dbsync.ErrInvalidModel, t.Name, name, other)
				}
			}
			err = installSQLite(ctx, tx, t, capture, existing, late[strings.ToLower(t.Name)], log)
		}
		if err != nil {
			return cat, fmt.Errorf("capture triggers of %s: %w", t.Name, err)
		}
		if t.KeyKind == protocol.KeyInt {
			if err := warnNoKeySequence(ctx, tx, schema, t, log); err != nil {
				return cat, err
			}
		}
		if kind == dialect.SQLite {
			if err := warnNumericText(ctx, tx, t, log); err != nil {
				return cat, err
			}
		} else if err := warnNarrowIntegers(ctx, tx, t, log); err != nil {
			return cat, err
		} else if err := warnLossyTypes(ctx, tx, t, log); err != nil {
			return cat, err
		}
		if fresh {
			if t.KeyKind == protocol.KeyUUID {
				qtable := string(t.Schema().SQLName)
				if kind == dialect.Postgres {
					qtable = dialect.QuoteIdent(schema) + "." + dialect.QuoteIdent(t.Name)
				}
				key, err := store.NonCanonicalUUIDKey(ctx, tx, kind, qtable, t.PK.Name)
				if err != nil {
					return cat, err
				}
				if key != "" {
					return cat, fmt.Errorf("%s (key %q): rewrite such keys, and the references to them, before capturing the table", uuidKeyNotCanonical(t), key)
				}
			}
			if err := logExisting(ctx, tx, kind, schema, t, log); err != nil {
				return cat, err
			}
		}
	}
	return cat, nil
}

// dropUntrackedCapture removes, on a node, the capture triggers (and
// PostgreSQL trigger functions) of tables the registry does not track,
// tracked by an earlier release: their writes would still be logged,
// then deleted unsent by the next push. A server keeps them: during a
// rolling upgrade, servers of the earlier release still serve that table.
// On SQLite, node and server alike, it also removes from a tracked table
// the capture triggers named after another table: a renamed table keeps
// its triggers (ALTER TABLE … RENAME TO), which would log each of its
// writes a second time under its old name.
// all holds SQLite's triggers (dialect.SQLiteTriggers); those dropped
// are deleted from it.
func dropUntrackedCapture(ctx context.Context, tx bun.IDB, kind dialect.Kind, schema string, tracked []string, all map[string]dialect.SQLiteTrigger, client bool, log *slog.Logger) error {
	trackedAs := func(table string) (string, bool) {
		i := slices.IndexFunc(tracked, func(n string) bool {
			return n == table || kind == dialect.SQLite && strings.EqualFold(n, table)
		})
		if i < 0 {
			return "", false
		}
		return tracked[i], true
	}
	isTracked := func(table string) bool {
		_, ok := trackedAs(table)
		return ok
	}
	var stmts, funcs []string // triggers first: both use the function
	var tables []string
	if kind == dialect.Postgres {
		var rows []struct {
			Table    string `bun:"relname"`
			Trigger  string `bun:"tgname"`
			Function string `bun:"proname"`
		}
		if err := tx.NewRaw(`SELECT c.relname, t.tgname, p.proname FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid
WHERE c.relnamespace = ?::regnamespace AND t.tgname IN (?, ?, ?) AND NOT t.tgisinternal
ORDER BY c.relname, t.tgname`, dialect.QuoteIdent(schema), pgRowTrigger, pgOldRowTrigger, pgTruncateTrigger).Scan(ctx, &rows); err != nil {
			return fmt.Errorf("read capture triggers: %w", err)
		}
		for _, r := range rows {
			if isTracked(r.Table) || !strings.HasPrefix(r.Function, "sync_capture_") {
				continue
			}
			qtable := dialect.QuoteIdent(schema) + "." + dialect.QuoteIdent(r.Table)
			stmts = append(stmts, fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s", dialect.QuoteIdent(r.Trigger), qtable))
			tables = append(tables, r.Table)
			if slices.ContainsFunc(tracked, func(n string) bool { return objectName("sync_capture_", n) == r.Function }) {
				continue // a tracked table's too (names clash): kept
			}
			funcs = append(funcs, fmt.Sprintf("DROP FUNCTION IF EXISTS %s.%s()", dialect.QuoteIdent(schema), dialect.QuoteIdent(r.Function)))
		}
	} else {
		// dbsync's triggers: named sync_…, logging into sync_operations
		// while client/server sync's capture switch is on (sqliteTriggers).
		rows := make([]dialect.SQLiteTrigger, 0, len(all))
		for _, r := range all {
			rows = append(rows, r)
		}
		slices.SortFunc(rows, func(a, b dialect.SQLiteTrigger) int {
			return cmp.Or(strings.Compare(a.Table, b.Table), strings.Compare(a.Name, b.Name))
		})
		for _, r := range rows {
			if !strings.HasPrefix(r.Name, "sync_") || !strings.Contains(r.SQL, sqliteTriggerLog) || !strings.Contains(r.SQL, dialect.OplogSwitch.SQLiteOn()) {
				continue
			}
			if name, ok := trackedAs(r.Table); ok {
				if slices.ContainsFunc([]string{"ai", "au", "ak", "ad"}, func(suffix string) bool {
					return strings.EqualFold(r.Name, objectName("sync_", name)+"_"+suffix)
				}) {
					continue // the table's own
				}
			} else if !client {
				continue
			}
			stmts = append(stmts, "DROP TRIGGER IF EXISTS "+dialect.QuoteIdent(r.Name))
			tables = append(tables, r.Table)
			delete(all, r.Name) // no longer there for the install that follows
		}
	}
	slices.Sort(funcs)
	for _, q := range append(stmts, slices.Compact(funcs)...) {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("drop the capture of an untracked table: %w", err)
		}
	}
	for _, t := range slices.Compact(tables) {
		log.InfoContext(ctx, "oplog: capture triggers of a table no longer tracked, or of a tracked table's earlier name, removed", slog.String("table", t))
	}
	return nil
}

// warnNoKeySequence logs a warning when t's integer key has no sequence
// (dialect.HasKeySequence): the database may then give a deleted row's
// key to a new row, on the server or on a node, and a node holding the
// deleted row with a pending change would take the delete and the insert
// for one row updated (merge.md K1), overwriting the new row.
func warnNoKeySequence(ctx context.Context, tx bun.IDB, schema string, t *dbsync.Table, log *slog.Logger) error {
	ok, err := dialect.HasKeySequence(ctx, tx, schema, t.Name, t.PK.Name)
	if err != nil || ok {
		return err
	}
	log.WarnContext(ctx, "oplog: integer key without a sequence: a deleted row's key can be given to a new row, which a node may then overwrite; declare it AUTOINCREMENT on SQLite (bun: autoincrement), serial or identity on PostgreSQL (merge.md K1)",
		slog.String("table", t.Name), slog.String("key", t.PK.Name))
	return nil
}

// warnNumericText logs a warning, on SQLite, for each column of t holding
// text (a Go string or JSON) whose declared type gives it numeric,
// integer or real affinity (dialect.SQLiteAffinity): SQLite stores text
// that reads as a number as that number ("1.10" as 1.1, "007" as 7, a JSON
// 1.0 as the integer 1), so the value read back, synced and compared
// differs from the one written.
func warnNumericText(ctx context.Context, tx bun.IDB, t *dbsync.Table, log *slog.Logger) error {
	var cols []struct {
		Name string `bun:"name"`
		Type string `bun:"type"`
	}
	if err := tx.NewRaw("SELECT name, type FROM pragma_table_info(?)", t.Name).Scan(ctx, &cols); err != nil {
		return fmt.Errorf("read the columns of %s: %w", t.Name, err)
	}
	for _, c := range cols {
		col := t.Column(c.Name)
		if col == nil || (col.Class() != "string" && col.Class() != "json") ||
			strings.Contains(strings.ToUpper(c.Type), "UUID") { // a UUID's text never reads as a number
			continue
		}
		if typ := col.Field().IndirectType; col.Class() == "json" && typ != reflect.TypeFor[json.RawMessage]() && typ.Kind() != reflect.Interface {
			continue // a map, struct or slice encodes as {…}, […] or null: never a number
		}
		if a := dialect.SQLiteAffinity(c.Type); a == "NUMERIC" || a == "INTEGER" || a == "REAL" {
			log.WarnContext(ctx, "oplog: a text column of numeric affinity: SQLite stores text that reads as a number as that number (\"1.10\" as 1.1, a JSON 1.0 as 1), which then reads back and syncs changed; declare it TEXT",
				slog.String("table", t.Name), slog.String("column", c.Name), slog.String("type", c.Type), slog.String("affinity", a))
		}
	}
	return nil
}

// warnNarrowIntegers logs a warning, on PostgreSQL, for each column of t
// whose Go integer type holds values its column cannot (smallint, integer:
// dialect.ColumnInfo.IntBits): bun creates a uint16 field as smallint and
// a uint32 as integer, which hold half their range. A node (SQLite, whose
// integers are 64-bit) writes such a value; the server refuses the push
// (400 bad_request) and the node cannot push until the column is widened.
// 64-bit Go types are left out: a bigint holds every int64, and an int64
// key of a serial (integer) column is the schema's choice.
func warnNarrowIntegers(ctx context.Context, tx bun.IDB, t *dbsync.Table, log *slog.Logger) error {
	infos, err := dialect.Columns(ctx, tx, t.Name)
	if err != nil {
		return err
	}
	for _, c := range t.Columns {
		info, ok := infos[c.Name]
		if !ok || info.IntBits == 0 {
			continue
		}
		typ := c.Field().IndirectType
		bits := 0 // the value bits of the Go type
		switch typ.Kind() {
		case reflect.Int8, reflect.Int16, reflect.Int32:
			bits = typ.Bits() - 1
		case reflect.Uint8, reflect.Uint16, reflect.Uint32:
			bits = typ.Bits()
		}
		if bits > info.IntBits-1 {
			log.WarnContext(ctx, "oplog: an integer column narrower than its Go type: a node's larger value is refused by this database, and the node cannot push until the column is widened; declare it bigint (bun creates uint16 as smallint, uint32 as integer)",
				slog.String("table", t.Name), slog.String("column", c.Name), slog.String("go_type", typ.String()), slog.Int("column_bits", info.IntBits))
		}
	}
	return nil
}

// warnLossyTypes logs a warning, on PostgreSQL, for each tracked column
// of t whose declared type stores some values changed
// (dialect.LossyColumns: numeric(10,2) rounds 1.234 to 1.23, char(5)
// pads "ab", real rounds a float64 to a float32): a SQLite node, which keeps what it wrote, pushes the value
// unchanged, this database stores it changed, and the other nodes get
// the changed value while the writer keeps its own, with no error.
func warnLossyTypes(ctx context.Context, tx bun.IDB, t *dbsync.Table, log *slog.Logger) error {
	lossy, err := dialect.LossyColumns(ctx, tx, t.Name)
	if err != nil {
		return err
	}
	for _, c := range t.Columns {
		typ, ok := lossy[c.Name]
		if typ == "real" && c.Field().IndirectType.Kind() == reflect.Float32 {
			ok = false // holds every float32: bun's type for one
		}
		if ok {
			log.WarnContext(ctx, "oplog: a column whose type stores some values changed (rounded, padded, truncated) where a SQLite node keeps them as written: the nodes then differ, with no error; declare it without precision (numeric, text, timestamptz) or write only values it keeps",
				slog.String("table", t.Name), slog.String("column", c.Name), slog.String("type", typ))
		}
	}
	return nil
}

// warnUncaptured logs a warning, on a node, when a table it pushes and
// tracks for the first time (its content type unknown to the database)
// holds rows but none of its capture triggers exists yet: rows the
// application wrote before client.New first captured the table were not
// logged, and are never pushed (README, "Rows already in a table"). A
// table tracked before whose triggers are missing was rebuilt (Migrate
// re-installs them; a rebuild behind dbsync's back is warned of by the
// next push): not this warning.
func warnUncaptured(ctx context.Context, tx bun.IDB, kind dialect.Kind, schema string, t *dbsync.Table, existing map[string]string, log *slog.Logger) error {
	absent, err := captureAbsent(ctx, tx, kind, t, existing)
	if err != nil || !absent {
		return err
	}
	table := string(t.Schema().SQLName)
	if kind == dialect.Postgres {
		table = dialect.QuoteIdent(schema) + "." + dialect.QuoteIdent(t.Name)
	}
	var rows int64
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&rows); err != nil {
		return fmt.Errorf("count the rows of %s: %w", t.Name, err)
	}
	if rows > 0 {
		log.WarnContext(ctx, "oplog: rows written before the table's capture was installed are not logged and never pushed; insert a node's own data after client.New (a pulled row with the same key replaces one)",
			slog.String("table", t.Name), slog.Int64("rows", rows))
	}
	return nil
}

// captureAbsent reports whether none of t's capture triggers exists.
// existing is sqliteTriggerSQL's, on SQLite.
func captureAbsent(ctx context.Context, tx bun.IDB, kind dialect.Kind, t *dbsync.Table, existing map[string]string) (bool, error) {
	if kind == dialect.Postgres {
		n, err := pgTriggerCount(ctx, tx, t, false)
		return n == 0, err
	}
	for _, trg := range sqliteTriggers(t) {
		if _, ok := existing[trg.name]; ok {
			return false, nil
		}
	}
	return true, nil
}

// logExisting logs an insert, pending like a direct write's (the server
// seals it into a version before its next push or pull), for every row
// of t the log knows nothing of, when Install captures t on a server for
// the first time: rows written before would otherwise reach nodes only by
// a repair. One statement, in the database.
func logExisting(ctx context.Context, tx bun.IDB, kind dialect.Kind, schema string, t *dbsync.Table, log *slog.Logger) error {
	pk := "t." + string(t.PK.Field().SQLName)
	ops, table, key := "sync_operations", string(t.Schema().SQLName), "CAST("+pk+" AS TEXT)"
	if kind == dialect.Postgres {
		ops = dialect.QuoteIdent(schema) + ".sync_operations"
		table = dialect.QuoteIdent(schema) + "." + dialect.QuoteIdent(t.Name)
		key = pk + "::text"
	}
	res, err := tx.ExecContext(ctx, fmt.Sprintf(`INSERT INTO %s (row_id, content_type_id, command)
SELECT %s, %d, 'i' FROM %s AS t
WHERE NOT EXISTS (SELECT 1 FROM %s AS o WHERE o.content_type_id = %d AND o.row_id = %s)
ORDER BY %s`, ops, key, t.ContentTypeID, table, ops, t.ContentTypeID, key, pk))
	if err != nil {
		return fmt.Errorf("log existing rows of %s: %w", t.Name, err)
	}
	if n, err := res.RowsAffected(); err == nil && n > 0 {
		log.InfoContext(ctx, "oplog: rows written before capture logged", slog.String("table", t.Name), slog.Int64("rows", n))
	}
	return nil
}

func checkTablesExist(ctx context.Context, tx bun.IDB, names []string) error {
	found, err := dialect.ExistingTables(ctx, tx, names)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, n := range found {
		have[n] = true
	}
	var missing []string
	for _, n := range names {
		if !have[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrTableMissing, strings.Join(missing, ", "))
	}
	return nil
}

// checkKeysImmediate refuses (dbsync.ErrInvalidModel), on PostgreSQL,
// tracked tables whose key is unique only under DEFERRABLE constraints
// (dialect.DeferrableKeys): the row triggers, which log each row's key
// change as it comes, log a swap of two rows' keys (UPDATE … SET id =
// 3 - id) as "d1 i2 d2 i1", and key 2's "i2 d2" reads as a row born and
// gone (merge.md C2): its new values are never pushed.
func checkKeysImmediate(ctx context.Context, tx bun.IDB, tables []*dbsync.Table) error {
	keys := map[string]string{}
	for _, t := range tables {
		keys[t.Name] = t.PK.Name
	}
	bad, err := dialect.DeferrableKeys(ctx, tx, keys)
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s: %s", dbsync.ErrInvalidModel, strings.Join(bad, ", "), dialect.DeferrableKeyProblem)
	}
	return nil
}

// sqliteTriggerSQL returns the statements of the capture triggers of
// tables that exist (by name, on their table), from all (dialect.SQLiteTriggers: one scan
// of sqlite_master, which reads every trigger's text; one per trigger
// made each Install of an installed file, as every client.New does, cost
// a scan per trigger). late holds the tables (lowercased) with another
// trigger created after one of their capture triggers: SQLite fires a
// table's newest trigger first, so an application's trigger that writes
// the row a statement just wrote would have that write logged before the
// statement's own (a new row's update before its insert: merge.md C5
// would push an update).
func sqliteTriggerSQL(all map[string]dialect.SQLiteTrigger, tables []*dbsync.Table) (found map[string]string, late map[string]bool) {
	capture := map[string]string{} // trigger name: its table
	for _, t := range tables {
		for _, trg := range sqliteTriggers(t) {
			capture[trg.name] = t.Name
		}
	}
	found = map[string]string{}
	for name, trg := range all {
		// A trigger of that name on another table is not this one
		// (dialect.SQLiteTriggerElsewhere).
		if table, ok := capture[name]; ok && strings.EqualFold(trg.Table, table) {
			found[name] = trg.SQL
		}
	}
	return found, dialect.FiredLate(all, func(name string) bool { return capture[name] != "" })
}

// installSQLite creates, re-creates or (capture false) drops the capture
// triggers of t; existing holds those there are (sqliteTriggerSQL), so a
// trigger already as wanted costs no statement. late (sqliteTriggerSQL):
// t's capture triggers are re-created, to fire before every other trigger
// of t.
func installSQLite(ctx context.Context, tx bun.IDB, t *dbsync.Table, capture bool, existing map[string]string, late bool, log *slog.Logger) error {
	for _, trg := range sqliteTriggers(t) {
		create := trg.sql
		if !capture {
			create = "" // drop it
		}
		sql, found := existing[trg.name]
		if found == (create != "") && (!found || sql == create && !late) {
			continue // as wanted
		}
		if found && create != "" {
			if err := warnNarrowed(ctx, tx, t, sql, log); err != nil {
				return err
			}
		}
		if found && late && create != "" {
			if _, err := dialect.SetSQLiteTrigger(ctx, tx, trg.name, ""); err != nil {
				return err
			}
		}
		created, err := dialect.SetSQLiteTrigger(ctx, tx, trg.name, create)
		if err != nil {
			return err
		}
		if created {
			log.InfoContext(ctx, "oplog: capture trigger created", slog.String("table", t.Name), slog.String("trigger", trg.name))
		}
	}
	return nil
}

func installPG(ctx context.Context, tx bun.IDB, t *dbsync.Table, schema string, capture bool, log *slog.Logger) error {
	// A UUID key in a text column is checked by the trigger; a uuid
	// column holds no other form.
	checkKey := false
	if capture && t.KeyKind == protocol.KeyUUID {
		uuidCol, err := store.PGUUIDColumn(ctx, tx, dialect.QuoteIdent(schema)+"."+dialect.QuoteIdent(t.Name), t.PK.Name)
		if err != nil {
			return err
		}
		checkKey = !uuidCol
	}
	stmts := pgCaptureSQL(t, schema, checkKey)
	if !capture {
		for _, q := range []string{
			fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s.%s", pgOldRowTrigger, dialect.QuoteIdent(schema), dialect.QuoteIdent(t.Name)),
			fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s.%s", pgRowTrigger, dialect.QuoteIdent(schema), dialect.QuoteIdent(t.Name)),
			fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s.%s", pgTruncateTrigger, dialect.QuoteIdent(schema), dialect.QuoteIdent(t.Name)),
		} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}
	src, err := pgFunctionSource(ctx, tx, t)
	if err != nil {
		return err
	}
	ok, err := pgUpToDate(ctx, tx, t, src, stmts[0])
	if err != nil || ok {
		return err
	}
	if err := warnNarrowed(ctx, tx, t, src, log); err != nil {
		return err
	}
	for _, q := range stmts {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	log.InfoContext(ctx, "oplog: capture triggers created", slog.String("table", t.Name))
	return nil
}

// comparedColumn matches a column an update check of UpdateChanged
// compares, in a capture function's source: NEW."col" or NEW.col.
var comparedColumn = regexp.MustCompile(`NEW\.("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)`)

// warnNarrowed warns when t's installed capture trigger (its source,
// src) compares columns the table still has and t's model lacks: this
// release stopped tracking them, or a later release's process installed
// the trigger (a rolling upgrade, then an earlier release's process
// started again). The trigger about to replace it leaves updates of
// those columns alone unlogged, so a direct write changing only them no
// longer reaches the nodes.
func warnNarrowed(ctx context.Context, tx bun.IDB, t *dbsync.Table, src string, log *slog.Logger) error {
	model := map[string]bool{}
	for _, c := range t.Columns {
		model[string(c.Field().SQLName)] = true
	}
	var gone []string
	for _, m := range comparedColumn.FindAllStringSubmatch(src, -1) {
		col := m[1]
		if model[col] {
			continue
		}
		if strings.HasPrefix(col, `"`) {
			col = strings.ReplaceAll(col[1:len(col)-1], `""`, `"`)
		}
		if !slices.Contains(gone, col) {
			gone = append(gone, col)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	cols, err := dialect.Columns(ctx, tx, t.Name)
	if err != nil {
		return fmt.Errorf("capture triggers of %s: read its columns: %w", t.Name, err)
	}
	var kept []string
	for _, col := range gone {
		if _, ok := cols[col]; ok {
			kept = append(kept, col)
		}
	}
	if len(kept) > 0 {
		log.WarnContext(ctx, "oplog: capture triggers replaced by ones that compare fewer columns: the installed ones compared columns the table has and its model lacks; an update changing only those is no longer logged, so a direct write of them does not reach the nodes. Expected if this release stopped tracking them; if a later release's process installed them, do not run this release's on the database",
			slog.String("table", t.Name), slog.Any("columns", kept))
	}
	return nil
}

// pgFunctionSource returns the source of t's capture function, "" when
// there is none.
func pgFunctionSource(ctx context.Context, tx bun.IDB, t *dbsync.Table) (string, error) {
	var src string
	err := tx.QueryRowContext(ctx,
		"SELECT prosrc FROM pg_proc WHERE proname = ? AND pronamespace = quote_ident(current_schema())::regnamespace",
		pgFunctionName(t)).Scan(&src)
	if isNoRows(err) {
		return "", nil
	}
	return src, err
}

// pgUpToDate reports whether the table's capture function, of source src
// (pgFunctionSource), has the expected body and both triggers exist,
// enabled ALWAYS.
func pgUpToDate(ctx context.Context, tx bun.IDB, t *dbsync.Table, src, createFn string) (bool, error) {
	if src == "" || !strings.Contains(createFn, "$dbsync$"+src+"$dbsync$") {
		return false, nil
	}
	// Both triggers, firing ALWAYS (an earlier release's fired in the
	// origin role only).
	n, err := pgTriggerCount(ctx, tx, t, true)
	return n == 2, err
}

// pgTriggerCount counts t's capture triggers that are enabled: ALWAYS
// (in every session_replication_role) when always is true, in any state
// but disabled otherwise. A trigger of that name calling another
// function is not t's: a renamed table keeps its triggers, which call
// its old name's function (logging under that name's content type).
func pgTriggerCount(ctx context.Context, tx bun.IDB, t *dbsync.Table, always bool) (int, error) {
	state := "tg.tgenabled <> 'D'"
	if always {
		state = "tg.tgenabled = 'A'"
	}
	var n int
	err := tx.QueryRowContext(ctx, `
SELECT count(*) FROM pg_trigger tg JOIN pg_class cl ON cl.oid = tg.tgrelid JOIN pg_proc p ON p.oid = tg.tgfoid
WHERE cl.relname = ? AND cl.relnamespace = quote_ident(current_schema())::regnamespace AND tg.tgname IN (?, ?)
	AND p.proname = ? AND p.pronamespace = cl.relnamespace AND `+state,
		t.Name, pgRowTrigger, pgTruncateTrigger, pgFunctionName(t)).Scan(&n)
	return n, err
}

// Check verifies that every tracked table that should capture changes has
// its triggers, and returns an error wrapping [ErrCaptureMissing] naming
// those that do not. client is as in [InstallOptions].
func Check(ctx context.Context, db bun.IDB, reg *dbsync.Registry, client bool) error {
	kind, err := dialect.Of(db)
	if err != nil {
		return err
	}
	var missing []string
	var existing map[string]string // SQLite: the capture triggers there are
	if kind == dialect.SQLite {
		all, err := dialect.SQLiteTriggers(ctx, db)
		if err != nil {
			return err
		}
		existing, _ = sqliteTriggerSQL(all, reg.Tables())
	}
	for _, t := range reg.Tables() {
		if client && !t.Direction.Pushed() {
			continue
		}
		if kind == dialect.Postgres {
			// A trigger back in the origin role (ENABLE TRIGGER after a
			// restore) misses replica-role writes: missing too.
			n, err := pgTriggerCount(ctx, db, t, true)
			if err != nil {
				return err
			}
			if n != 2 {
				missing = append(missing, t.Name)
			}
			continue
		}
		for _, trg := range sqliteTriggers(t) {
			if _, ok := existing[trg.name]; !ok {
				missing = append(missing, t.Name)
				break
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w on %s", ErrCaptureMissing, strings.Join(missing, ", "))
	}
	return nil
}

// Uninstall removes the capture triggers (and PostgreSQL trigger functions)
// of the tracked tables. The operations log stays.
func Uninstall(ctx context.Context, db *bun.DB, reg *dbsync.Registry) error {
	kind, err := dialect.Of(db)
	if err != nil {
		return err
	}
	return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		for _, t := range reg.Tables() {
			var stmts []string
			if kind == dialect.Postgres {
				stmts = []string{
					fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s", pgOldRowTrigger, dialect.QuoteIdent(t.Name)),
					fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s", pgRowTrigger, dialect.QuoteIdent(t.Name)),
					fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s", pgTruncateTrigger, dialect.QuoteIdent(t.Name)),
					fmt.Sprintf("DROP FUNCTION IF EXISTS %s()", dialect.QuoteIdent(pgFunctionName(t))),
				}
			} else {
				for _, trg := range sqliteTriggers(t) {
					stmts = append(stmts, "DROP TRIGGER IF EXISTS "+dialect.QuoteIdent(trg.name))
				}
			}
			for _, q := range stmts {
				if _, err := tx.ExecContext(ctx, q); err != nil {
					return fmt.Errorf("uninstall %s: %w", t.Name, err)
				}
			}
		}
		return nil
	})
}

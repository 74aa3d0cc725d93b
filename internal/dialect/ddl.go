package dialect

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/uptrace/bun"
)

// LockInstall serializes installs (of triggers, columns, indexes) in one
// schema until the end of tx and returns the schema they go in. On
// PostgreSQL it takes the transaction advisory lock (class, a hash of the
// current schema), so that installs in other schemas of the database do
// not wait, and returns the current schema; on SQLite the database's
// single writer serializes them, and the schema is "".
func LockInstall(ctx context.Context, tx bun.Tx, class int32) (schema string, err error) {
	if MustOf(tx) != Postgres {
		return "", nil
	}
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(?, hashtext(current_schema()))", class); err != nil {
		return "", fmt.Errorf("install lock: %w", err)
	}
	if err := tx.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return "", fmt.Errorf("current schema: %w", err)
	}
	return schema, nil
}

// HasColumn reports whether table (in the current schema) has column.
func HasColumn(ctx context.Context, db bun.IDB, table, column string) (bool, error) {
	q := "SELECT count(*) FROM pragma_table_info(?) WHERE name = ?"
	if MustOf(db) == Postgres {
		q = "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ? AND column_name = ?"
	}
	var n int
	if err := db.QueryRowContext(ctx, q, table, column).Scan(&n); err != nil {
		return false, err
	}
	return n > 0, nil
}

// SQLiteTrigger is a trigger of a SQLite database, as sqlite_master holds
// it.
type SQLiteTrigger struct {
	Name, Table, SQL string
	// Seq orders the triggers by creation: sqlite_master's rowid (a new
	// entry takes the greatest plus one), the order SQLite reads them in.
	Seq int64
}

// SQLiteTriggers reads every trigger of a SQLite database, by name, in
// one scan of sqlite_master.
func SQLiteTriggers(ctx context.Context, db bun.IDB) (map[string]SQLiteTrigger, error) {
	rows, err := db.QueryContext(ctx, "SELECT name, tbl_name, sql, rowid FROM sqlite_master WHERE type = 'trigger'")
	if err != nil {
		return nil, fmt.Errorf("read triggers: %w", err)
	}
	defer rows.Close()
	out := map[string]SQLiteTrigger{}
	for rows.Next() {
		var trg SQLiteTrigger
		var create sql.NullString
		if err := rows.Scan(&trg.Name, &trg.Table, &create, &trg.Seq); err != nil {
			return nil, fmt.Errorf("read triggers: %w", err)
		}
		trg.SQL = create.String
		out[trg.Name] = trg
	}
	return out, rows.Err()
}

// FiredLate returns the tables (lower case) where a trigger that is not
// ours was created after one of ours. SQLite fires a table's newest
// trigger first: there, a trigger of the application that writes the row
// a statement just wrote fires before ours, and its write would be
// captured before the statement's own. Ours are re-created there.
func FiredLate(triggers map[string]SQLiteTrigger, ours func(name string) bool) map[string]bool {
	first, last := map[string]int64{}, map[string]int64{} // by table: oldest of ours, newest other
	for _, trg := range triggers {
		table := strings.ToLower(trg.Table)
		if ours(trg.Name) {
			if s, ok := first[table]; !ok || trg.Seq < s {
				first[table] = trg.Seq
			}
		} else if trg.Seq > last[table] {
			last[table] = trg.Seq
		}
	}
	late := map[string]bool{}
	for table, s := range first {
		if last[table] > s {
			late[table] = true
		}
	}
	return late
}

// The logs the capture triggers of dbsync's two sync modes write into:
// client/server sync's operations log (package oplog) and the peer
// mode's versions (package peer).
const (
	OperationsLog = "sync_operations"
	PeerVersions  = "sync_lww"
)

// CapturedInto returns, sorted, those of tables (as named there) with a
// trigger that writes into log (OperationsLog or PeerVersions): the
// tables the sync mode of that log captures. A table syncs in one mode:
// each mode's switch (Capture) silences its own triggers only, so each
// would log the rows the other applies as the node's own writes. On SQLite it reads triggers (SQLiteTriggers's),
// on PostgreSQL the functions of the triggers of schema's tables.
func CapturedInto(ctx context.Context, db bun.IDB, schema string, triggers map[string]SQLiteTrigger, log string, tables []string) ([]string, error) {
	if len(tables) == 0 {
		return nil, nil
	}
	// INSERT INTO sync_lww (…) on SQLite, INSERT INTO "schema".sync_lww
	// (…) on PostgreSQL (QuoteIdent(schema)).
	writes := regexp.MustCompile(`INSERT INTO (?:"(?:[^"]|"")*"\.)?` + regexp.QuoteMeta(log) + ` \(`)
	asked := map[string]string{} // the table as the database names it: as in tables
	found := map[string]bool{}
	if MustOf(db) == Postgres {
		for _, t := range tables {
			asked[t] = t
		}
		rows, err := db.QueryContext(ctx, `SELECT DISTINCT c.relname, p.prosrc FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid
WHERE c.relnamespace = ?::regnamespace AND NOT t.tgisinternal AND c.relname IN (?)`, QuoteIdent(schema), bun.List(tables))
		if err != nil {
			return nil, fmt.Errorf("read triggers: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var table, src string
			if err := rows.Scan(&table, &src); err != nil {
				return nil, fmt.Errorf("read triggers: %w", err)
			}
			if writes.MatchString(src) {
				found[asked[table]] = true
			}
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read triggers: %w", err)
		}
	} else {
		for _, t := range tables {
			asked[strings.ToLower(t)] = t
		}
		for _, trg := range triggers {
			if t, ok := asked[strings.ToLower(trg.Table)]; ok && writes.MatchString(trg.SQL) {
				found[t] = true
			}
		}
	}
	out := make([]string, 0, len(found))
	for t := range found {
		out = append(out, t)
	}
	slices.Sort(out)
	return out, nil
}

// SQLiteTriggerElsewhere returns the first of names that a trigger of a
// table other than table holds in triggers (SQLiteTriggers's), and that
// table; "" when none does. SQLite trigger names are one namespace for
// the database: creating a trigger of that name would drop the other
// table's (oplog's capture triggers of a table lww_x and the peer mode's
// of a table x are both named sync_lww_x_…).
func SQLiteTriggerElsewhere(triggers map[string]SQLiteTrigger, table string, names []string) (name, other string) {
	for _, n := range names {
		if trg, ok := triggers[n]; ok && !strings.EqualFold(trg.Table, table) {
			return n, trg.Table
		}
	}
	return "", ""
}

// SetSQLiteTrigger makes the SQLite trigger name hold exactly the statement
// create (a CREATE TRIGGER): it leaves a trigger of that SQL alone, and
// drops and recreates one that differs. An empty create drops the trigger.
// It reports whether it created the trigger.
func SetSQLiteTrigger(ctx context.Context, tx bun.IDB, name, create string) (bool, error) {
	var existing string
	err := tx.QueryRowContext(ctx, "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?", name).Scan(&existing)
	found := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, err
	}
	if found && create != "" && existing == create {
		return false, nil
	}
	if found {
		if _, err := tx.ExecContext(ctx, "DROP TRIGGER "+QuoteIdent(name)); err != nil {
			return false, err
		}
	}
	if create == "" {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, create); err != nil {
		return false, err
	}
	return true, nil
}

// False is the literal of false in a query on db: PostgreSQL's boolean
// columns take false, SQLite's integer ones 0.
func False(db bun.IDB) string {
	if MustOf(db) == Postgres {
		return "false"
	}
	return "0"
}

// TempTable creates the temporary table name (columns: its definitions,
// as in CREATE TABLE) in tx, dropping one left by an earlier use of the
// connection, and returns its qualified name, for the caller's queries
// and its drop. On PostgreSQL it goes with the transaction's end (ON
// COMMIT DROP); a rollback undoes its creation on both.
func TempTable(ctx context.Context, tx bun.IDB, name, columns string) (string, error) {
	kind, err := Of(tx)
	if err != nil {
		return "", err
	}
	tmp, onCommit := "temp."+name, ""
	if kind == Postgres {
		tmp, onCommit = "pg_temp."+name, " ON COMMIT DROP"
	}
	for _, q := range []string{
		"DROP TABLE IF EXISTS " + tmp,
		"CREATE TEMP TABLE " + name + " (" + columns + ")" + onCommit,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return "", fmt.Errorf("create the temporary table %s: %w", name, err)
		}
	}
	return tmp, nil
}

// Snapshot runs fn in a read-only transaction that sees one consistent
// state of the database (REPEATABLE READ on PostgreSQL; a SQLite
// transaction always does).
//
// fn may wait on a client between its statements (a pull or a repair
// streams its answer from the snapshot as the client reads it), during
// which a PostgreSQL backend is idle in transaction: the transaction
// switches idle_in_transaction_session_timeout off for itself (SET
// LOCAL), so that the setting, on the server's role or in its connection
// string, does not cut an answer to a slow reader. The handlers' write
// deadline (handlers.Deadlines.Write) bounds each such wait instead. It
// switches JIT compilation off too: the planner estimates a recursive
// query (a scope's tree or cycle of foreign keys) at ten times its first
// rows at every step, far above what it reads, and compiling such a
// query took 1-2.5 s where running it took 20-50 ms.
//
// Its BEGIN is tried again on another connection when it fails on a
// connection found lost (RunInTx).
func Snapshot(ctx context.Context, db *bun.DB, fn func(ctx context.Context, tx bun.Tx) error) error {
	opts := &sql.TxOptions{ReadOnly: true}
	if MustOf(db) != Postgres {
		return RunInTx(ctx, db, opts, fn)
	}
	opts.Isolation = sql.LevelRepeatableRead
	return runInTx(ctx, db, opts, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.ExecContext(ctx, "SELECT set_config('idle_in_transaction_session_timeout', '0', true), set_config('jit', 'off', true)"); err != nil {
			return fmt.Errorf("switch idle_in_transaction_session_timeout and jit off: %w", err)
		}
		return nil
	}, fn)
}

// SingleWriter reports whether a write transaction on db holds the whole
// database's write lock until it ends (SQLite), so that nothing else can
// write meanwhile, not even a nonce of a request it must answer.
func SingleWriter(db bun.IDB) bool { return MustOf(db) == SQLite }

// CheckRecursiveTriggers returns an error when db is SQLite with
// recursive triggers off (its default): REPLACE (INSERT OR REPLACE, a
// REPLACE conflict clause) then deletes the rows it replaces without
// firing their delete triggers, and capture would miss those deletes.
// PostgreSQL's triggers always fire.
func CheckRecursiveTriggers(ctx context.Context, db bun.IDB) error {
	if MustOf(db) != SQLite {
		return nil
	}
	var on int
	if err := db.QueryRowContext(ctx, "PRAGMA recursive_triggers").Scan(&on); err != nil {
		return fmt.Errorf("read PRAGMA recursive_triggers: %w", err)
	}
	if on == 0 {
		return errors.New("SQLite recursive triggers are off: open the database with _pragma=recursive_triggers(1) in its DSN (README, Quick start); without them REPLACE deletes rows without their delete being captured")
	}
	return nil
}

// NewUUID is the SQL of a new random (version 4) UUID as text.
func NewUUID(db bun.IDB) string {
	if MustOf(db) == Postgres {
		return "gen_random_uuid()::text"
	}
	return SQLiteUUID
}

// SQLiteUUID is NewUUID on SQLite (a version 4 UUID in SQLite SQL).
const SQLiteUUID = `(lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || substr(lower(hex(randomblob(2))), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))))`

// CanonUUID is the SQL of the canonical text of the UUID x, an SQL
// expression, written in any form uuid.Parse accepts (upper case, no
// dashes, braces, urn:uuid: prefix): lower case with dashes. On SQLite
// anything that is not a UUID yields NULL; on PostgreSQL the cast fails.
func CanonUUID(db bun.IDB, x string) string {
	if MustOf(db) == Postgres {
		return PGCanonUUID(x)
	}
	return SQLiteCanonUUID(x)
}

// SQLiteCanonUUID is CanonUUID on SQLite. The hex digits of x are
// computed once, in a subquery the CASE reads seven times: written out
// seven times, the expression made the capture triggers of a table without
// a UUID key (which use it up to nine times) several times longer, and
// SQLite parses them on every connection and compiles them into every
// statement that writes the table.
func SQLiteCanonUUID(x string) string {
	return fmt.Sprintf("(SELECT CASE WHEN length(h) = 32 AND h NOT GLOB '*[^0-9a-f]*' THEN "+
		"substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-' || substr(h, 13, 4) || '-' || substr(h, 17, 4) || '-' || substr(h, 21, 12) END "+
		"FROM (SELECT replace(replace(replace(replace(lower(%s), 'urn:uuid:', ''), '-', ''), '{', ''), '}', '') AS h))", x)
}

// NonCanonicalUUID is the SQL condition, on kind, that the value of expr
// (a column) is not a UUID in canonical form (uuid.UUID.String's:
// lowercase, hyphenated). A UUID key is text on SQLite, and in a text
// column on PostgreSQL: another spelling would be recorded as it is, and
// reading the row back by its parsed key would not find it.
func NonCanonicalUUID(kind Kind, expr string) string {
	if kind == Postgres {
		return fmt.Sprintf("CAST(%s AS TEXT) !~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'", expr)
	}
	return fmt.Sprintf("%s IS NOT %s", SQLiteCanonUUID(expr), expr)
}

// PGCanonUUID is CanonUUID on PostgreSQL.
func PGCanonUUID(x string) string {
	return fmt.Sprintf("regexp_replace(%s, '^urn:uuid:', '', 'i')::uuid::text", x)
}

package peer

import (
	"fmt"
	"strings"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/protocol"
)

// IdentityColumn is the column dbsync adds to a peer-synced table whose
// primary key is an integer (local to each node): the row's identity
// across peers (a UUID in text form), which the capture triggers refuse
// to change once set (identityFixed). Tables with a UUID or text primary
// key use the key itself.
const IdentityColumn = "sync_uuid"

// objectName is the name of a peer object of a table (a trigger, a
// trigger function, an index): at most 55 bytes, as it always was (names
// are stored in databases).
func objectName(prefix, table string) string { return dialect.ObjectName(prefix, table, 55) }

// checkObjectNames refuses (dbsync.ErrInvalidModel) two tracked tables
// whose capture triggers, trigger functions or identity indexes would have
// one name.
func checkObjectNames(reg *dbsync.Registry) error {
	var names []string
	for _, t := range reg.Tables() {
		names = append(names, t.Name)
	}
	for _, prefix := range []string{"sync_lww_", "sync_lwwid_", "sync_uuid_"} {
		if a, b, name, ok := dialect.ObjectNameClash(prefix, 55, names); ok {
			return fmt.Errorf("%w: tables %s and %s would share the peer object %s; rename one of them", dbsync.ErrInvalidModel, a, b, name)
		}
	}
	return nil
}

// sqliteNowHLC is the current wall clock as an HLC.
const sqliteNowHLC = `(CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) << 16)`

// ident returns the SQL of a row's identity in a trigger (rec is NEW or
// OLD).
func (pt *ptable) ident(rec string) string {
	if pt.keyIdentity {
		return fmt.Sprintf("CAST(%s.%s AS TEXT)", rec, dialect.QuoteIdent(pt.t.PK.Name))
	}
	return fmt.Sprintf("%s.%s", rec, dialect.QuoteIdent(IdentityColumn))
}

// idColumn is the column holding a row's identity: the primary key of a
// table keyed by UUID or text, else IdentityColumn.
func (pt *ptable) idColumn() string {
	if pt.keyIdentity {
		return pt.t.PK.Name
	}
	return IdentityColumn
}

// uuidKeyNotCanonical is the error of an application write of a UUID
// primary key that is not a UUID in canonical form into a text column
// (SQLite's, or a PostgreSQL text column), which the capture triggers
// refuse.
func uuidKeyNotCanonical(table, column string) string {
	return fmt.Sprintf("dbsync: %s.%s must be a UUID in canonical form (lowercase, hyphenated, as uuid.UUID.String writes it): peers would never get the row", table, column)
}

// identityFixed is the error of an application write changing the
// identity (IdentityColumn) of a row of table, which the capture
// triggers refuse. Taken, it would travel as the delete of the old
// identity and the insert of a new one: the other nodes would delete the
// rows referencing the old one (a delete wins over the rows that
// reference the deleted row), and their deletes would come back.
func identityFixed(table string) string {
	return fmt.Sprintf("dbsync: %s.%s cannot change once set (delete the row and insert it anew)", table, IdentityColumn)
}

type sqlTrigger struct{ name, sql string }

// sqliteTriggerName names a capture trigger of table on SQLite; suffix is
// one of sqliteTriggerSuffixes.
func sqliteTriggerName(table, suffix string) string {
	return objectName("sync_lww_", table) + "_" + suffix
}

// sqliteTriggerSuffixes end the names of a table's SQLite capture
// triggers: after insert, update, delete.
var sqliteTriggerSuffixes = [...]string{"ai", "au", "ad"}

// sqliteTriggerNames are the names of table's SQLite capture triggers.
func sqliteTriggerNames(table string) []string {
	names := make([]string, len(sqliteTriggerSuffixes))
	for i, suffix := range sqliteTriggerSuffixes {
		names[i] = sqliteTriggerName(table, suffix)
	}
	return names
}

// pgTriggerNames are the names of the capture triggers on a peer-synced
// table on PostgreSQL (sync_lww_id only when its key is an integer), and
// pgOldRowTrigger, the row trigger's name before.
var pgTriggerNames = []string{"sync_lww_lock", pgRowTrigger, pgOldRowTrigger, "sync_lww_truncate", "sync_lww_id"}

// The row trigger's name. PostgreSQL fires a table's AFTER row triggers
// in the byte order of their names: this one sorts before any unquoted
// name of the application's (they start with a letter, or "_" and a
// letter) and after the foreign keys' triggers ("RI_…", as before), so an
// application's trigger that writes the row a statement just wrote has
// that write versioned after the statement's own. pgOldRowTrigger sorted
// after most: a row such a trigger deleted kept the version of the write
// that fired it, so its peers kept the row.
const (
	pgRowTrigger    = "__sync_lww"
	pgOldRowTrigger = "sync_lww"
)

// pgFunctionNames are the names of table's own trigger functions on
// PostgreSQL: its capture function and its identity function. No prefix
// is another's followed by more text (sync_lww_ and sync_lwwid_ differ in
// their ninth byte), so no two tables' functions share a name, nor one
// shares pgLockFunction's.
func pgFunctionNames(table string) []string {
	return []string{objectName("sync_lww_", table), objectName("sync_lwwid_", table)}
}

// pgLockFunction is the trigger function of the node-row lock, shared by
// the tables.
const pgLockFunction = "sync_lwwlock_node"

// pgOldFunctionNames are the names earlier releases gave table's
// identity function and the shared lock function. Table x's identity
// function was then table id_x's capture function, and table lock_node's
// capture function the lock function: one overwrote the other. peer.New
// drops them once no trigger uses them (dropUnusedFunctions).
func pgOldFunctionNames(table string) []string {
	return []string{objectName("sync_lww_id_", table), "sync_lww_lock_node"}
}

// sqliteTriggers returns the capture triggers of a peer-synced table on
// SQLite. Each write ticks the node's clock and sequence (sync_lww_node)
// and records the row's version (sync_lww): the change feed peers read.
// Each fires only while the peer mode's capture switch is on
// (dialect.PeerSwitch; the node's own writes switch it off).
func (pt *ptable) sqliteTriggers() []sqlTrigger {
	table := dialect.QuoteIdent(pt.t.Name)
	pk := dialect.QuoteIdent(pt.t.PK.Name)
	ct := pt.t.ContentTypeID
	on := dialect.PeerSwitch.SQLiteOn()
	tick := func(cond string) string {
		return fmt.Sprintf("UPDATE sync_lww_node SET hlc = max(hlc + 1, %s), seq = seq + 1 WHERE id = 1%s;", sqliteNowHLC, cond)
	}
	version := func(id string, deleted int, cond string) string {
		return fmt.Sprintf(`INSERT INTO sync_lww (content_type_id, row_id, hlc, node, deleted, seq) `+
			`SELECT %d, %s, hlc, node, %d, seq FROM sync_lww_node WHERE id = 1%s `+
			`ON CONFLICT (content_type_id, row_id) DO UPDATE SET hlc = excluded.hlc, node = excluded.node, deleted = excluded.deleted, seq = excluded.seq;`,
			ct, id, deleted, cond)
	}
	mk := func(suffix, event, when, body string) sqlTrigger {
		name := sqliteTriggerName(pt.t.Name, suffix)
		cond := on
		if when != "" {
			cond += " AND " + when
		}
		return sqlTrigger{name: name, sql: fmt.Sprintf("CREATE TRIGGER %s AFTER %s ON %s FOR EACH ROW WHEN %s BEGIN %s END",
			dialect.QuoteIdent(name), event, table, cond, body)}
	}
	newID, oldID := pt.ident("NEW"), pt.ident("OLD")
	insertBody := tick("") + " " + version(newID, 0, "")
	updateWhen := ""
	updatePrefix := ""
	if !pt.keyIdentity {
		col := dialect.QuoteIdent(IdentityColumn)
		// An identity the application wrote must be a UUID; it is stored
		// in canonical form (the updates that do it are not changes of
		// their own).
		check := fmt.Sprintf("SELECT RAISE(ABORT, 'dbsync: %s.%s must be a UUID') WHERE NEW.%s IS NOT NULL AND %s IS NULL; ",
			strings.ReplaceAll(pt.t.Name, "'", "''"), IdentityColumn, col, dialect.SQLiteCanonUUID("NEW."+col))
		canon := fmt.Sprintf("UPDATE %s SET %s = %s WHERE %s = NEW.%s AND %s IS NOT %s; ",
			table, col, dialect.SQLiteCanonUUID(col), pk, pk, col, dialect.SQLiteCanonUUID(col))
		// Give the row its identity first; the update that does it is not a
		// change of its own (the update trigger skips a NULL identity).
		insertBody = check + fmt.Sprintf("UPDATE %s SET %s = COALESCE(%s, %s) WHERE %s = NEW.%s AND (%s IS NULL OR %s IS NOT %s); ",
			table, col, dialect.SQLiteCanonUUID(col), dialect.SQLiteUUID, pk, pk, col, col, dialect.SQLiteCanonUUID(col)) +
			tick("") + " " + version(fmt.Sprintf("(SELECT %s FROM %s WHERE %s = NEW.%s)", col, table, pk, pk), 0, "")
		updateWhen = "OLD." + col + " IS NOT NULL"
		newID, oldID = dialect.SQLiteCanonUUID(newID), dialect.SQLiteCanonUUID(oldID)
		// Once set, the identity cannot change (see identityFixed).
		fixed := fmt.Sprintf("SELECT RAISE(ABORT, '%s') WHERE %s IS NOT %s; ",
			strings.ReplaceAll(identityFixed(pt.t.Name), "'", "''"), newID, oldID)
		updatePrefix = strings.Replace(check, "NEW."+col+" IS NOT NULL AND ", "", 1) + fixed + canon
	}
	if pt.keyIdentity && pt.t.KeyKind == protocol.KeyUUID {
		// A UUID key is text on SQLite (and in a text column on
		// PostgreSQL): one in another spelling (or no UUID) would be
		// recorded as it is, and the feed, which reads rows by the parsed
		// key, would never find the row (or fail).
		canonical := fmt.Sprintf("SELECT RAISE(ABORT, '%s') WHERE %s; ",
			strings.ReplaceAll(uuidKeyNotCanonical(pt.t.Name, pt.t.PK.Name), "'", "''"), dialect.NonCanonicalUUID(dialect.SQLite, "NEW."+pk))
		insertBody = canonical + insertBody
		updatePrefix = canonical + updatePrefix
	}
	// An update that changes neither the identity column nor a model
	// column (a no-op) is no new version: it would win over other nodes'
	// concurrent edits with the node's unchanged values. Identities
	// compare byte for byte, whatever the key's collation: a case-only
	// edit of a NOCASE text key is a new identity.
	idCol := dialect.QuoteIdent(pt.idColumn())
	if updateWhen != "" {
		updateWhen += " AND "
	}
	updateWhen += fmt.Sprintf("(NEW.%s IS NOT OLD.%s COLLATE BINARY OR %s)", idCol, idCol, store.UpdateChanged(pt.t, dialect.SQLite))
	moved := fmt.Sprintf(" AND %s IS NOT %s COLLATE BINARY", newID, oldID)
	updateBody := updatePrefix + tick(moved) + " " + version(oldID, 1, moved) + " " + tick("") + " " + version(newID, 0, "")
	return []sqlTrigger{
		mk("ai", "INSERT", "", insertBody),
		mk("au", "UPDATE", updateWhen, updateBody),
		mk("ad", "DELETE", "", tick("")+" "+version(oldID, 1, "")),
	}
}

// pgSQL returns the statements creating the capture function and triggers
// of a peer-synced table on PostgreSQL, in schema. checkKey: the function
// checks that a UUID key is in canonical form, for a key in a text column
// (a uuid column holds no other form; see installTriggers).
func (pt *ptable) pgSQL(schema string, checkKey bool) []string {
	table := dialect.QuoteIdent(schema) + "." + dialect.QuoteIdent(pt.t.Name)
	fns := pgFunctionNames(pt.t.Name)
	fn := dialect.QuoteIdent(schema) + "." + dialect.QuoteIdent(fns[0])
	node := dialect.QuoteIdent(schema) + ".sync_lww_node"
	lww := dialect.QuoteIdent(schema) + ".sync_lww"
	ct := pt.t.ContentTypeID
	newID, oldID := pt.ident("NEW"), pt.ident("OLD")
	record := func(id, deleted string) string {
		return fmt.Sprintf(`UPDATE %s SET hlc = GREATEST(hlc + 1, floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16), seq = seq + 1
      WHERE id = 1 RETURNING hlc, seq, node INTO v_hlc, v_seq, v_node;
    INSERT INTO %s (content_type_id, row_id, hlc, node, deleted, seq) VALUES (%d, %s, v_hlc, v_node, %s, v_seq)
      ON CONFLICT (content_type_id, row_id) DO UPDATE SET hlc = EXCLUDED.hlc, node = EXCLUDED.node, deleted = EXCLUDED.deleted, seq = EXCLUDED.seq;`,
			node, lww, ct, id, deleted)
	}
	pkCheck := ""
	if checkKey && pt.keyIdentity && pt.t.KeyKind == protocol.KeyUUID {
		// A UUID key in a text column: see sqliteTriggers.
		pkCheck = fmt.Sprintf(`
  IF TG_OP IN ('INSERT', 'UPDATE') AND %s THEN
    RAISE EXCEPTION '%%', '%s';
  END IF;`, dialect.NonCanonicalUUID(dialect.Postgres, "NEW."+dialect.QuoteIdent(pt.t.PK.Name)),
			strings.ReplaceAll(uuidKeyNotCanonical(pt.t.Name, pt.t.PK.Name), "'", "''"))
	}
	// The peer mode's own writes switch its capture off
	// (dialect.PeerSwitch); client/server sync's do not.
	captureOff := fmt.Sprintf("current_setting('%s', true) = 'off'", dialect.PeerSwitch.PGSetting())
	capturing := fmt.Sprintf("current_setting('%s', true) IS DISTINCT FROM 'off'", dialect.PeerSwitch.PGSetting())
	// Identities compare byte for byte, whatever the key's collation (a
	// case-only edit under a nondeterministic one is a new identity).
	body := fmt.Sprintf(`
DECLARE
  v_hlc bigint;
  v_seq bigint;
  v_node text;
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    RAISE EXCEPTION 'dbsync: TRUNCATE of peer-synced table %%s is not captured; use DELETE', TG_TABLE_NAME;
  END IF;
  IF %s THEN
    RETURN NULL;
  END IF;%s
  IF TG_OP = 'UPDATE' AND NEW.%s::text COLLATE "C" IS NOT DISTINCT FROM OLD.%s::text COLLATE "C" AND NOT %s THEN
    RETURN NULL; -- a no-op: no new version
  END IF;
  IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND %s COLLATE "C" IS DISTINCT FROM %s COLLATE "C") THEN
    %s
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    %s
  END IF;
  RETURN NULL;
END`, captureOff, pkCheck, dialect.QuoteIdent(pt.idColumn()), dialect.QuoteIdent(pt.idColumn()), store.UpdateChanged(pt.t, dialect.Postgres),
		newID, oldID, record(oldID, "true"), record(newID, "false"))
	// Every writer takes the node row's lock, which orders the feed: the
	// row trigger above updates it, after the statement has locked the
	// application's row. A sync's apply takes the two in the other order
	// (node row first), so without this statement trigger, which takes the
	// node row before the statement touches any row, an application write
	// and an apply of the same row deadlock.
	lockFn := dialect.QuoteIdent(schema) + "." + pgLockFunction
	lockBody := fmt.Sprintf(`
BEGIN
  IF %s THEN
    PERFORM 1 FROM %s WHERE id = 1 FOR NO KEY UPDATE;
  END IF;
  RETURN NULL;
END`, capturing, node)
	stmts := []string{
		fmt.Sprintf("CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $dbsync$%s$dbsync$", lockFn, lockBody),
		fmt.Sprintf("DROP TRIGGER IF EXISTS sync_lww_lock ON %s", table),
		fmt.Sprintf("CREATE TRIGGER sync_lww_lock BEFORE INSERT OR UPDATE OR DELETE ON %s FOR EACH STATEMENT EXECUTE FUNCTION %s()", table, lockFn),
		fmt.Sprintf("CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $dbsync$%s$dbsync$", fn, body),
		fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s", pgOldRowTrigger, table),
		fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s", pgRowTrigger, table),
		fmt.Sprintf("CREATE TRIGGER %s AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s()", pgRowTrigger, table, fn),
		fmt.Sprintf("DROP TRIGGER IF EXISTS sync_lww_truncate ON %s", table),
		fmt.Sprintf("CREATE TRIGGER sync_lww_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION %s()", table, fn),
	}
	if !pt.keyIdentity {
		fill := dialect.QuoteIdent(schema) + "." + dialect.QuoteIdent(fns[1])
		stmts = append(stmts,
			fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $dbsync$
BEGIN
  NEW.%s := COALESCE(%s, gen_random_uuid()::text);
  IF TG_OP = 'UPDATE' AND OLD.%s IS NOT NULL AND NEW.%s IS DISTINCT FROM %s
    AND %s THEN
    RAISE EXCEPTION '%%', %s; -- see identityFixed
  END IF;
  RETURN NEW;
END$dbsync$`, fill, dialect.QuoteIdent(IdentityColumn), dialect.PGCanonUUID("NEW."+dialect.QuoteIdent(IdentityColumn)),
				dialect.QuoteIdent(IdentityColumn), dialect.QuoteIdent(IdentityColumn), dialect.PGCanonUUID("OLD."+dialect.QuoteIdent(IdentityColumn)),
				capturing, "'"+strings.ReplaceAll(identityFixed(pt.t.Name), "'", "''")+"'"),
			fmt.Sprintf("DROP TRIGGER IF EXISTS sync_lww_id ON %s", table),
			fmt.Sprintf("CREATE TRIGGER sync_lww_id BEFORE INSERT OR UPDATE OF %s ON %s FOR EACH ROW EXECUTE FUNCTION %s()", dialect.QuoteIdent(IdentityColumn), table, fill),
		)
	} else {
		// A release before text keys were identities gave a text-keyed
		// table this trigger, filling sync_uuid: it goes (and its
		// function with it, pgOldFunctionNames), so that the column no
		// longer used can be dropped.
		stmts = append(stmts, fmt.Sprintf("DROP TRIGGER IF EXISTS sync_lww_id ON %s", table))
	}
	// Fired in every session_replication_role: under replica (pg_restore,
	// replication tools) an ordinary trigger is skipped, and the write's
	// version (and a new row's identity) with it.
	always := "ENABLE ALWAYS TRIGGER sync_lww_lock, ENABLE ALWAYS TRIGGER " + pgRowTrigger + ", ENABLE ALWAYS TRIGGER sync_lww_truncate"
	if !pt.keyIdentity {
		always += ", ENABLE ALWAYS TRIGGER sync_lww_id"
	}
	return append(stmts, fmt.Sprintf("ALTER TABLE %s %s", table, always))
}

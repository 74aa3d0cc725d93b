package oplog

import (
	"fmt"
	"strings"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/protocol"
)

// objectName builds the name of a capture object of a table (trigger,
// trigger function): at most 63 bytes, PostgreSQL's limit, as it always was
// (names are stored in databases). SQLite trigger names are global,
// PostgreSQL trigger names are per table and the trigger functions are per
// table.
func objectName(prefix, table string) string { return dialect.ObjectName(prefix, table, 63) }

// checkObjectNames refuses (dbsync.ErrInvalidModel) two tracked tables
// whose capture triggers (SQLite) or trigger functions (PostgreSQL) would
// have one name.
func checkObjectNames(reg *dbsync.Registry) error {
	var names []string
	for _, t := range reg.Tables() {
		names = append(names, t.Name)
	}
	for _, prefix := range []string{"sync_", "sync_capture_"} {
		if a, b, name, ok := dialect.ObjectNameClash(prefix, 63, names); ok {
			return fmt.Errorf("%w: tables %s and %s would share the capture object %s; rename one of them", dbsync.ErrInvalidModel, a, b, name)
		}
	}
	return nil
}

// uuidKeyNotCanonical is the error of a write of a UUID primary key that
// is not a UUID in canonical form into a text column (SQLite's, or a
// PostgreSQL text column), which the capture triggers refuse.
func uuidKeyNotCanonical(t *dbsync.Table) string {
	return fmt.Sprintf("dbsync: %s.%s must be a UUID in canonical form (lowercase, hyphenated, as uuid.UUID.String writes it): the row would never sync", t.Name, t.PK.Name)
}

// sqliteTrigger is one SQLite capture trigger: its name and full SQL.
type sqliteTrigger struct {
	name string
	sql  string
}

// sqliteTriggerLog is part of every SQLite capture trigger's statement,
// by which dropUntrackedCapture also knows dbsync's triggers of tables no
// longer tracked, with the capture switch in its WHEN
// (dialect.OplogSwitch.SQLiteOn).
const sqliteTriggerLog = "INSERT INTO sync_operations (row_id, content_type_id, command)"

// sqliteTriggers returns the capture triggers of a table on SQLite:
//
//   - ai: after insert, logs i;
//   - au: after an update that keeps the primary key and changes a tracked
//     column (store.UpdateChanged), logs u;
//   - ak: after an update of the primary key, logs d (old key) and i (new);
//   - ad: after delete, logs d.
//
// Each logs only while client/server sync's capture switch is on
// (dialect.OplogSwitch: sync_state.capture is 1); its own writes switch
// it off inside their transaction, the peer mode's do not.
func sqliteTriggers(t *dbsync.Table) []sqliteTrigger {
	table := string(t.Schema().SQLName)
	pk := string(t.PK.Field().SQLName)
	ct := t.ContentTypeID
	log := func(rec, cmd string) string {
		return fmt.Sprintf(sqliteTriggerLog+` VALUES (CAST(%s.%s AS TEXT), %d, '%s');`, rec, pk, ct, cmd)
	}
	// sync_state holds one row. (No CHECK on the log's command either:
	// SQLite compiles constraints and trigger programs into every statement
	// that writes the table, and each costs every tracked write.)
	on := dialect.OplogSwitch.SQLiteOn()
	mk := func(suffix, event, when, body string) sqliteTrigger {
		name := objectName("sync_", t.Name) + "_" + suffix
		cond := on
		if when != "" {
			cond = on + " AND " + when // dbsync's own writes skip the comparisons
		}
		return sqliteTrigger{
			name: name,
			sql:  fmt.Sprintf("CREATE TRIGGER %s AFTER %s ON %s FOR EACH ROW WHEN %s BEGIN %s END", dialect.QuoteIdent(name), event, table, cond, body),
		}
	}
	// A UUID key is text on SQLite: one in another spelling would be
	// logged as it is, and the push, which reads rows by the parsed key,
	// would never find the row (uuidKeyNotCanonical).
	check := ""
	if t.KeyKind == protocol.KeyUUID {
		check = fmt.Sprintf("SELECT RAISE(ABORT, '%s') WHERE %s; ",
			strings.ReplaceAll(uuidKeyNotCanonical(t), "'", "''"), dialect.NonCanonicalUUID(dialect.SQLite, "NEW."+pk))
	}
	return []sqliteTrigger{
		mk("ai", "INSERT", "", check+log("NEW", "i")),
		// Keys compare byte for byte, whatever their collation: a
		// case-only edit of a NOCASE text key is a new key.
		mk("au", "UPDATE", fmt.Sprintf("NEW.%s IS OLD.%s COLLATE BINARY AND %s", pk, pk, store.UpdateChanged(t, dialect.SQLite)), log("NEW", "u")),
		mk("ak", "UPDATE", fmt.Sprintf("NEW.%s IS NOT OLD.%s COLLATE BINARY", pk, pk), check+log("OLD", "d")+" "+log("NEW", "i")),
		mk("ad", "DELETE", "", log("OLD", "d")),
	}
}

// pgFunctionName is the trigger function of a table on PostgreSQL.
func pgFunctionName(t *dbsync.Table) string { return objectName("sync_capture_", t.Name) }

// Names of the PostgreSQL triggers on each tracked table. PostgreSQL
// fires a table's AFTER row triggers in the byte order of their names:
// the row trigger's sorts before any unquoted name of the application's
// (they start with a letter, or "_" and a letter) and after the foreign
// keys' triggers ("RI_…", as before), so an application's trigger that
// writes the row a statement just wrote has that write logged after the
// statement's own. pgOldRowTrigger is its name before, which sorted
// after most (a new row's update by such a trigger was logged before its
// insert).
const (
	pgRowTrigger      = "__sync_capture"
	pgOldRowTrigger   = "sync_capture"
	pgTruncateTrigger = "sync_capture_truncate"
)

// pgCaptureSQL returns the statements that create the capture function and
// triggers of a table on PostgreSQL, in schema (where sync_operations
// lives). The function reads the transaction-local setting dbsync.capture
// (dialect.OplogSwitch): 'off' suppresses logging (client/server sync's
// own writes; the peer mode's have a switch of their own).
//
// A row trigger logs inserts, updates (d+i when the primary key changes)
// and deletes; a statement trigger logs a d for every row before TRUNCATE
// (under READ COMMITTED only: the rows a transaction's snapshot sees are
// not all that TRUNCATE removes).
// Both fire ALWAYS, whatever the session_replication_role.
// With checkKey (a UUID key in a text column), the row trigger refuses a
// key not in canonical form.
func pgCaptureSQL(t *dbsync.Table, schema string, checkKey bool) []string {
	table := dialect.QuoteIdent(t.Name)
	pk := string(t.PK.Field().SQLName)
	ops := dialect.QuoteIdent(schema) + ".sync_operations"
	fn := dialect.QuoteIdent(schema) + "." + dialect.QuoteIdent(pgFunctionName(t))
	ct := t.ContentTypeID
	ins := func(values string) string {
		return fmt.Sprintf("INSERT INTO %s (row_id, content_type_id, command) VALUES %s;", ops, values)
	}
	// A text key compares byte for byte, whatever its collation (a
	// case-only edit under a nondeterministic one is a new key).
	sameKey := func(rec string) string {
		if t.PK.Class() == "string" {
			return fmt.Sprintf(`%s.%s::text COLLATE "C"`, rec, pk)
		}
		return rec + "." + pk
	}
	// A UUID key in a text column (checkKey): see sqliteTriggers.
	check := ""
	if checkKey {
		check = fmt.Sprintf("IF %s THEN RAISE EXCEPTION '%%', '%s'; END IF;\n    ",
			dialect.NonCanonicalUUID(dialect.Postgres, "NEW."+pk), strings.ReplaceAll(uuidKeyNotCanonical(t), "'", "''"))
	}
	body := fmt.Sprintf(`
BEGIN
  IF current_setting('%s', true) = 'off' THEN
    RETURN NULL;
  END IF;
  IF TG_OP = 'INSERT' THEN
    %s%s
  ELSIF TG_OP = 'UPDATE' THEN
    IF %s IS NOT DISTINCT FROM %s THEN
      IF %s THEN
        %s
      END IF;
    ELSE
      %s%s
    END IF;
  ELSIF TG_OP = 'DELETE' THEN
    %s
  ELSIF TG_OP = 'TRUNCATE' THEN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
      RAISE EXCEPTION 'dbsync: TRUNCATE of tracked table %% in a %% transaction would remove rows committed since its snapshot without logging them; use DELETE, or READ COMMITTED', TG_TABLE_NAME, current_setting('transaction_isolation');
    END IF;
    INSERT INTO %s (row_id, content_type_id, command)
      SELECT %s::text, %d, 'd' FROM %s.%s;
  END IF;
  RETURN NULL;
END`,
		dialect.OplogSwitch.PGSetting(), check, ins(fmt.Sprintf("(NEW.%s::text, %d, 'i')", pk, ct)),
		sameKey("NEW"), sameKey("OLD"), store.UpdateChanged(t, dialect.Postgres),
		ins(fmt.Sprintf("(NEW.%s::text, %d, 'u')", pk, ct)),
		check, ins(fmt.Sprintf("(OLD.%s::text, %d, 'd'), (NEW.%s::text, %d, 'i')", pk, ct, pk, ct)),
		ins(fmt.Sprintf("(OLD.%s::text, %d, 'd')", pk, ct)),
		ops, pk, ct, dialect.QuoteIdent(schema), table)
	return []string{
		fmt.Sprintf("CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $dbsync$%s$dbsync$", fn, body),
		fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s.%s", pgOldRowTrigger, dialect.QuoteIdent(schema), table),
		fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s.%s", pgRowTrigger, dialect.QuoteIdent(schema), table),
		fmt.Sprintf("CREATE TRIGGER %s AFTER INSERT OR UPDATE OR DELETE ON %s.%s FOR EACH ROW EXECUTE FUNCTION %s()",
			pgRowTrigger, dialect.QuoteIdent(schema), table, fn),
		fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s.%s", pgTruncateTrigger, dialect.QuoteIdent(schema), table),
		fmt.Sprintf("CREATE TRIGGER %s BEFORE TRUNCATE ON %s.%s FOR EACH STATEMENT EXECUTE FUNCTION %s()",
			pgTruncateTrigger, dialect.QuoteIdent(schema), table, fn),
		// Fired in every session_replication_role: under replica
		// (pg_restore, replication tools) an ordinary trigger is skipped,
		// and the write with it.
		fmt.Sprintf("ALTER TABLE %s.%s ENABLE ALWAYS TRIGGER %s, ENABLE ALWAYS TRIGGER %s",
			dialect.QuoteIdent(schema), table, pgRowTrigger, pgTruncateTrigger),
	}
}

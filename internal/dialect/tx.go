package dialect

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/wire"
)

// Stream runs a query inside tx and hands its rows to onRow, calling
// onBatch after every batch rows and once at the end. onBatch may run other
// queries on tx: on PostgreSQL the query runs through a server-side cursor
// fetched batch rows at a time; SQLite allows interleaved statements on one
// connection. Memory stays bounded by one batch.
func Stream(ctx context.Context, tx bun.Tx, batch int, onRow func(*sql.Rows) error, onBatch func() error, query string, args ...any) error {
	if MustOf(tx) == Postgres {
		if _, err := tx.ExecContext(ctx, "DECLARE dbsync_stream NO SCROLL CURSOR FOR "+query, args...); err != nil {
			return fmt.Errorf("declare cursor: %w", err)
		}
		defer func() { _, _ = tx.ExecContext(context.WithoutCancel(ctx), "CLOSE dbsync_stream") }()
		fetch := fmt.Sprintf("FETCH FORWARD %d FROM dbsync_stream", batch)
		for {
			rows, err := tx.QueryContext(ctx, fetch)
			if err != nil {
				return fmt.Errorf("fetch: %w", err)
			}
			n := 0
			for rows.Next() {
				n++
				if err := onRow(rows); err != nil {
					rows.Close()
					return err
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			if n > 0 {
				if err := onBatch(); err != nil {
					return err
				}
			}
			if n < batch {
				return nil
			}
		}
	}
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		if err := onRow(rows); err != nil {
			return err
		}
		n++
		if n == batch {
			n = 0
			if err := onBatch(); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if n > 0 {
		return onBatch()
	}
	return nil
}

// MaxKey returns the greatest integer key a table has used: the larger of
// its greatest key and its sequence (SQLite AUTOINCREMENT's
// sqlite_sequence, PostgreSQL's serial or identity sequence), 0 when empty.
func MaxKey(ctx context.Context, db bun.IDB, table, pk string) (int64, error) {
	var top sql.NullInt64
	q := fmt.Sprintf("SELECT MAX(%s) FROM %s", QuoteIdent(pk), QuoteIdent(table))
	if err := db.QueryRowContext(ctx, q).Scan(&top); err != nil {
		return 0, fmt.Errorf("max key of %s: %w", table, err)
	}
	var seq sql.NullInt64
	var err error
	switch MustOf(db) {
	case Postgres:
		err = db.QueryRowContext(ctx,
			"SELECT pg_sequence_last_value(pg_get_serial_sequence(?, ?)::regclass)", QuoteIdent(table), pk).Scan(&seq)
		if err != nil && isUndefinedSequence(err) {
			err = nil
		}
	default:
		err = db.QueryRowContext(ctx, "SELECT seq FROM sqlite_sequence WHERE name = ?", table).Scan(&seq)
		if errors.Is(err, sql.ErrNoRows) || err != nil && strings.Contains(err.Error(), "no such table") {
			err = nil
		}
	}
	if err != nil {
		return 0, fmt.Errorf("sequence of %s: %w", table, err)
	}
	return max(top.Int64, seq.Int64), nil
}

// HasKeySequence reports whether a table's integer key has a sequence
// that never hands a used key out again: SQLite's AUTOINCREMENT (read
// from the table's statement in sqlite_master), PostgreSQL's serial or
// identity sequence. Without one, the database may give a deleted row's
// key to the next insert (SQLite takes the greatest key plus one). schema
// qualifies table on PostgreSQL ("": the search path's).
func HasKeySequence(ctx context.Context, db bun.IDB, schema, table, pk string) (bool, error) {
	var ok bool
	var err error
	switch MustOf(db) {
	case Postgres:
		name := QuoteIdent(table)
		if schema != "" {
			name = QuoteIdent(schema) + "." + name
		}
		err = db.QueryRowContext(ctx, "SELECT pg_get_serial_sequence(?, ?) IS NOT NULL", name, pk).Scan(&ok)
	default:
		err = db.QueryRowContext(ctx,
			"SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ? AND upper(sql) LIKE '%AUTOINCREMENT%'", table).Scan(&ok)
	}
	if err != nil {
		return false, fmt.Errorf("key sequence of %s: %w", table, err)
	}
	return ok, nil
}

func isUndefinedSequence(err error) bool {
	s := err.Error()
	return strings.Contains(s, "NULL") || strings.Contains(s, "does not exist") || strings.Contains(s, "null")
}

// BumpSequence, on PostgreSQL, moves a table's serial or identity sequence
// past the table's greatest key, so rows written with explicit keys by sync
// do not make the application's next insert collide. SQLite needs nothing.
func BumpSequence(ctx context.Context, tx bun.IDB, table, pk string) error {
	if MustOf(tx) != Postgres {
		return nil
	}
	q := fmt.Sprintf(`SELECT setval(s::regclass, GREATEST(m, COALESCE(pg_sequence_last_value(s::regclass), 1)))
FROM (SELECT pg_get_serial_sequence(?, ?) AS s, (SELECT MAX(%s) FROM %s) AS m) x
WHERE s IS NOT NULL AND m IS NOT NULL`, QuoteIdent(pk), QuoteIdent(table))
	if _, err := tx.ExecContext(ctx, q, QuoteIdent(table), pk); err != nil {
		return fmt.Errorf("bump sequence of %s: %w", table, err)
	}
	return nil
}

// AdvanceSequence moves a table's key sequence (PostgreSQL's serial or
// identity sequence, as BumpSequence; SQLite's AUTOINCREMENT counter in
// sqlite_sequence) to at least to. A key written by an UPDATE does not
// advance it: without this, an insert may later reuse the key.
func AdvanceSequence(ctx context.Context, tx bun.IDB, table, pk string, to int64) error {
	if MustOf(tx) == Postgres {
		q := fmt.Sprintf(`SELECT setval(s::regclass, GREATEST(?, COALESCE(m, 1), COALESCE(pg_sequence_last_value(s::regclass), 1)))
FROM (SELECT pg_get_serial_sequence(?, ?) AS s, (SELECT MAX(%s) FROM %s) AS m) x
WHERE s IS NOT NULL`, QuoteIdent(pk), QuoteIdent(table))
		if _, err := tx.ExecContext(ctx, q, to, QuoteIdent(table), pk); err != nil {
			return fmt.Errorf("advance the key sequence of %s: %w", table, err)
		}
		return nil
	}
	// A table that never had a row has no sqlite_sequence row yet.
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"UPDATE sqlite_sequence SET seq = ? WHERE name = ? AND seq < ?", []any{to, table, to}},
		{"INSERT INTO sqlite_sequence (name, seq) SELECT ?, ? WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?)", []any{table, to, table}},
	} {
		if _, err := tx.ExecContext(ctx, q.sql, q.args...); err != nil && !strings.Contains(err.Error(), "no such table") {
			return fmt.Errorf("advance the key sequence of %s: %w", table, err)
		}
	}
	return nil
}

// ChecksReferencesLater reports whether ApplyTx switches foreign key
// enforcement off (SQLite), so that the caller must verify the references
// it may break, rather than deferring the checks to commit (PostgreSQL).
func ChecksReferencesLater(db bun.IDB) bool { return MustOf(db) == SQLite }

// ApplyTx runs fn in a transaction in which foreign key checks wait: on
// SQLite, enforcement is switched off on the transaction's own connection
// (and restored afterwards), so fn must verify the references it may break
// (store.CheckReferences, or ForeignKeyCheck) before returning; on
// PostgreSQL the deferrable constraints are deferred to commit, and the
// transaction runs on a connection of its own, which fn's ctx carries so
// that Copy can write through it, and whose BEGIN is tried again on
// another connection when it fails on a connection found lost (RunInTx).
func ApplyTx(ctx context.Context, db *bun.DB, fn func(ctx context.Context, tx bun.Tx) error) error {
	if MustOf(db) == Postgres {
		// On a connection of its own, which ctx carries for Copy; begun
		// again on another when found lost before fn runs (RunInTx).
		return retryLost(ctx, db, func() (bool, error) {
			conn, err := db.Conn(ctx)
			if err != nil {
				return false, err
			}
			defer conn.Close()
			ran := false
			err = conn.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
				if err := DeferConstraints(ctx, tx); err != nil {
					return err
				}
				ran = true
				return fn(withTxConn(ctx, tx.Tx, conn.Conn), tx)
			})
			return ran, err
		})
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	var fkOn int
	if err := conn.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fkOn); err != nil {
		conn.Close()
		return err
	}
	if fkOn == 1 {
		if _, err := conn.ExecContext(ctx, "PRAGMA foreign_keys = OFF"); err != nil {
			// A canceled ctx may fail the statement after it ran.
			restoreForeignKeys(ctx, conn)
			return err
		}
	}
	txErr := conn.RunInTx(context.WithValue(ctx, enforcedKey{}, fkOn == 1), nil, fn)
	if fkOn == 1 {
		restoreForeignKeys(ctx, conn)
		return txErr
	}
	conn.Close()
	return txErr
}

// restoreForeignKeys switches enforcement back on on conn, whose
// enforcement ApplyTx switched off, and closes it. The pragma is a no-op
// within a transaction: when ctx was canceled, the transaction's rollback
// runs apart (database/sql's) and may come after the pragma, which then
// leaves enforcement off. So it reads enforcement back and, unless it is
// on, discards the connection: never hand a connection with enforcement
// off back to the pool, where the application's writes would take it
// (a delete not cascading, a reference to a missing row accepted).
func restoreForeignKeys(ctx context.Context, conn bun.Conn) {
	ctx = context.WithoutCancel(ctx)
	on := 0
	if _, err := conn.ExecContext(ctx, "PRAGMA foreign_keys = ON"); err == nil {
		if err := conn.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&on); err != nil {
			on = 0
		}
	}
	if on != 1 {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	conn.Close()
}

type enforcedKey struct{}

// EnforcesForeignKeys reports whether the SQLite database of an ApplyTx
// transaction (ctx is the one ApplyTx hands fn) enforced foreign keys
// before ApplyTx switched enforcement off: store.RunDeleteActions then
// runs the ON DELETE actions the database would have run.
func EnforcesForeignKeys(ctx context.Context) bool {
	on, _ := ctx.Value(enforcedKey{}).(bool)
	return on
}

// ForeignKeyCheck runs SQLite's PRAGMA foreign_key_check on whole tables
// (for applies that replace them, like a repair), failing with
// wire.ErrForeignKey (dbsync.ErrForeignKey) naming the rows; PostgreSQL
// checks its constraints itself.
func ForeignKeyCheck(ctx context.Context, tx bun.Tx, tables []string) error {
	if MustOf(tx) != SQLite {
		return nil
	}
	for _, t := range tables {
		rows, err := tx.QueryContext(ctx, "SELECT \"table\", rowid, parent FROM pragma_foreign_key_check(?)", t)
		if err != nil {
			return fmt.Errorf("foreign key check of %s: %w", t, err)
		}
		var problems []string
		for rows.Next() {
			var table, parent string
			var rowid sql.NullInt64
			if err := rows.Scan(&table, &rowid, &parent); err != nil {
				rows.Close()
				return err
			}
			if len(problems) < 5 {
				problems = append(problems, fmt.Sprintf("%s row %d references a missing %s", table, rowid.Int64, parent))
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(problems) > 0 {
			return fmt.Errorf("%w: %s", wire.ErrForeignKey, strings.Join(problems, "; "))
		}
	}
	return nil
}

// ForeignKeyViolations counts, by table, the rows of a SQLite database
// referencing missing rows (PRAGMA foreign_key_check on every table).
func ForeignKeyViolations(ctx context.Context, tx bun.Tx) (map[string]int, error) {
	rows, err := tx.QueryContext(ctx, `SELECT "table", count(*) FROM pragma_foreign_key_check GROUP BY 1`)
	if err != nil {
		return nil, fmt.Errorf("foreign key check: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var t string
		var k int
		if err := rows.Scan(&t, &k); err != nil {
			return nil, fmt.Errorf("foreign key check: %w", err)
		}
		out[t] = k
	}
	return out, rows.Err()
}

// IsForeignKeyViolation reports whether err is the database's own foreign
// key error (PostgreSQL's SQLSTATE 23503, SQLite's "FOREIGN KEY constraint
// failed"). Its text is the database's: log it, never send it.
func IsForeignKeyViolation(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "SQLSTATE 23503") || strings.Contains(s, "FOREIGN KEY constraint failed")
}

// DeleteRestrictedBy returns, for PostgreSQL refusing a delete that a
// foreign key without an ON DELETE action still references (SQLSTATE
// 23503, "update or delete on table … violates foreign key constraint"),
// the referencing table; ok false for any other error.
func DeleteRestrictedBy(err error) (table string, ok bool) {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) || pg.Code != "23503" || !strings.HasPrefix(pg.Message, "update or delete on table") {
		return "", false
	}
	return pg.TableName, true
}

// IsBusy reports whether err is the database giving up a statement that
// waited too long, nothing written: SQLite's write lock held by another
// connection past the busy timeout (SQLITE_BUSY: a long push, an
// application's transaction), or on PostgreSQL a lock not granted within
// lock_timeout (SQLSTATE 55P03) or a statement cut by statement_timeout
// (57014), settings of the server's role or connection string, or a
// transaction failed by the deadlock detector (40P01: an application's
// transaction locked rows a push writes in another order; the whole
// transaction rolled back). Retried later, the statement goes through.
func IsBusy(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "(SQLITE_BUSY)") || strings.Contains(s, "SQLSTATE 55P03") || strings.Contains(s, "SQLSTATE 57014") ||
		IsDeadlock(err)
}

// IsDeadlock reports whether err is PostgreSQL's deadlock detector
// failing a transaction (SQLSTATE 40P01), rolled back whole: run again,
// it goes through.
func IsDeadlock(err error) bool {
	return err != nil && strings.Contains(err.Error(), "SQLSTATE 40P01")
}

// IsUniqueViolation reports whether err is a unique or primary key
// constraint violation.
func IsUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "SQLSTATE 23505") || strings.Contains(s, "UNIQUE constraint failed") ||
		strings.Contains(s, "duplicate key value violates unique constraint")
}

// IsCardinalityViolation reports whether err is PostgreSQL refusing a
// statement that would write one row twice (SQLSTATE 21000: an INSERT …
// ON CONFLICT DO UPDATE whose rows name one row, as its key's collation
// compares them).
func IsCardinalityViolation(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "21000"
}

// IsNoEquality reports whether err is PostgreSQL finding no operator for
// a comparison (SQLSTATE 42883): a column whose type has no equality
// (json, xml) compared with a value.
func IsNoEquality(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "42883"
}

// Refusal is a value the database refused in a row (RefusedValue): what,
// in dbsync's words, with the table and column when the database names
// them.
type Refusal struct {
	Table, Column, What string
}

// RefusedValue reports whether err is the database refusing a value of a
// row written (or compared with a column): a text longer than its column
// allows, a number or date out of its column's range, a value its
// column's type does not accept (PostgreSQL's other data exceptions: a
// text that is no inet, enum value, date, XML, …), a literal of another
// type than its column's (PostgreSQL's 42804: an integer into jsonb), a
// null in a NOT NULL column, a value a CHECK constraint refuses, a value
// too large for an index. Refusal.What never holds the database's own
// text.
func RefusedValue(err error) (Refusal, bool) {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		r := Refusal{Table: pg.TableName, Column: pg.ColumnName}
		switch pg.Code {
		case "22001":
			r.What = "a text longer than its column allows"
		case "22003":
			r.What = "a number out of its column's range"
		case "22008":
			r.What = "a date or time out of its column's range"
		case "23502":
			r.What = "no value (null) for a NOT NULL column"
		case "23514":
			r.What = "a value the CHECK constraint " + pg.ConstraintName + " refuses"
		case "42804":
			// A literal of another type than the column's, which bun
			// writes for a driver.Valuer whose value is an int64, a
			// float64 or a bool: an integer into a json or jsonb column
			// (a custom type's; database/sql's null types there are
			// refused at startup, store.CheckColumns). NULL is taken:
			// the value, not the statement, is at fault.
			r.What = "a value of another type than its column's"
		case "54000":
			// A btree entry holds about 2.7 kB (a long text in a unique
			// column), an index row about 8 kB.
			r.What = "a value too large for an index of its column"
		default:
			// The rest of class 22, data exceptions: a text the
			// column's type does not parse (22P02: an inet, an enum;
			// 22007: a date; 2200N: XML), …
			if !strings.HasPrefix(pg.Code, "22") {
				return Refusal{}, false
			}
			r.What = "a value its column's type does not accept"
		}
		return r, true
	}
	if err == nil {
		return Refusal{}, false
	}
	s := err.Error()
	for _, c := range []struct{ prefix, what string }{
		{"NOT NULL constraint failed: ", "no value (null) for a NOT NULL column"},
		{"CHECK constraint failed: ", "a value a CHECK constraint refuses"},
	} {
		i := strings.Index(s, c.prefix)
		if i < 0 {
			continue
		}
		r := Refusal{What: c.what}
		name, _, _ := strings.Cut(s[i+len(c.prefix):], " ")
		if c.prefix[0] == 'N' {
			r.Table, r.Column, _ = strings.Cut(name, ".")
		} else {
			r.What = "a value the CHECK constraint " + name + " refuses"
		}
		return r, true
	}
	return Refusal{}, false
}

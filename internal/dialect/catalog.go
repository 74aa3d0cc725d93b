package dialect

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/uptrace/bun"
)

// ForeignKey is a single-column foreign key read from the catalog.
type ForeignKey struct {
	Name       string // constraint name (PostgreSQL) or "" (SQLite)
	Table      string
	Column     string
	RefTable   string
	RefColumn  string
	OnDelete   string // NO ACTION, CASCADE, SET NULL, SET DEFAULT, RESTRICT
	Deferrable bool
}

// ForeignKeys lists the single-column foreign keys of the given tables:
// those of CatalogForeignKeys with one column.
func ForeignKeys(ctx context.Context, db bun.IDB, tables []string) ([]ForeignKey, error) {
	all, err := CatalogForeignKeys(ctx, db, tables)
	if err != nil {
		return nil, err
	}
	var out []ForeignKey
	for _, fk := range all {
		if len(fk.Columns) != 1 {
			continue
		}
		one := ForeignKey{Name: fk.Name, Table: fk.Table, Column: fk.Columns[0], RefTable: fk.RefTable,
			OnDelete: fk.OnDelete, Deferrable: fk.Deferrable}
		if len(fk.RefColumns) == 1 {
			one.RefColumn = fk.RefColumns[0]
		}
		out = append(out, one)
	}
	return out, nil
}

// CatalogForeignKey is a foreign key read from the catalog, with all its
// columns.
type CatalogForeignKey struct {
	Name    string // constraint name (PostgreSQL) or "" (SQLite)
	Table   string
	Columns []string
	// RefTable is the parent table and RefColumns its columns, in the
	// order of Columns. A SQLite key that names no parent columns
	// references the parent's primary key: RefColumns is that key, or
	// nil when it has not as many columns as Columns (or the parent does
	// not exist).
	RefTable   string
	RefColumns []string
	OnDelete   string // NO ACTION, CASCADE, SET NULL, SET DEFAULT, RESTRICT
	Deferrable bool
}

// CatalogForeignKeys lists the foreign keys of the given tables, by table
// (in the order of tables on SQLite, by name on PostgreSQL), then by
// constraint.
func CatalogForeignKeys(ctx context.Context, db bun.IDB, tables []string) ([]CatalogForeignKey, error) {
	if MustOf(db) == Postgres {
		return pgForeignKeys(ctx, db, tables)
	}
	var out []CatalogForeignKey
	for _, t := range tables {
		fks, err := sqliteForeignKeys(ctx, db, t)
		if err != nil {
			return nil, err
		}
		out = append(out, fks...)
	}
	return out, nil
}

// ActsOnDelete reports whether the key's ON DELETE action changes the
// referencing rows (CASCADE, SET NULL, SET DEFAULT) rather than refusing
// the delete (NO ACTION, RESTRICT).
func (fk CatalogForeignKey) ActsOnDelete() bool {
	return fk.OnDelete == "CASCADE" || fk.OnDelete == "SET NULL" || fk.OnDelete == "SET DEFAULT"
}

// ReferencingForeignKeys lists the foreign keys that reference one of
// parents: on PostgreSQL those of the current schema's tables, in the
// order of CatalogForeignKeys; on SQLite those of every table, by table
// name (a parent's name compared as SQLite compares names, ignoring
// ASCII case).
func ReferencingForeignKeys(ctx context.Context, db bun.IDB, parents []string) ([]CatalogForeignKey, error) {
	if len(parents) == 0 {
		return nil, nil
	}
	if MustOf(db) == Postgres {
		return pgForeignKeysWhere(ctx, db, "fcl.relnamespace = quote_ident(current_schema())::regnamespace AND fcl.relname IN (?)", parents)
	}
	var tables []string
	if err := db.NewRaw(`SELECT DISTINCT m.name FROM sqlite_master m, pragma_foreign_key_list(m.name) f
WHERE m.type = 'table' AND f."table" COLLATE NOCASE IN (?) ORDER BY m.name`, bun.List(parents)).Scan(ctx, &tables); err != nil {
		return nil, fmt.Errorf("read the foreign keys referencing %s: %w", strings.Join(parents, ", "), err)
	}
	fks, err := CatalogForeignKeys(ctx, db, tables)
	if err != nil {
		return nil, err
	}
	out := fks[:0]
	for _, fk := range fks {
		if slices.ContainsFunc(parents, func(p string) bool { return strings.EqualFold(p, fk.RefTable) }) {
			out = append(out, fk)
		}
	}
	return out, nil
}

// PrimaryKey returns, on PostgreSQL, the columns of the primary key of
// table (in the current schema), in the key's order: none when it has
// none.
func PrimaryKey(ctx context.Context, db bun.IDB, table string) ([]string, error) {
	var cols []string
	if err := db.NewRaw(`SELECT a.attname FROM pg_index i
JOIN pg_class cl ON cl.oid = i.indrelid
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indisprimary AND cl.relname = ? AND cl.relnamespace = quote_ident(current_schema())::regnamespace
ORDER BY k.n`, table).Scan(ctx, &cols); err != nil {
		return nil, fmt.Errorf("read the primary key of %s: %w", table, err)
	}
	return cols, nil
}

func pgForeignKeys(ctx context.Context, db bun.IDB, tables []string) ([]CatalogForeignKey, error) {
	return pgForeignKeysWhere(ctx, db, "cl.relname IN (?)", tables)
}

// pgForeignKeysWhere lists the foreign keys of the current schema's tables
// that meet where (over cl, the table, and fcl, the parent), whose one
// placeholder takes names.
func pgForeignKeysWhere(ctx context.Context, db bun.IDB, where string, names []string) ([]CatalogForeignKey, error) {
	rows, err := db.QueryContext(ctx, `
SELECT con.oid::bigint, con.conname, cl.relname, att.attname, fcl.relname, fatt.attname, con.confdeltype, con.condeferrable
FROM pg_constraint con
JOIN pg_class cl ON cl.oid = con.conrelid
JOIN pg_class fcl ON fcl.oid = con.confrelid
CROSS JOIN LATERAL unnest(con.conkey, con.confkey) WITH ORDINALITY AS k(attnum, fattnum, n)
JOIN pg_attribute att ON att.attrelid = con.conrelid AND att.attnum = k.attnum
JOIN pg_attribute fatt ON fatt.attrelid = con.confrelid AND fatt.attnum = k.fattnum
WHERE con.contype = 'f'
  AND cl.relnamespace = quote_ident(current_schema())::regnamespace
  AND `+where+`
ORDER BY cl.relname, con.conname, con.oid, k.n`, bun.List(names))
	if err != nil {
		return nil, fmt.Errorf("read foreign keys: %w", err)
	}
	defer rows.Close()
	var out []CatalogForeignKey
	last := int64(-1)
	for rows.Next() {
		var oid int64
		var fk CatalogForeignKey
		var col, refCol, del string
		if err := rows.Scan(&oid, &fk.Name, &fk.Table, &col, &fk.RefTable, &refCol, &del, &fk.Deferrable); err != nil {
			return nil, fmt.Errorf("read foreign keys: %w", err)
		}
		if oid != last {
			fk.OnDelete = map[string]string{"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}[del]
			out = append(out, fk)
			last = oid
		}
		cur := &out[len(out)-1]
		cur.Columns = append(cur.Columns, col)
		cur.RefColumns = append(cur.RefColumns, refCol)
	}
	return out, rows.Err()
}

// sqliteForeignKeys reads the foreign keys of table t (PRAGMA
// foreign_key_list), resolving the parent columns of a key that names
// none to the parent's primary key.
func sqliteForeignKeys(ctx context.Context, db bun.IDB, t string) ([]CatalogForeignKey, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, "table", "from", "to", on_delete FROM pragma_foreign_key_list(?) ORDER BY id, seq`, t)
	if err != nil {
		return nil, fmt.Errorf("read foreign keys of %s: %w", t, err)
	}
	var out []CatalogForeignKey
	last := -1
	for rows.Next() {
		var id int
		var parent, from, onDelete string
		var to *string
		if err := rows.Scan(&id, &parent, &from, &to, &onDelete); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read foreign keys of %s: %w", t, err)
		}
		if id != last {
			out = append(out, CatalogForeignKey{Table: t, RefTable: parent, OnDelete: onDelete})
			last = id
		}
		fk := &out[len(out)-1]
		fk.Columns = append(fk.Columns, from)
		if to != nil {
			fk.RefColumns = append(fk.RefColumns, *to)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read foreign keys of %s: %w", t, err)
	}
	for i := range out {
		fk := &out[i]
		if len(fk.RefColumns) == len(fk.Columns) {
			continue
		}
		var pk []string
		if err := db.NewRaw(`SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk`, fk.RefTable).Scan(ctx, &pk); err != nil {
			return nil, fmt.Errorf("read the primary key of %s: %w", fk.RefTable, err)
		}
		fk.RefColumns = nil
		if len(pk) == len(fk.Columns) {
			fk.RefColumns = pk
		}
	}
	return out, nil
}

// UniqueIndex is a unique constraint or unique index (not the primary key).
type UniqueIndex struct {
	Table   string
	Columns []string
}

// UniqueIndexes lists the unique constraints and unique indexes (without
// expressions or predicates) of the given tables.
func UniqueIndexes(ctx context.Context, db bun.IDB, tables []string) ([]UniqueIndex, error) {
	var out []UniqueIndex
	switch MustOf(db) {
	case Postgres:
		rows, err := db.QueryContext(ctx, `
SELECT cl.relname, string_agg(att.attname, ',' ORDER BY k.ord)
FROM pg_index ix
JOIN pg_class cl ON cl.oid = ix.indrelid
CROSS JOIN LATERAL unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute att ON att.attrelid = ix.indrelid AND att.attnum = k.attnum
WHERE ix.indisunique AND NOT ix.indisprimary AND ix.indpred IS NULL AND ix.indexprs IS NULL
  AND cl.relnamespace = quote_ident(current_schema())::regnamespace
  AND cl.relname IN (?)
GROUP BY cl.relname, ix.indexrelid
ORDER BY cl.relname, ix.indexrelid`, bun.List(tables))
		if err != nil {
			return nil, fmt.Errorf("read unique indexes: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var u UniqueIndex
			var cols string
			if err := rows.Scan(&u.Table, &cols); err != nil {
				return nil, fmt.Errorf("read unique indexes: %w", err)
			}
			u.Columns = strings.Split(cols, ",")
			out = append(out, u)
		}
		return out, rows.Err()
	default:
		for _, t := range tables {
			rows, err := db.QueryContext(ctx, "SELECT name, origin, partial FROM pragma_index_list(?) WHERE \"unique\" = 1", t)
			if err != nil {
				return nil, fmt.Errorf("read unique indexes of %s: %w", t, err)
			}
			var names []string
			for rows.Next() {
				var name, origin string
				var partial int
				if err := rows.Scan(&name, &origin, &partial); err != nil {
					rows.Close()
					return nil, err
				}
				if origin != "pk" && partial == 0 {
					names = append(names, name)
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, err
			}
			for _, name := range names {
				cols, err := sqliteIndexColumns(ctx, db, name)
				if err != nil {
					return nil, err
				}
				if cols != nil {
					out = append(out, UniqueIndex{Table: t, Columns: cols})
				}
			}
		}
		return out, nil
	}
}

// sqliteIndexColumns returns the columns of an index, or nil when one of
// them is an expression.
func sqliteIndexColumns(ctx context.Context, db bun.IDB, index string) ([]string, error) {
	rows, err := db.QueryContext(ctx, "SELECT name FROM pragma_index_info(?) ORDER BY seqno", index)
	if err != nil {
		return nil, fmt.Errorf("read index %s: %w", index, err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var name *string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		if name == nil {
			return nil, nil
		}
		cols = append(cols, *name)
	}
	return cols, rows.Err()
}

// ColumnInfo is what the catalog says about a column's values.
type ColumnInfo struct {
	NotNull bool
	// MaxLength is the declared length of a character column
	// (PostgreSQL's varchar(n), char(n)); 0 when unbounded or unknown
	// (SQLite does not enforce lengths).
	MaxLength int
	// NullsNotDistinct is true when a unique index of the table over the
	// column treats NULLs as equal (PostgreSQL 15's NULLS NOT DISTINCT).
	NullsNotDistinct bool
	// IntBits is the width of an integer column where the database bounds
	// it below 64 bits (PostgreSQL's smallint, integer); 0 otherwise.
	IntBits int
	// HasDefault is true when an INSERT may leave the column out: it has
	// a default, or is an identity or generated column.
	HasDefault bool
	// Generated is true for a generated column (GENERATED ALWAYS AS …),
	// which the database computes and an INSERT or UPDATE cannot set.
	Generated bool
	// JSONType is "json" or "jsonb" for a column of PostgreSQL's json or
	// jsonb type (or a domain over one), which takes only JSON text: what
	// bun creates for a struct field of a type it does not know,
	// sql.NullInt32 and sql.Null[T] among them. Else, and on SQLite, "".
	JSONType string
}

// pgColumns reads what information_schema.columns says of a table's
// columns (the same rules: a domain's NOT NULL and base type count, the
// length through information_schema's own functions, only the columns
// the role owns or holds a privilege on) from pg_catalog
// directly: the view computes every column of every table it may show
// before filtering, which made this query the PostgreSQL server's most
// frequent one in the tests (each node's start and each push's schema
// check read it). indnullsnotdistinct exists from PostgreSQL 15 on: read
// through to_jsonb so that older servers answer false.
const pgColumns = `SELECT a.attname, a.attnotnull OR (t.typtype = 'd' AND t.typnotnull),
	COALESCE(information_schema._pg_char_max_length(information_schema._pg_truetypid(a.*, t.*), information_schema._pg_truetypmod(a.*, t.*)), 0),
	EXISTS (SELECT 1 FROM pg_index i
		WHERE i.indrelid = c.oid AND i.indisunique
		AND COALESCE((to_jsonb(i) ->> 'indnullsnotdistinct')::boolean, false)
		AND a.attnum = ANY (i.indkey)),
	CASE information_schema._pg_truetypid(a.*, t.*) WHEN 'int2'::regtype THEN 16 WHEN 'int4'::regtype THEN 32 ELSE 0 END,
	a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '', a.attgenerated <> '',
	CASE information_schema._pg_truetypid(a.*, t.*) WHEN 'json'::regtype THEN 'json' WHEN 'jsonb'::regtype THEN 'jsonb' ELSE '' END
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_type t ON t.oid = a.atttypid
WHERE c.relnamespace = quote_ident(current_schema())::regnamespace AND c.relname = ?
	AND c.relkind IN ('r', 'v', 'f', 'p') AND a.attnum > 0 AND NOT a.attisdropped
	AND (pg_has_role(c.relowner, 'USAGE') OR has_column_privilege(c.oid, a.attnum, 'SELECT, INSERT, UPDATE, REFERENCES'))`

// Columns describes the columns of a table by name.
func Columns(ctx context.Context, db bun.IDB, table string) (map[string]ColumnInfo, error) {
	var q string
	switch MustOf(db) {
	case Postgres:
		q = pgColumns
	default:
		// table_xinfo, not table_info: generated columns (hidden 2 and 3)
		// are columns of the table too.
		q = `SELECT name, "notnull" <> 0, 0, false, 0, dflt_value IS NOT NULL OR hidden IN (2, 3), hidden IN (2, 3), '' FROM pragma_table_xinfo(?) WHERE hidden <> 1`
	}
	rows, err := db.QueryContext(ctx, q, table)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", table, err)
	}
	defer rows.Close()
	out := map[string]ColumnInfo{}
	for rows.Next() {
		var name string
		var c ColumnInfo
		if err := rows.Scan(&name, &c.NotNull, &c.MaxLength, &c.NullsNotDistinct, &c.IntBits, &c.HasDefault, &c.Generated, &c.JSONType); err != nil {
			return nil, fmt.Errorf("read columns of %s: %w", table, err)
		}
		out[name] = c
	}
	return out, rows.Err()
}

// LossyColumns returns, on PostgreSQL, the declared type of each column of
// a table whose type stores some values changed where SQLite, which
// ignores a declared precision, keeps them as written: numeric(p,s)
// rounds to its scale, char(n) pads with spaces, timestamp(p) and
// timestamptz(p) with p below bun's 6 round fractions of a second, date
// drops the time of day, time and timetz drop the date (and round with
// p below 6), and real (float4)
// rounds a float64 to a float32 (the caller knows which Go type it
// holds). Domains over such types are left out. On SQLite it returns
// nil.
func LossyColumns(ctx context.Context, db bun.IDB, table string) (map[string]string, error) {
	if MustOf(db) != Postgres {
		return nil, nil
	}
	rows, err := db.QueryContext(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
WHERE c.relnamespace = quote_ident(current_schema())::regnamespace AND c.relname = ?
	AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
	AND (a.atttypid IN ('date'::regtype, 'float4'::regtype, 'time'::regtype, 'timetz'::regtype)
		OR a.atttypmod >= 0 AND a.atttypid IN ('numeric'::regtype, 'bpchar'::regtype)
		OR a.atttypmod BETWEEN 0 AND 5 AND a.atttypid IN ('timestamp'::regtype, 'timestamptz'::regtype))`, table)
	if err != nil {
		return nil, fmt.Errorf("read column types of %s: %w", table, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, fmt.Errorf("read column types of %s: %w", table, err)
		}
		out[name] = typ
	}
	return out, rows.Err()
}

// ExistingTables returns those of names that are tables of the database
// (PostgreSQL: in the current schema), in no particular order.
func ExistingTables(ctx context.Context, db bun.IDB, names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	q := "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (?)"
	if MustOf(db) == Postgres {
		q = "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p') AND relnamespace = quote_ident(current_schema())::regnamespace AND relname IN (?)"
	}
	var found []string
	if err := db.NewRaw(q, bun.List(names)).Scan(ctx, &found); err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	return found, nil
}

// MakeDeferrable makes a foreign key DEFERRABLE INITIALLY IMMEDIATE on
// PostgreSQL (schema is its current schema), so its checks can wait for
// commit (ApplyTx) while applications see no difference. It reports
// whether it altered the constraint: not on SQLite, nor when the
// constraint is deferrable already.
func MakeDeferrable(ctx context.Context, tx bun.IDB, schema string, fk ForeignKey) (bool, error) {
	if MustOf(tx) != Postgres || fk.Deferrable {
		return false, nil
	}
	q := fmt.Sprintf("ALTER TABLE %s.%s ALTER CONSTRAINT %s DEFERRABLE INITIALLY IMMEDIATE",
		QuoteIdent(schema), QuoteIdent(fk.Table), QuoteIdent(fk.Name))
	if _, err := tx.ExecContext(ctx, q); err != nil {
		return false, fmt.Errorf("make %s.%s deferrable: %w", fk.Table, fk.Name, err)
	}
	return true, nil
}

// DeferrableKeyProblem says why a key DeferrableKeys names is refused.
const DeferrableKeyProblem = "key unique only under a DEFERRABLE constraint, which lets one statement swap keys between rows, a change the capture would record wrong; make the primary key NOT DEFERRABLE"

// DeferrableKeys returns, as "table.column", sorted, the keys (keys: key
// column by table, in the current schema) that are unique only under
// DEFERRABLE constraints on PostgreSQL (nothing on SQLite, which checks
// every unique index row by row). Checked at the end of a statement, such
// a key lets one statement give a key to a row before another row gives
// it up; one unique index on the key alone checked at once (a primary
// key, unless declared DEFERRABLE) refuses such statements.
func DeferrableKeys(ctx context.Context, db bun.IDB, keys map[string]string) ([]string, error) {
	if MustOf(db) != Postgres || len(keys) == 0 {
		return nil, nil
	}
	tables := make([]string, 0, len(keys))
	for t := range keys {
		tables = append(tables, t)
	}
	var rows []struct {
		Table  string `bun:"relname"`
		Column string `bun:"attname"`
	}
	if err := db.NewRaw(`SELECT cl.relname, att.attname FROM pg_index ix
JOIN pg_class cl ON cl.oid = ix.indrelid
JOIN pg_attribute att ON att.attrelid = ix.indrelid AND att.attnum = ix.indkey[0]
WHERE ix.indisunique AND ix.indnkeyatts = 1 AND ix.indpred IS NULL AND ix.indexprs IS NULL
  AND cl.relnamespace = quote_ident(current_schema())::regnamespace AND cl.relname IN (?)
GROUP BY cl.relname, att.attname HAVING NOT bool_or(ix.indimmediate)`, bun.List(tables)).Scan(ctx, &rows); err != nil {
		return nil, fmt.Errorf("read unique indexes of keys: %w", err)
	}
	var out []string
	for _, r := range rows {
		if keys[r.Table] == r.Column {
			out = append(out, r.Table+"."+r.Column)
		}
	}
	slices.Sort(out)
	return out, nil
}

// KeyEquality returns how the database compares a text with the values
// of a table's (key) column: "" when byte for byte, else an SQL
// expression, with %s for the compared text, that compares as the column
// does. SQLite: the collation of the column in its primary key (or
// unique) index, when not BINARY (NOCASE: "ABC" is "abc"; RTRIM).
// PostgreSQL: a cast to the column's type under its collation, when the
// collation is nondeterministic (an ICU one that ignores case) or the
// type's equality is not text's (citext, char(n)).
func KeyEquality(ctx context.Context, db bun.IDB, table, column string) (string, error) {
	if MustOf(db) == Postgres {
		// The type without its length (format_type with typmod -1:
		// bpchar, where NULL gives character, char(1), which cuts).
		var typ, coll string
		var loose bool
		err := db.NewRaw(`SELECT format_type(a.atttypid, -1),
	COALESCE(quote_ident(n.nspname) || '.' || quote_ident(co.collname), ''),
	NOT COALESCE(co.collisdeterministic, true) OR COALESCE(NULLIF(t.typbasetype, 0), a.atttypid) NOT IN ('text'::regtype, 'varchar'::regtype)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_collation co ON co.oid = a.attcollation
LEFT JOIN pg_namespace n ON n.oid = co.collnamespace
WHERE c.relnamespace = quote_ident(current_schema())::regnamespace AND c.relname = ? AND a.attname = ? AND NOT a.attisdropped`, table, column).
			Scan(ctx, &typ, &coll, &loose)
		if errors.Is(err, sql.ErrNoRows) {
			return "", nil // not a column of the current schema's table
		}
		if err != nil {
			return "", fmt.Errorf("read the collation of %s.%s: %w", table, column, err)
		}
		if !loose {
			return "", nil
		}
		// The names are the expression's text, not its verbs.
		expr := "CAST(%s AS " + strings.ReplaceAll(typ, "%", "%%") + ")"
		if coll != "" {
			expr += " COLLATE " + strings.ReplaceAll(coll, "%", "%%")
		}
		return expr, nil
	}
	var colls []string
	err := db.NewRaw(`SELECT x.coll FROM pragma_index_list(?) AS l, pragma_index_xinfo(l.name) AS x
WHERE l."unique" AND l.partial = 0 AND x.key AND x.seqno = 0 AND x.name = ? COLLATE NOCASE
ORDER BY l.origin = 'pk' DESC`, table, column).Scan(ctx, &colls)
	if err != nil {
		return "", fmt.Errorf("read the collation of %s.%s: %w", table, column, err)
	}
	if len(colls) == 0 || strings.EqualFold(colls[0], "BINARY") {
		return "", nil
	}
	return "%s COLLATE " + strings.ReplaceAll(QuoteIdent(colls[0]), "%", "%%"), nil
}

// SQLiteAffinity returns the type affinity SQLite gives a column declared
// with type decl (https://sqlite.org/datatype3.html, 3.1): INTEGER,
// TEXT, BLOB, REAL or NUMERIC, by the first rule that matches.
func SQLiteAffinity(decl string) string {
	d := strings.ToUpper(decl)
	switch {
	case strings.Contains(d, "INT"):
		return "INTEGER"
	case strings.Contains(d, "CHAR"), strings.Contains(d, "CLOB"), strings.Contains(d, "TEXT"):
		return "TEXT"
	case strings.Contains(d, "BLOB"), strings.TrimSpace(d) == "":
		return "BLOB"
	case strings.Contains(d, "REAL"), strings.Contains(d, "FLOA"), strings.Contains(d, "DOUB"):
		return "REAL"
	}
	return "NUMERIC"
}

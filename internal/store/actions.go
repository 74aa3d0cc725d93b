package store

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// RunDeleteActions runs, on SQLite, the ON DELETE actions (CASCADE, SET
// NULL, SET DEFAULT) of the foreign keys that tables dbsync does not
// track hold to tables (those an apply deleted rows of), as SQLite runs
// them when it enforces foreign keys, which dialect.ApplyTx switches off:
// at the end of the apply, on the rows whose parent is missing then (a
// row deleted and written again by the same apply keeps the rows that
// reference it), and down chains of untracked tables. Only where the
// database enforced foreign keys (dialect.EnforcesForeignKeys): without
// enforcement SQLite runs no action either. NO ACTION and RESTRICT keys
// are left as they are, referencing the missing row. PostgreSQL runs its
// actions itself, at each delete: nothing to do. The cost is a catalog
// read per level, and a scan of each untracked table acted on, probing
// its parent's key.
func RunDeleteActions(ctx context.Context, tx bun.IDB, reg *dbsync.Registry, tables []string) error {
	return runDeleteActions(ctx, tx, reg, tables, false)
}

// RunDeleteActionsRestricted is RunDeleteActions refusing (an error
// wrapping dbsync.ErrForeignKey) the rows its CASCADE deletes that rows of
// other untracked tables reference through a foreign key without an ON
// DELETE action, as PostgreSQL refuses them (a server's push: a delete
// cascading down untracked tables into a NO ACTION or RESTRICT key).
func RunDeleteActionsRestricted(ctx context.Context, tx bun.IDB, reg *dbsync.Registry, tables []string) error {
	return runDeleteActions(ctx, tx, reg, tables, true)
}

func runDeleteActions(ctx context.Context, tx bun.IDB, reg *dbsync.Registry, tables []string, restrict bool) error {
	if !dialect.ChecksReferencesLater(tx) || len(tables) == 0 || !dialect.EnforcesForeignKeys(ctx) {
		return nil
	}
	for frontier := tables; len(frontier) > 0; {
		fks, err := dialect.ReferencingForeignKeys(ctx, tx, frontier)
		if err != nil {
			return err
		}
		frontier = nil
		for _, fk := range fks {
			if reg.Table(fk.Table) != nil || !fk.ActsOnDelete() || len(fk.RefColumns) != len(fk.Columns) {
				continue
			}
			var n int64
			var err error
			if restrict && fk.OnDelete == "CASCADE" {
				n, err = cascadeRestricted(ctx, tx, fk)
			} else {
				n, err = runDeleteAction(ctx, tx, fk)
			}
			if err != nil {
				return err
			}
			if n > 0 && fk.OnDelete == "CASCADE" && !slices.Contains(frontier, fk.Table) {
				frontier = append(frontier, fk.Table)
			}
		}
	}
	return nil
}

// runDeleteAction runs fk's ON DELETE action on the rows of its table
// whose reference (all its columns set, as SQLite's MATCH SIMPLE) names
// no row of its parent, returning how many rows it changed.
func runDeleteAction(ctx context.Context, tx bun.IDB, fk dialect.CatalogForeignKey) (int64, error) {
	var assign []string
	var dflt map[string]*string
	if fk.OnDelete == "SET DEFAULT" {
		var cols []struct {
			Name string  `bun:"name"`
			Dflt *string `bun:"dflt_value"`
		}
		if err := tx.NewRaw("SELECT name, dflt_value FROM pragma_table_info(?)", fk.Table).Scan(ctx, &cols); err != nil {
			return 0, fmt.Errorf("read the defaults of %s: %w", fk.Table, err)
		}
		dflt = map[string]*string{}
		for _, c := range cols {
			dflt[strings.ToLower(c.Name)] = c.Dflt
		}
	}
	for _, from := range fk.Columns {
		value := "NULL"
		if d := dflt[strings.ToLower(from)]; d != nil {
			value = "(" + *d + ")"
		}
		assign = append(assign, dialect.QuoteIdent(from)+" = "+value)
	}
	where := orphaned(fk)
	q := "DELETE FROM " + dialect.QuoteIdent(fk.Table) + " AS c WHERE " + where
	if fk.OnDelete != "CASCADE" {
		q = "UPDATE " + dialect.QuoteIdent(fk.Table) + " AS c SET " + strings.Join(assign, ", ") + " WHERE " + where
	}
	res, err := tx.ExecContext(ctx, q)
	if err != nil {
		return 0, fmt.Errorf("run the ON DELETE %s of %s (%s) to %s: %w", fk.OnDelete, fk.Table, strings.Join(fk.Columns, ", "), fk.RefTable, err)
	}
	return res.RowsAffected()
}

// orphaned is the condition on fk's table (as c) of its rows whose
// reference (all its columns set, as SQLite's MATCH SIMPLE) names no row
// of its parent.
func orphaned(fk dialect.CatalogForeignKey) string {
	var set, match []string
	for i, from := range fk.Columns {
		col := dialect.QuoteIdent(from)
		set = append(set, "c."+col+" IS NOT NULL")
		match = append(match, "p."+dialect.QuoteIdent(fk.RefColumns[i])+" = c."+col)
	}
	return strings.Join(set, " AND ") + " AND NOT EXISTS (SELECT 1 FROM " + dialect.QuoteIdent(fk.RefTable) + " p WHERE " + strings.Join(match, " AND ") + ")"
}

// cascadeRestricted runs fk's ON DELETE CASCADE (runDeleteAction),
// refusing it where rows of an untracked table reference a deleted row
// through a one-column foreign key without an ON DELETE action.
func cascadeRestricted(ctx context.Context, tx bun.IDB, fk dialect.CatalogForeignKey) (int64, error) {
	below, err := dialect.ReferencingForeignKeys(ctx, tx, []string{fk.Table})
	if err != nil {
		return 0, err
	}
	var held []dialect.CatalogForeignKey
	for _, b := range below {
		// Tracked tables too: no check covers their references to rows
		// of untracked tables a cascade deletes.
		if !b.ActsOnDelete() && len(b.Columns) == 1 && len(b.RefColumns) == 1 {
			held = append(held, b)
		}
	}
	if len(held) == 0 {
		return runDeleteAction(ctx, tx, fk)
	}
	var ret []string
	for _, b := range held {
		ret = append(ret, dialect.QuoteIdent(b.RefColumns[0]))
	}
	q := "DELETE FROM " + dialect.QuoteIdent(fk.Table) + " AS c WHERE " + orphaned(fk) + " RETURNING " + strings.Join(ret, ", ")
	rows, err := tx.QueryContext(ctx, q)
	if err != nil {
		return 0, fmt.Errorf("run the ON DELETE CASCADE of %s to %s: %w", fk.Table, fk.RefTable, err)
	}
	vals := make([][]any, len(held))
	var n int64
	for rows.Next() {
		row := make([]any, len(held))
		ptrs := make([]any, len(held))
		for i := range row {
			ptrs[i] = &row[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			rows.Close()
			return 0, err
		}
		for i, v := range row {
			if v != nil {
				vals[i] = append(vals[i], v)
			}
		}
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for i, b := range held {
		found, err := restricted(ctx, tx, b, vals[i], 5)
		if err != nil {
			return 0, err
		}
		if len(found) > 0 {
			return 0, fmt.Errorf("%w: %s %s, which a delete of %s cascades to (ON DELETE CASCADE), is referenced by rows of %s (column %s, ON DELETE %s)",
				dbsync.ErrForeignKey, fk.Table, strings.Join(found, ", "), fk.RefTable, b.Table, b.Columns[0], b.OnDelete)
		}
	}
	return n, nil
}

// CheckRestrictedDeletes refuses, on SQLite, where sync applies with
// foreign keys switched off, the deletes tc records that rows of tables
// dbsync does not track still reference through a foreign key without an
// ON DELETE action (NO ACTION, RESTRICT), as PostgreSQL refuses them: an
// error wrapping dbsync.ErrForeignKey naming up to 5 deleted rows and the
// tables referencing them. Only where the database enforced foreign keys
// (dialect.EnforcesForeignKeys), only for keys referencing a deleted
// row's primary key (one column), and only for the keys tc deleted: rows
// left dangling before are not this apply's doing. Call it after the
// apply's writes (a row deleted and written again is not refused). The
// cost is a catalog read per table, and a query per such key and batch
// of deleted keys.
func CheckRestrictedDeletes(ctx context.Context, tx bun.IDB, reg *dbsync.Registry, tc *Touched) error {
	if !dialect.ChecksReferencesLater(tx) || len(tc.deleted) == 0 || !dialect.EnforcesForeignKeys(ctx) {
		return nil
	}
	tables := slices.SortedFunc(maps.Keys(tc.deleted), func(a, b *dbsync.Table) int { return strings.Compare(a.Name, b.Name) })
	var problems []string
	for _, t := range tables {
		fks, err := dialect.ReferencingForeignKeys(ctx, tx, []string{t.Name})
		if err != nil {
			return err
		}
		for _, fk := range fks {
			if reg.Table(fk.Table) != nil || fk.ActsOnDelete() || len(fk.Columns) != 1 || len(fk.RefColumns) != 1 ||
				!strings.EqualFold(fk.RefColumns[0], t.PK.Name) {
				continue
			}
			args, err := KeyArgs(t, setKeys(tc.deleted[t]))
			if err != nil {
				return err
			}
			keys, err := restricted(ctx, tx, fk, args, 5-len(problems))
			if err != nil {
				return err
			}
			for _, k := range keys {
				problems = append(problems, fmt.Sprintf("%s %s, which is deleted, is referenced by rows of %s (column %s, ON DELETE %s), a table dbsync does not track",
					t.Name, k, fk.Table, fk.Columns[0], fk.OnDelete))
			}
			if len(problems) >= 5 {
				return fmt.Errorf("%w: %s", dbsync.ErrForeignKey, strings.Join(problems, "; "))
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", dbsync.ErrForeignKey, strings.Join(problems, "; "))
	}
	return nil
}

// restricted returns up to limit of values, values of fk's parent
// column (fk has one column) its parent no longer holds, that rows of
// fk's table reference: rows a delete of those values would leave
// dangling, which a key without an ON DELETE action refuses.
func restricted(ctx context.Context, tx bun.IDB, fk dialect.CatalogForeignKey, values []any, limit int) ([]string, error) {
	col, ref := dialect.QuoteIdent(fk.Columns[0]), dialect.QuoteIdent(fk.RefColumns[0])
	q := fmt.Sprintf(`SELECT DISTINCT CAST(c.%s AS TEXT) FROM %s c WHERE c.%s IN (?)
AND NOT EXISTS (SELECT 1 FROM %s p WHERE p.%s = c.%s) LIMIT %d`,
		col, dialect.QuoteIdent(fk.Table), col, dialect.QuoteIdent(fk.RefTable), ref, col, limit)
	var out []string
	for part := range slices.Chunk(values, Batch) {
		var found []string
		if err := tx.NewRaw(q, bun.List(part)).Scan(ctx, &found); err != nil {
			return nil, fmt.Errorf("check the references of %s to %s: %w", fk.Table, fk.RefTable, err)
		}
		if out = append(out, found...); len(out) >= limit {
			break
		}
	}
	return out[:min(len(out), limit)], nil
}

// DeletedTables names the tables tc records deleted rows of.
func (tc *Touched) DeletedTables() []string {
	var out []string
	for t := range tc.deleted {
		out = append(out, t.Name)
	}
	slices.Sort(out)
	return out
}

// DeletedTables names the tables the parts added so far deleted rows of.
func (s *Settler) DeletedTables() []string { return s.left.DeletedTables() }

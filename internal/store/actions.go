package store

import (
	"context"
	"fmt"
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
			n, err := runDeleteAction(ctx, tx, fk)
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
	var set, match, assign []string
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
	for i, from := range fk.Columns {
		col := dialect.QuoteIdent(from)
		set = append(set, "c."+col+" IS NOT NULL")
		match = append(match, "p."+dialect.QuoteIdent(fk.RefColumns[i])+" = c."+col)
		value := "NULL"
		if d := dflt[strings.ToLower(from)]; d != nil {
			value = "(" + *d + ")"
		}
		assign = append(assign, col+" = "+value)
	}
	where := strings.Join(set, " AND ") + " AND NOT EXISTS (SELECT 1 FROM " + dialect.QuoteIdent(fk.RefTable) + " p WHERE " + strings.Join(match, " AND ") + ")"
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
	var problems []string
	for _, name := range tc.DeletedTables() {
		t := reg.Table(name)
		fks, err := dialect.ReferencingForeignKeys(ctx, tx, []string{name})
		if err != nil {
			return err
		}
		for _, fk := range fks {
			if reg.Table(fk.Table) != nil || fk.ActsOnDelete() || len(fk.Columns) != 1 || len(fk.RefColumns) != 1 ||
				!strings.EqualFold(fk.RefColumns[0], t.PK.Name) {
				continue
			}
			keys, err := restricted(ctx, tx, t, fk, setKeys(tc.deleted[t]), 5-len(problems))
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

// restricted returns up to limit of keys, deleted rows of t, that rows of
// fk's table reference while t holds no row of that key.
func restricted(ctx context.Context, tx bun.IDB, t *dbsync.Table, fk dialect.CatalogForeignKey, keys []string, limit int) ([]string, error) {
	col, pk := dialect.QuoteIdent(fk.Columns[0]), dialect.QuoteIdent(t.PK.Name)
	q := fmt.Sprintf(`SELECT DISTINCT CAST(c.%s AS TEXT) FROM %s c WHERE c.%s IN (?)
AND NOT EXISTS (SELECT 1 FROM %s p WHERE p.%s = c.%s) LIMIT %d`,
		col, dialect.QuoteIdent(fk.Table), col, dialect.QuoteIdent(t.Name), pk, col, limit)
	var out []string
	for start := 0; start < len(keys) && len(out) < limit; start += Batch {
		args, err := KeyArgs(t, keys[start:min(start+Batch, len(keys))])
		if err != nil {
			return nil, err
		}
		var found []string
		if err := tx.NewRaw(q, bun.List(args)).Scan(ctx, &found); err != nil {
			return nil, fmt.Errorf("check the references of %s to %s: %w", fk.Table, t.Name, err)
		}
		out = append(out, found...)
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

package store

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/protocol"
)

// Touched records the rows an apply wrote and deleted, and the keys the
// written rows reference, by table, for CheckReferences. The zero value is
// ready.
type Touched struct {
	written map[*dbsync.Table]map[string]bool
	deleted map[*dbsync.Table]map[string]bool
	refs    map[*dbsync.Table]map[string]bool // referenced keys, by referenced table
}

func add(m *map[*dbsync.Table]map[string]bool, t *dbsync.Table, keys ...string) {
	if *m == nil {
		*m = map[*dbsync.Table]map[string]bool{}
	}
	set := (*m)[t]
	if set == nil {
		set = make(map[string]bool, len(keys))
		(*m)[t] = set
	}
	for _, k := range keys {
		set[k] = true
	}
}

// Wrote records written rows.
func (tc *Touched) Wrote(t *dbsync.Table, keys ...string) { add(&tc.written, t, keys...) }

// Deleted records deleted rows.
func (tc *Touched) Deleted(t *dbsync.Table, keys ...string) { add(&tc.deleted, t, keys...) }

// Referenced records keys of t that written rows reference.
func (tc *Touched) Referenced(t *dbsync.Table, keys ...string) { add(&tc.refs, t, keys...) }

// WroteRow records a written row (a model struct value) and the keys it
// references.
func (tc *Touched) WroteRow(reg *dbsync.Registry, t *dbsync.Table, strct reflect.Value) {
	tc.WroteRowExcept(reg, t, strct, nil)
}

// WroteRowExcept is WroteRow, leaving out the references of the columns
// skip names (not written yet).
func (tc *Touched) WroteRowExcept(reg *dbsync.Registry, t *dbsync.Table, strct reflect.Value, skip []string) {
	add(&tc.written, t, t.Codec().KeyOf(strct))
	tc.ReferencesExcept(reg, t, strct, skip)
}

// References records the keys a written row references (for a row whose
// own key the database assigns).
func (tc *Touched) References(reg *dbsync.Registry, t *dbsync.Table, strct reflect.Value) {
	tc.ReferencesExcept(reg, t, strct, nil)
}

// ReferencesExcept is References, leaving out the columns skip names.
func (tc *Touched) ReferencesExcept(reg *dbsync.Registry, t *dbsync.Table, strct reflect.Value, skip []string) {
	for _, fk := range t.ForeignKeys {
		if slices.Contains(skip, fk.Column) {
			continue
		}
		if k := t.Column(fk.Column).KeyOf(strct); k != "" {
			if ref := reg.Table(fk.RefTable); ref != nil {
				add(&tc.refs, ref, k)
			}
		}
	}
}

// CheckReferences verifies, on SQLite, where sync applies with foreign keys
// switched off, that the touched rows keep every reference between tracked
// tables valid: no row references a row the written rows referenced when
// that row is missing (the referencing row may have changed or gone since,
// in the same apply), and the rows deleted are no longer referenced.
// Referenced rows written by the same apply need no query; the cost is
// proportional to the touched rows, not to the tables. PostgreSQL checks
// its constraints itself at commit: nothing to do (see VerifyReferences).
func CheckReferences(ctx context.Context, tx bun.IDB, reg *dbsync.Registry, tc *Touched) error {
	if !dialect.ChecksReferencesLater(tx) {
		return nil
	}
	return VerifyReferences(ctx, tx, reg, tc)
}

// VerifyReferences is CheckReferences on every dialect. Where a refusal
// goes back over the wire (a push, a peer's apply) it names the rows from
// the registry (dbsync.ErrForeignKey: "todos 5 references missing lists 9 (column
// list_id)"), where PostgreSQL's check at commit would refuse them in its
// own words.
func VerifyReferences(ctx context.Context, tx bun.IDB, reg *dbsync.Registry, tc *Touched) error {
	var problems []string
	for parent, keys := range tc.refs {
		var ask []string
		for k := range keys {
			if !tc.written[parent][k] {
				ask = append(ask, k)
			}
		}
		if len(ask) == 0 {
			continue
		}
		found, err := Existing(ctx, tx, parent, ask)
		if err != nil {
			return err
		}
		var missing []string
		for _, k := range ask {
			if !found[k] {
				missing = append(missing, k)
			}
		}
		if len(missing) == 0 {
			continue
		}
		// A problem only if a row still references them: the row that did
		// may have been deleted or changed since by the same apply.
		for _, ref := range reg.Children(parent.Name) {
			rows, err := dangling(ctx, tx, ref.Table, ref.FK.Column, parent, missing)
			if err != nil {
				return err
			}
			for _, r := range rows {
				if len(problems) < 5 {
					problems = append(problems, fmt.Sprintf("%s %s references missing %s %s (column %s)", ref.Table.Name, r[0], parent.Name, r[1], ref.FK.Column))
				}
			}
		}
	}
	for parent, keys := range tc.deleted {
		for _, ref := range reg.Children(parent.Name) {
			rows, err := dangling(ctx, tx, ref.Table, ref.FK.Column, parent, setKeys(keys))
			if err != nil {
				return err
			}
			for _, r := range rows {
				if len(problems) < 5 {
					problems = append(problems, fmt.Sprintf("%s %s references missing %s %s (column %s)", ref.Table.Name, r[0], parent.Name, r[1], ref.FK.Column))
				}
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", dbsync.ErrForeignKey, strings.Join(problems, "; "))
	}
	return nil
}

func setKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// dangling returns (child key, referenced key) of the rows of child whose
// column col references one of the parent keys, when that parent row does
// not exist (any more).
func dangling(ctx context.Context, tx bun.IDB, child *dbsync.Table, col string, parent *dbsync.Table, keys []string) ([][2]string, error) {
	var out [][2]string
	q := fmt.Sprintf(`SELECT CAST(c.%s AS TEXT), CAST(c.%s AS TEXT) FROM %s c
WHERE c.%s IN (?) AND NOT EXISTS (SELECT 1 FROM %s p WHERE p.%s = c.%s) LIMIT 5`,
		dialect.QuoteIdent(child.PK.Name), dialect.QuoteIdent(col), dialect.QuoteIdent(child.Name), dialect.QuoteIdent(col),
		dialect.QuoteIdent(parent.Name), dialect.QuoteIdent(parent.PK.Name), dialect.QuoteIdent(col))
	for start := 0; start < len(keys) && len(out) < 5; start += Batch {
		args, err := KeyArgs(parent, keys[start:min(start+Batch, len(keys))])
		if err != nil {
			return nil, err
		}
		rows, err := tx.QueryContext(ctx, q, bun.List(args))
		if err != nil {
			return nil, fmt.Errorf("check references to %s: %w", parent.Name, err)
		}
		for rows.Next() {
			var r [2]string
			if err := rows.Scan(&r[0], &r[1]); err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// AdoptForeignKeys returns the foreign keys between tracked tables that
// the database catalog declares (also those without a bun relation), by
// referencing table, for dbsync.Catalog, and, on PostgreSQL unless keep is
// set, makes them DEFERRABLE INITIALLY IMMEDIATE, so sync can defer their
// checks to commit while it applies a batch (the application sees no
// difference). schema is PostgreSQL's current schema. It also returns the
// constraints it altered. reg is not changed.
func AdoptForeignKeys(ctx context.Context, tx bun.IDB, reg *dbsync.Registry, schema string, keep bool) (map[string][]protocol.ForeignKey, []string, error) {
	tables := reg.Tables()
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.Name
	}
	fks, err := dialect.ForeignKeys(ctx, tx, names)
	if err != nil {
		return nil, nil, err
	}
	adopted := map[string][]protocol.ForeignKey{}
	var altered []string
	for _, fk := range fks {
		ref := reg.Table(fk.RefTable)
		if ref == nil || fk.RefColumn != ref.PK.Name {
			continue
		}
		adopted[fk.Table] = append(adopted[fk.Table], protocol.ForeignKey{Column: fk.Column, RefTable: fk.RefTable, OnDelete: fk.OnDelete})
		if keep {
			continue
		}
		ok, err := dialect.MakeDeferrable(ctx, tx, schema, fk)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			altered = append(altered, fk.Table+"."+fk.Name)
		}
	}
	return adopted, altered, nil
}

// CheckUntrackedReferences verifies, on SQLite, where sync applies with
// foreign keys switched off, the written rows' foreign keys to tables
// dbsync does not track (read from the catalog), which CheckReferences
// does not see: a written row naming a missing row of such a table fails
// with dbsync.ErrForeignKey naming both. PostgreSQL checks them itself
// (they are never made deferrable): nothing to do. The cost is a catalog
// read per written table and a query per such key and batch of rows.
func CheckUntrackedReferences(ctx context.Context, tx bun.IDB, reg *dbsync.Registry, tc *Touched) error {
	if !dialect.ChecksReferencesLater(tx) {
		return nil
	}
	var problems []string
	for t, keys := range tc.written {
		fks, err := untrackedForeignKeys(ctx, tx, reg, t)
		if err != nil {
			return err
		}
		for _, fk := range fks {
			rows, err := missingUntracked(ctx, tx, t, fk, setKeys(keys))
			if err != nil {
				return err
			}
			for _, key := range rows {
				if len(problems) < 5 {
					problems = append(problems, fmt.Sprintf("%s %s references a missing row of %s (column %s), a table dbsync does not track",
						t.Name, key, fk.RefTable, strings.Join(fk.Columns, ", ")))
				}
			}
		}
	}
	if len(problems) > 0 {
		return &UntrackedParentError{msg: dbsync.ErrForeignKey.Error() + ": " + strings.Join(problems, "; ")}
	}
	return nil
}

// UntrackedParentError is CheckUntrackedReferences' dbsync.ErrForeignKey:
// written rows name missing rows of a table dbsync does not track, which
// no sync brings (a repair does not either).
type UntrackedParentError struct{ msg string }

func (e *UntrackedParentError) Error() string { return e.msg }

// Unwrap makes it dbsync.ErrForeignKey.
func (e *UntrackedParentError) Unwrap() error { return dbsync.ErrForeignKey }

// untrackedForeignKeys reads t's foreign keys to tables reg does not track
// (dialect.CatalogForeignKeys: a reference naming no parent columns is to
// the parent's primary key).
func untrackedForeignKeys(ctx context.Context, tx bun.IDB, reg *dbsync.Registry, t *dbsync.Table) ([]dialect.CatalogForeignKey, error) {
	fks, err := dialect.CatalogForeignKeys(ctx, tx, []string{t.Name})
	if err != nil {
		return nil, err
	}
	var out []dialect.CatalogForeignKey
	for _, fk := range fks {
		if reg.Table(fk.RefTable) != nil {
			continue
		}
		if len(fk.RefColumns) != len(fk.Columns) {
			return nil, fmt.Errorf("foreign key of %s (%s) to %s: it names no parent columns, and %s has no primary key of %d columns",
				t.Name, strings.Join(fk.Columns, ", "), fk.RefTable, fk.RefTable, len(fk.Columns))
		}
		out = append(out, fk)
	}
	return out, nil
}

// missingUntracked returns the keys, among keys, of t's rows whose foreign
// key fk (all its columns set) names no row of its parent.
func missingUntracked(ctx context.Context, tx bun.IDB, t *dbsync.Table, fk dialect.CatalogForeignKey, keys []string) ([]string, error) {
	var set, match []string
	for i, from := range fk.Columns {
		set = append(set, "c."+dialect.QuoteIdent(from)+" IS NOT NULL")
		match = append(match, "p."+dialect.QuoteIdent(fk.RefColumns[i])+" = c."+dialect.QuoteIdent(from))
	}
	q := fmt.Sprintf(`SELECT CAST(c.%s AS TEXT) FROM %s c WHERE c.%s IN (?) AND %s
AND NOT EXISTS (SELECT 1 FROM %s p WHERE %s) LIMIT 5`,
		dialect.QuoteIdent(t.PK.Name), dialect.QuoteIdent(t.Name), dialect.QuoteIdent(t.PK.Name), strings.Join(set, " AND "),
		dialect.QuoteIdent(fk.RefTable), strings.Join(match, " AND "))
	var out []string
	for start := 0; start < len(keys) && len(out) < 5; start += Batch {
		args, err := KeyArgs(t, keys[start:min(start+Batch, len(keys))])
		if err != nil {
			return nil, err
		}
		var found []string
		if err := tx.NewRaw(q, bun.List(args)).Scan(ctx, &found); err != nil {
			return nil, fmt.Errorf("check references of %s to %s: %w", t.Name, fk.RefTable, err)
		}
		out = append(out, found...)
	}
	return out, nil
}

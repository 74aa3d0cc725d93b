package client

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// keptUntracked is the copy of a table dbsync does not track that a
// repair keeps (keepUntracked): its columns but generated ones, its
// primary key, and its foreign keys.
type keptUntracked struct {
	table, tmp string
	cols, pk   []string
	always     []string // identity columns GENERATED ALWAYS: an UPDATE cannot set them
	fks        []dialect.CatalogForeignKey
}

// keepUntracked saves, on a PostgreSQL node, in temporary tables of tx,
// the rows of the tables dbsync does not track (the application's own)
// that a foreign key whose ON DELETE action changes them (CASCADE, SET
// NULL, SET DEFAULT) ties to a table the repair empties (cleared: the
// pulled tables and the push-only ones keepPushOnly keeps), or to such an
// untracked table; and returns what puts them back (restore). The repair's
// DELETE of the pulled rows runs those actions at once: without it, a
// repair deleted the application's rows referencing every pulled row, or
// set their references NULL, silently, also for the rows the repair
// brings back. restore, once the repair's rows are written, puts back the
// rows the actions deleted and the values they changed where the row
// referenced is back; where it is not, what the action did stands (a
// CASCADE's row stays deleted, a SET NULL's reference NULL, a SET
// DEFAULT's row as the action left it), as a delete of that row would
// have had it. A foreign key without action (NO ACTION) that is not
// DEFERRABLE, which would refuse emptying the table, is made DEFERRABLE
// INITIALLY IMMEDIATE and deferred: at commit it refuses the repair only
// if a row it references does not come back (dbsync.ErrForeignKey).
// A table without a primary key cannot be put back by row:
// the actions stand for its rows, which is logged. On SQLite, where
// ApplyTx switches foreign keys off, the repair runs the actions at its
// end, on the rows whose parent did not come back (store.RunDeleteActions):
// nothing to keep there.
func keepUntracked(ctx context.Context, tx bun.Tx, reg *dbsync.Registry, cleared []string, log *slog.Logger) (restore func(context.Context) error, err error) {
	if dialect.MustOf(tx) != dialect.Postgres {
		return func(context.Context) error { return nil }, nil
	}
	var kept []*keptUntracked
	seen := map[string]bool{}
	schema := ""
	for frontier := cleared; len(frontier) > 0; {
		fks, err := dialect.ReferencingForeignKeys(ctx, tx, frontier)
		if err != nil {
			return nil, fmt.Errorf("client: read the tables referencing the pulled ones: %w", err)
		}
		frontier = nil
		for _, fk := range fks {
			if reg.Table(fk.Table) != nil {
				continue
			}
			if (fk.OnDelete == "NO ACTION" || fk.OnDelete == "SET DEFAULT") && !fk.Deferrable {
				// Checked at each statement, it would refuse emptying
				// the table, however the repair ends (SET DEFAULT: its
				// default names a row the emptying deleted too): made
				// DEFERRABLE INITIALLY IMMEDIATE (what the application
				// sees does not change) and deferred, it is checked at
				// commit, against the rows the repair brought back.
				if schema == "" {
					if err := tx.NewRaw("SELECT current_schema()").Scan(ctx, &schema); err != nil {
						return nil, fmt.Errorf("client: read the current schema: %w", err)
					}
				}
				one := dialect.ForeignKey{Name: fk.Name, Table: fk.Table}
				if _, err := dialect.MakeDeferrable(ctx, tx, schema, one); err != nil {
					return nil, fmt.Errorf("client: %w", err)
				}
				if err := dialect.DeferConstraints(ctx, tx); err != nil {
					return nil, fmt.Errorf("client: defer the foreign keys: %w", err)
				}
				log.InfoContext(ctx, "client: a foreign key of a table dbsync does not track to a pulled table made DEFERRABLE INITIALLY IMMEDIATE, so that a repair can empty the table it references",
					slog.String("table", fk.Table), slog.String("constraint", fk.Name))
				if fk.OnDelete == "NO ACTION" {
					continue
				}
			}
			if seen[fk.Table] || !fk.ActsOnDelete() {
				continue
			}
			seen[fk.Table] = true
			k, err := saveUntracked(ctx, tx, fk.Table, len(kept))
			if err != nil {
				return nil, err
			}
			if k == nil {
				log.WarnContext(ctx, "client: a repair cannot keep the rows of a table without a primary key: the ON DELETE actions of its foreign keys to the pulled tables run on them",
					slog.String("table", fk.Table))
				continue
			}
			kept = append(kept, k)
			frontier = append(frontier, fk.Table)
		}
	}
	kept = parentsFirst(kept)
	return func(ctx context.Context) error {
		for _, k := range kept {
			if _, err := tx.ExecContext(ctx, k.restoreSQL()); err != nil {
				return fmt.Errorf("client: restore the rows of %s after the repair: %w", k.table, err)
			}
			if _, err := tx.ExecContext(ctx, "DROP TABLE "+k.tmp); err != nil {
				return fmt.Errorf("client: restore the rows of %s after the repair: %w", k.table, err)
			}
		}
		return nil
	}, nil
}

// saveUntracked copies table into the temporary table of number n: nil
// when the table has no primary key.
func saveUntracked(ctx context.Context, tx bun.Tx, table string, n int) (*keptUntracked, error) {
	pk, err := dialect.PrimaryKey(ctx, tx, table)
	if err != nil || len(pk) == 0 {
		return nil, err
	}
	info, err := dialect.Columns(ctx, tx, table)
	if err != nil {
		return nil, err
	}
	k := &keptUntracked{table: table, pk: pk, tmp: fmt.Sprintf("pg_temp.dbsync_repair_untracked_%d", n)}
	for col, ci := range info {
		if !ci.Generated {
			k.cols = append(k.cols, col)
		}
	}
	slices.Sort(k.cols)
	if err := tx.NewRaw("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ? AND identity_generation = 'ALWAYS'", table).
		Scan(ctx, &k.always); err != nil {
		return nil, fmt.Errorf("client: read the identity columns of %s: %w", table, err)
	}
	if k.fks, err = dialect.CatalogForeignKeys(ctx, tx, []string{table}); err != nil {
		return nil, err
	}
	for _, q := range []string{
		"DROP TABLE IF EXISTS " + k.tmp,
		"CREATE TEMP TABLE " + strings.TrimPrefix(k.tmp, "pg_temp.") + " ON COMMIT DROP AS SELECT " + quoteAll("", k.cols) + " FROM " + dialect.QuoteIdent(table),
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("client: keep the rows of %s through the repair: %w", table, err)
		}
	}
	return k, nil
}

// restoreSQL puts the saved rows back: those the actions deleted are
// inserted, those whose values they changed updated, where each
// reference an action followed names a row that is there again; where one
// does not, a SET NULL's column stays NULL, and a row with a CASCADE's or
// a SET DEFAULT's reference is left as the action left it.
func (k *keptUntracked) restoreSQL() string {
	nulled := map[string]string{} // column → its reference's condition
	var where []string
	for _, fk := range k.fks {
		if !fk.ActsOnDelete() || len(fk.RefColumns) != len(fk.Columns) {
			continue
		}
		ok := k.referenceBack(fk)
		if fk.OnDelete == "SET NULL" {
			for _, c := range fk.Columns {
				nulled[c] = ok
			}
			continue
		}
		where = append(where, ok)
	}
	sel := make([]string, len(k.cols))
	for i, c := range k.cols {
		sel[i] = "k." + dialect.QuoteIdent(c)
		if ok, isNulled := nulled[c]; isNulled {
			sel[i] = "CASE WHEN " + ok + " THEN " + sel[i] + " END"
		}
	}
	q := "INSERT INTO " + dialect.QuoteIdent(k.table) + " AS u (" + quoteAll("", k.cols) + ") OVERRIDING SYSTEM VALUE SELECT " +
		strings.Join(sel, ", ") + " FROM " + k.tmp + " AS k"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ON CONFLICT (" + quoteAll("", k.pk) + ") DO "
	var rest []string
	for _, c := range k.cols {
		// No ON DELETE action changes an identity column GENERATED
		// ALWAYS (NOT NULL), which an UPDATE can only set to DEFAULT.
		if !slices.Contains(k.pk, c) && !slices.Contains(k.always, c) {
			rest = append(rest, c)
		}
	}
	if len(rest) == 0 {
		return q + "NOTHING"
	}
	set := make([]string, len(rest))
	for i, c := range rest {
		set[i] = dialect.QuoteIdent(c) + " = EXCLUDED." + dialect.QuoteIdent(c)
	}
	// Only rows an action changed are written again (the application's
	// triggers on the table see no other). Compared as text: a column of
	// a type without an equality operator (json, xml, point) would make
	// the comparison, and so every repair, fail.
	return q + "UPDATE SET " + strings.Join(set, ", ") +
		" WHERE (" + castAll("u.", rest) + ", NULL) IS DISTINCT FROM (" + castAll("EXCLUDED.", rest) + ", NULL)"
}

// castAll is quoteAll with each column cast to text.
func castAll(prefix string, cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = "CAST(" + prefix + dialect.QuoteIdent(c) + " AS TEXT)"
	}
	return strings.Join(q, ", ")
}

// referenceBack is the condition that the saved row k's reference fk
// names a row that is there (or is NULL in part: not checked). A table's
// reference to itself is looked up among the saved rows, as the rows put
// back in the same statement are not seen by it.
func (k *keptUntracked) referenceBack(fk dialect.CatalogForeignKey) string {
	var null, match []string
	for i, c := range fk.Columns {
		null = append(null, "k."+dialect.QuoteIdent(c)+" IS NULL")
		match = append(match, "p."+dialect.QuoteIdent(fk.RefColumns[i])+" = k."+dialect.QuoteIdent(c))
	}
	parent := dialect.QuoteIdent(fk.RefTable)
	if fk.RefTable == k.table {
		parent = k.tmp
	}
	return "(" + strings.Join(null, " OR ") + " OR EXISTS (SELECT 1 FROM " + parent + " AS p WHERE " + strings.Join(match, " AND ") + "))"
}

// parentsFirst orders kept so that a table comes after the kept tables
// it references (a cycle keeps the order it has).
func parentsFirst(kept []*keptUntracked) []*keptUntracked {
	out := make([]*keptUntracked, 0, len(kept))
	placed := map[string]bool{}
	for len(out) < len(kept) {
		progress := false
		for _, k := range kept {
			if placed[k.table] {
				continue
			}
			ready := true
			for _, fk := range k.fks {
				if fk.RefTable != k.table && !placed[fk.RefTable] && slices.ContainsFunc(kept, func(o *keptUntracked) bool { return o.table == fk.RefTable }) {
					ready = false
				}
			}
			if ready {
				out, placed[k.table], progress = append(out, k), true, true
			}
		}
		if !progress {
			for _, k := range kept {
				if !placed[k.table] {
					out, placed[k.table] = append(out, k), true
				}
			}
		}
	}
	return out
}

// quoteAll quotes cols, each after prefix, joined by commas.
func quoteAll(prefix string, cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = prefix + dialect.QuoteIdent(c)
	}
	return strings.Join(q, ", ")
}

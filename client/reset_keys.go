package client

import (
	"context"
	"fmt"
	"strings"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// resetKeysTable holds, while a reset runs, the keys of the server's rows
// (gone = 0) and then the keys of the node's rows the server does not
// have (gone = 1), by table: a temporary table of the reset's
// transaction, so that the reset's memory does not grow with the
// database.
const resetKeysTable = "dbsync_reset_keys"

// defaultResetPage is how many keys a reset reads from resetKeysTable at a
// time (the rows the server no longer has, merged as one chunk).
const defaultResetPage = 1000

// resetKeysBatch bounds the keys one statement writes or asks about.
const resetKeysBatch = 500

// resetKeys is resetKeysTable in the transaction of one reset.
type resetKeys struct {
	tx   bun.Tx
	tmp  string // qualified name
	page int
}

// newResetKeys creates resetKeysTable in tx (dropped at its end: drop,
// or PostgreSQL's ON COMMIT DROP; a rollback undoes its creation).
func newResetKeys(ctx context.Context, tx bun.Tx, page int) (*resetKeys, error) {
	if page <= 0 {
		page = defaultResetPage
	}
	tmp, err := dialect.TempTable(ctx, tx, resetKeysTable, "tbl TEXT NOT NULL, gone INTEGER NOT NULL, k TEXT NOT NULL, PRIMARY KEY (tbl, gone, k)")
	if err != nil {
		return nil, fmt.Errorf("client: stage the server's keys: %w", err)
	}
	return &resetKeys{tx: tx, tmp: tmp, page: page}, nil
}

// drop removes the table before the transaction ends.
func (r *resetKeys) drop(ctx context.Context) error {
	if _, err := r.tx.ExecContext(ctx, "DROP TABLE IF EXISTS "+r.tmp); err != nil {
		return fmt.Errorf("client: drop %s: %w", resetKeysTable, err)
	}
	return nil
}

// addServer records keys of the server's rows of table; a key recorded
// before is a bad answer (duplicateRow).
func (r *resetKeys) addServer(ctx context.Context, table string, keys []string) error {
	for len(keys) > 0 {
		n := min(len(keys), resetKeysBatch)
		var b strings.Builder
		b.WriteString("INSERT INTO " + r.tmp + " (tbl, gone, k) VALUES ")
		args := make([]any, 0, 2*n)
		for i, k := range keys[:n] {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(?, 0, ?)")
			args = append(args, table, k)
		}
		b.WriteString(" ON CONFLICT DO NOTHING RETURNING k")
		var staged []string
		if err := r.tx.NewRaw(b.String(), args...).Scan(ctx, &staged); err != nil && !isNoRows(err) {
			return fmt.Errorf("client: stage the server's keys of %s: %w", table, err)
		}
		inserted := make(map[string]bool, len(staged))
		for _, k := range staged {
			inserted[k] = true
		}
		// A key staged before, or twice in this batch: the answer
		// holds the row twice.
		if k, ok := repeated(keys[:n], inserted); ok {
			return duplicateRow("reset", table, k)
		}
		keys = keys[n:]
	}
	return nil
}

// markGone records the keys of t's rows the node holds and the server
// does not have, found by the database (an anti-join on the staged
// keys).
func (r *resetKeys) markGone(ctx context.Context, t *dbsync.Table) error {
	pk := "CAST(t." + string(t.PK.Field().SQLName) + " AS TEXT)"
	q := "INSERT INTO " + r.tmp + " (tbl, gone, k) SELECT ?, 1, " + pk + " FROM " + string(t.Schema().SQLName) +
		" AS t WHERE NOT EXISTS (SELECT 1 FROM " + r.tmp + " AS r WHERE r.tbl = ? AND r.gone = 0 AND r.k = " + pk + ")"
	if _, err := r.tx.ExecContext(ctx, q, t.Name, t.Name); err != nil {
		return fmt.Errorf("client: find the rows of %s the server does not have: %w", t.Name, err)
	}
	return nil
}

// collapsed refuses, once the reset's rows are written, two of the
// server's keys of t that differ byte for byte but that t's key column
// takes for one (SQLite's NOCASE, a nondeterministic ICU collation): the
// second was written over the first, in another rows line than the one
// addServer and checkDistinctRows see. A row of t found under a staged
// key (as the key column compares) holds another staged key's spelling.
func (r *resetKeys) collapsed(ctx context.Context, t *dbsync.Table) error {
	pk := "t." + string(t.PK.Field().SQLName)
	q := "SELECT a.k FROM " + r.tmp + " AS a JOIN " + string(t.Schema().SQLName) + " AS t ON " + pk + " = a.k JOIN " + r.tmp +
		" AS b ON b.tbl = a.tbl AND b.gone = 0 AND b.k = CAST(" + pk + " AS TEXT) WHERE a.tbl = ? AND a.gone = 0 AND b.k <> a.k LIMIT 1"
	var keys []string
	if err := r.tx.NewRaw(q, t.Name).Scan(ctx, &keys); err != nil && !isNoRows(err) {
		return fmt.Errorf("client: check the reset's keys of %s: %w", t.Name, err)
	}
	if len(keys) > 0 {
		return collapsedRows(t.Name)
	}
	return nil
}

// gonePage returns up to r.page keys markGone recorded for table, in
// order, after the key after (from the first when first).
func (r *resetKeys) gonePage(ctx context.Context, table string, first bool, after string) ([]string, error) {
	var keys []string
	err := r.tx.NewRaw("SELECT k FROM "+r.tmp+" WHERE tbl = ? AND gone = 1 AND (? OR k > ?) ORDER BY k LIMIT ?",
		table, first, after, r.page).Scan(ctx, &keys)
	if err != nil && !isNoRows(err) {
		return nil, fmt.Errorf("client: read the rows of %s the server does not have: %w", table, err)
	}
	return keys, nil
}

// server returns which of keys the server has rows of in table.
func (r *resetKeys) server(ctx context.Context, table string, keys []string) (map[string]bool, error) {
	has := map[string]bool{}
	for len(keys) > 0 {
		n := min(len(keys), resetKeysBatch)
		var found []string
		err := r.tx.NewRaw("SELECT k FROM "+r.tmp+" WHERE tbl = ? AND gone = 0 AND k IN (?)", table, bun.List(keys[:n])).Scan(ctx, &found)
		if err != nil && !isNoRows(err) {
			return nil, fmt.Errorf("client: look up the server's keys of %s: %w", table, err)
		}
		for _, k := range found {
			has[k] = true
		}
		keys = keys[n:]
	}
	return has, nil
}

package oplog

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// Pending returns the operations not yet pushed (version_id IS NULL),
// oldest first.
func Pending(ctx context.Context, db bun.IDB) ([]models.Operation, error) {
	return pending(ctx, db, nil)
}

// PendingUpTo returns the pending operations with order <= maxOrder, oldest
// first: those of an unanswered push attempt.
func PendingUpTo(ctx context.Context, db bun.IDB, maxOrder int64) ([]models.Operation, error) {
	return pending(ctx, db, &maxOrder)
}

func pending(ctx context.Context, db bun.IDB, maxOrder *int64) ([]models.Operation, error) {
	if maxOrder == nil {
		return scanOperations(ctx, db, 0, `SELECT "order", row_id, content_type_id, command FROM sync_operations
WHERE version_id IS NULL ORDER BY "order"`)
	}
	return scanOperations(ctx, db, 0, `SELECT "order", row_id, content_type_id, command FROM sync_operations
WHERE version_id IS NULL AND "order" <= ? ORDER BY "order"`, *maxOrder)
}

// Compress runs [CompressLocal] on the pending operations with order
// greater than afterOrder (math.MinInt64 for all) and deletes the
// operations it drops. Run it in a transaction. It returns the operations
// kept, oldest first.
func Compress(ctx context.Context, db bun.IDB, reg *dbsync.Registry, afterOrder int64) ([]models.Operation, error) {
	return CompressRows(ctx, db, reg, afterOrder, nil)
}

// CompressRows is Compress that also hands every existing row named by an
// insert or update to onRow (a model struct value), as it reads them to
// apply rule C7: a push needs those rows for its payload.
func CompressRows(ctx context.Context, db bun.IDB, reg *dbsync.Registry, afterOrder int64, onRow func(t *dbsync.Table, strct reflect.Value) error) ([]models.Operation, error) {
	ops, keep, drop, err := compressView(ctx, db, reg, afterOrder, onRow)
	if err != nil || len(ops) == 0 {
		return nil, err
	}
	keep, drop = dropUnsendable(keep, drop)
	if err := writeCompressed(ctx, db, ops, keep, drop); err != nil {
		return nil, err
	}
	return keep, nil
}

// dropUnsendable moves to drop the deletes whose row id is not valid
// UTF-8 without NUL (a text key written by SQL, which stores any bytes as
// text): no other node holds such a row (store.KeyArgs refuses to read it
// for a push or a pull, JSON cannot carry its key), so its delete is news
// to none, and sent, its key would name another row. The inserts and
// updates of such a row are refused as it is read, with a
// *dbsync.ValueError naming it.
func dropUnsendable(keep []models.Operation, drop []int64) ([]models.Operation, []int64) {
	var out []models.Operation // allocated at the first such delete
	for i, op := range keep {
		switch {
		case !dialect.PlainText(op.RowID):
			if out == nil {
				out = append(make([]models.Operation, 0, len(keep)-1), keep[:i]...)
			}
			drop = append(drop, op.Order)
		case out != nil:
			out = append(out, op)
		}
	}
	if out == nil {
		return keep, drop
	}
	return out, drop
}

// writeCompressed stores what CompressLocal made of ops: it deletes the
// operations dropped and rewrites those whose command rule C5 changed.
func writeCompressed(ctx context.Context, db bun.IDB, ops, keep []models.Operation, drop []int64) error {
	before := make(map[int64]models.Command, len(ops))
	for _, op := range ops {
		before[op.Order] = op.Command
	}
	if err := DeleteOperations(ctx, db, drop); err != nil {
		return err
	}
	for _, op := range keep {
		if op.Command != before[op.Order] { // rule C5 rewrote it
			if _, err := db.NewUpdate().Model((*models.Operation)(nil)).Set("command = ?", op.Command).
				Where(`"order" = ?`, op.Order).Exec(ctx); err != nil {
				return fmt.Errorf("rewrite operation: %w", err)
			}
		}
	}
	return nil
}

// Compressed returns what [Compress] would keep, without writing: the
// pending operations with order greater than afterOrder, compressed, oldest
// first. Run it in a transaction for a consistent view.
func Compressed(ctx context.Context, db bun.IDB, reg *dbsync.Registry, afterOrder int64) ([]models.Operation, error) {
	_, keep, _, err := compressView(ctx, db, reg, afterOrder, nil)
	return keep, err
}

// compressView reads the pending operations after afterOrder and runs
// [CompressLocal] on them; it writes nothing.
func compressView(ctx context.Context, db bun.IDB, reg *dbsync.Registry, afterOrder int64, onRow func(t *dbsync.Table, strct reflect.Value) error) (ops, keep []models.Operation, drop []int64, err error) {
	ops, err = scanOperations(ctx, db, 0, `SELECT "order", row_id, content_type_id, command FROM sync_operations
WHERE version_id IS NULL AND "order" > ? ORDER BY "order"`, afterOrder)
	if err != nil || len(ops) == 0 {
		return nil, nil, nil, err
	}
	exists, err := existence(ctx, db, reg, ops, onRow)
	if err != nil {
		return nil, nil, nil, err
	}
	keep, drop = CompressLocal(ops,
		func(ct int64, row string) bool { return exists[objectKey{ct, row}] },
		func(ct int64) bool { return reg.ByContentType(ct) != nil })
	return ops, keep, drop, nil
}

// scanOperations reads pending operations (no version) without reflection,
// into a slice allocated once for size operations (the most a paged query
// returns; 0: not known), up to 1<<16 (a bound set high is no promise of
// as many rows).
func scanOperations(ctx context.Context, db bun.IDB, size int, query string, args ...any) ([]models.Operation, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read pending operations: %w", err)
	}
	defer rows.Close()
	var ops []models.Operation
	if size > 0 {
		ops = make([]models.Operation, 0, min(size, 1<<16))
	}
	for rows.Next() {
		var op models.Operation
		var cmd string
		if err := rows.Scan(&op.Order, &op.RowID, &op.ContentTypeID, &cmd); err != nil {
			return nil, fmt.Errorf("read pending operations: %w", err)
		}
		op.Command = models.Command(strings.TrimSpace(cmd))
		ops = append(ops, op)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read pending operations: %w", err)
	}
	return ops, nil
}

// existence finds which rows named by inserts and updates still exist,
// loading them whole when onRow wants them.
func existence(ctx context.Context, db bun.IDB, reg *dbsync.Registry, ops []models.Operation, onRow func(*dbsync.Table, reflect.Value) error) (map[objectKey]bool, error) {
	byCT := map[int64][]string{}
	seen := make(map[objectKey]bool, len(ops))
	var gone map[objectKey]bool // keys store.Load refuses whose row is deleted
	for _, op := range ops {
		if !dialect.PlainText(op.RowID) {
			if gone == nil {
				gone = map[objectKey]bool{}
			}
			gone[objectKey{op.ContentTypeID, op.RowID}] = op.Command == models.Delete
		}
	}
	for _, op := range ops {
		k := objectKey{op.ContentTypeID, op.RowID}
		if op.Command == models.Delete || seen[k] || gone[k] || reg.ByContentType(op.ContentTypeID) == nil {
			continue
		}
		seen[k] = true
		byCT[op.ContentTypeID] = append(byCT[op.ContentTypeID], op.RowID)
	}
	out := make(map[objectKey]bool, len(seen))
	cts := make([]int64, 0, len(byCT))
	for ct := range byCT {
		cts = append(cts, ct)
	}
	sort.Slice(cts, func(i, j int) bool { return cts[i] < cts[j] })
	for _, ct := range cts {
		t := reg.ByContentType(ct)
		if onRow != nil {
			err := store.Load(ctx, db, t, byCT[ct], func(strct reflect.Value) error {
				out[objectKey{ct, t.Codec().KeyOf(strct)}] = true
				return onRow(t, strct)
			})
			if err != nil {
				return nil, err
			}
			continue
		}
		found, err := store.Existing(ctx, db, t, byCT[ct])
		if err != nil {
			return nil, err
		}
		for k := range found {
			out[objectKey{ct, k}] = true
		}
	}
	return out, nil
}

// DeleteOperations deletes operations by order.
func DeleteOperations(ctx context.Context, db bun.IDB, orders []int64) error {
	for start := 0; start < len(orders); start += store.Batch {
		batch := orders[start:min(start+store.Batch, len(orders))]
		if _, err := db.NewDelete().Model((*models.Operation)(nil)).
			Where(`"order" IN (?)`, bun.List(batch)).Exec(ctx); err != nil {
			return fmt.Errorf("delete operations: %w", err)
		}
	}
	return nil
}

// ToWire converts logged operations to wire operations (table names
// instead of content type ids). Operations on untracked tables are skipped.
func ToWire(reg *dbsync.Registry, ops []models.Operation) []protocol.Operation {
	out := make([]protocol.Operation, 0, len(ops))
	for _, op := range ops {
		t := reg.ByContentType(op.ContentTypeID)
		if t == nil {
			continue
		}
		out = append(out, protocol.Operation{Order: op.Order, Table: t.Name, RowID: op.RowID, Command: op.Command, VersionID: op.VersionID})
	}
	return out
}

// Log appends operations to the log, in batches; their orders are
// assigned by the database, in the order of ops. dbsync uses it for what
// it writes with capture off, on the server. On PostgreSQL through pgx,
// in a transaction of dialect.ApplyTx, the operations are written by one
// COPY (dialect.Copy); in other transactions through pgx, a batch is one
// INSERT … SELECT over unnest of array parameters; otherwise
// a batch is one multi-row literal INSERT. On SQLite the literal is
// cheaper than a prepared statement, single-row or multi-row, executed
// per operation or per group: the server's log has two indexes, and
// binding each value through database/sql costs more than SQLite's
// parsing of the literal (BenchmarkLog).
func Log(ctx context.Context, db bun.IDB, ops []models.Operation) error {
	if len(ops) == 0 {
		return nil
	}
	for _, op := range ops {
		if !op.Command.Valid() {
			return fmt.Errorf("log operations: invalid command %q", op.Command)
		}
	}
	if dialect.CanCopy(ctx, db) && plainRowIDs(ops) {
		return logCopy(ctx, db, ops)
	}
	if raw := dialect.ArrayArgs(db); raw != nil && plainRowIDs(ops) {
		return logArrays(ctx, raw, ops)
	}
	return logLiterals(ctx, db, ops)
}

// plainRowIDs reports whether every row id is valid UTF-8 without NUL:
// bound as it is, it is stored as the literal path stores it (bun's
// literals replace invalid bytes and refuse NUL).
func plainRowIDs(ops []models.Operation) bool {
	for _, op := range ops {
		if !dialect.PlainText(op.RowID) {
			return false
		}
	}
	return true
}

const logInsert = "INSERT INTO sync_operations (row_id, content_type_id, command, version_id)"

// logArrayBatch is the number of operations per unnest statement.
const logArrayBatch = 10000

// logArrays logs ops, logArrayBatch per statement, as arrays unnested in
// order (WITH ORDINALITY … ORDER BY keeps the orders the database assigns
// in the order of ops).
func logArrays(ctx context.Context, raw dialect.Raw, ops []models.Operation) error {
	const q = logInsert + ` SELECT r, c, m, v FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[])
WITH ORDINALITY AS u(r, c, m, v, n) ORDER BY n`
	n := min(len(ops), logArrayBatch)
	rowIDs, cts, cmds, versions := make([]string, 0, n), make([]int64, 0, n), make([]string, 0, n), make([]*int64, 0, n)
	for start := 0; start < len(ops); start += logArrayBatch {
		rowIDs, cts, cmds, versions = rowIDs[:0], cts[:0], cmds[:0], versions[:0]
		for _, op := range ops[start:min(start+logArrayBatch, len(ops))] {
			rowIDs = append(rowIDs, op.RowID)
			cts = append(cts, op.ContentTypeID)
			cmds = append(cmds, string(op.Command))
			versions = append(versions, op.VersionID)
		}
		if _, err := raw.ExecContext(ctx, q, rowIDs, cts, cmds, versions); err != nil {
			return fmt.Errorf("log operations: %w", err)
		}
	}
	return nil
}

// logCopy logs ops by one COPY, which assigns the orders in the order of
// the rows it reads.
func logCopy(ctx context.Context, db bun.IDB, ops []models.Operation) error {
	src := pgx.CopyFromSlice(len(ops), func(i int) ([]any, error) {
		op := ops[i]
		return []any{op.RowID, op.ContentTypeID, string(op.Command), op.VersionID}, nil
	})
	if _, err := dialect.Copy(ctx, db, "sync_operations", []string{"row_id", "content_type_id", "command", "version_id"}, src); err != nil {
		return fmt.Errorf("log operations: %w", err)
	}
	return nil
}

// logLiterals logs ops 1000 per multi-row literal INSERT.
func logLiterals(ctx context.Context, db bun.IDB, ops []models.Operation) error {
	var b []byte
	for start := 0; start < len(ops); start += 1000 {
		b = append(b[:0], logInsert+" VALUES "...)
		for i, op := range ops[start:min(start+1000, len(ops))] {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = append(b, '(')
			b = db.Dialect().AppendString(b, op.RowID)
			b = append(b, ", "...)
			b = strconv.AppendInt(b, op.ContentTypeID, 10)
			b = append(b, ", '"...)
			b = append(b, op.Command...)
			b = append(b, "', "...)
			if op.VersionID == nil {
				b = append(b, "NULL"...)
			} else {
				b = strconv.AppendInt(b, *op.VersionID, 10)
			}
			b = append(b, ')')
		}
		if _, err := db.ExecContext(ctx, string(b)); err != nil {
			return fmt.Errorf("log operations: %w", err)
		}
	}
	return nil
}

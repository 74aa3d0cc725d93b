package oplog

import (
	"context"
	"fmt"
	"sort"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/models"
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
	var ops []models.Operation
	q := db.NewSelect().Model(&ops).Where("version_id IS NULL").OrderExpr(`"order" ASC`)
	if maxOrder != nil {
		q = q.Where(`"order" <= ?`, *maxOrder)
	}
	if err := q.Scan(ctx); err != nil {
		return nil, fmt.Errorf("read pending operations: %w", err)
	}
	return ops, nil
}

// Compress runs [CompressLocal] on the pending operations with order
// greater than afterOrder (math.MinInt64 for all) and deletes the
// operations it drops.
// Run it in a transaction. It returns the operations kept, oldest first.
func Compress(ctx context.Context, db bun.IDB, reg *dbsync.Registry, afterOrder int64) ([]models.Operation, error) {
	var ops []models.Operation
	if err := db.NewSelect().Model(&ops).
		Where("version_id IS NULL").Where(`"order" > ?`, afterOrder).
		OrderExpr(`"order" ASC`).Scan(ctx); err != nil {
		return nil, fmt.Errorf("read pending operations: %w", err)
	}
	if len(ops) == 0 {
		return nil, nil
	}
	exists, err := existence(ctx, db, reg, ops)
	if err != nil {
		return nil, err
	}
	keep, drop := CompressLocal(ops,
		func(ct int64, row string) bool { return exists[objectKey{ct, row}] },
		func(ct int64) bool { return reg.ByContentType(ct) != nil })
	if err := DeleteOperations(ctx, db, drop); err != nil {
		return nil, err
	}
	return keep, nil
}

// existence finds which rows named by inserts and updates still exist.
func existence(ctx context.Context, db bun.IDB, reg *dbsync.Registry, ops []models.Operation) (map[objectKey]bool, error) {
	byCT := map[int64]map[string]bool{}
	for _, op := range ops {
		if op.Command == models.Delete || reg.ByContentType(op.ContentTypeID) == nil {
			continue
		}
		if byCT[op.ContentTypeID] == nil {
			byCT[op.ContentTypeID] = map[string]bool{}
		}
		byCT[op.ContentTypeID][op.RowID] = true
	}
	out := map[objectKey]bool{}
	cts := make([]int64, 0, len(byCT))
	for ct := range byCT {
		cts = append(cts, ct)
	}
	sort.Slice(cts, func(i, j int) bool { return cts[i] < cts[j] })
	for _, ct := range cts {
		t := reg.ByContentType(ct)
		keys := make([]string, 0, len(byCT[ct]))
		for k := range byCT[ct] {
			keys = append(keys, k)
		}
		found, err := store.Existing(ctx, db, t, keys)
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
func ToWire(reg *dbsync.Registry, ops []models.Operation) []dbsync.Operation {
	out := make([]dbsync.Operation, 0, len(ops))
	for _, op := range ops {
		t := reg.ByContentType(op.ContentTypeID)
		if t == nil {
			continue
		}
		out = append(out, dbsync.Operation{Order: op.Order, Table: t.Name, RowID: op.RowID, Command: op.Command, VersionID: op.VersionID})
	}
	return out
}

// Log appends operations to the log, in batches; their orders are
// assigned by the database. dbsync uses it for what it writes with capture
// off.
func Log(ctx context.Context, db bun.IDB, ops []models.Operation) error {
	for start := 0; start < len(ops); start += 1000 {
		batch := ops[start:min(start+1000, len(ops))]
		if _, err := db.NewInsert().Model(&batch).ExcludeColumn("order").Exec(ctx); err != nil {
			return fmt.Errorf("log operations: %w", err)
		}
	}
	return nil
}

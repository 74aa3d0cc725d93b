package oplog

import (
	"cmp"
	"slices"
	"sort"

	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// objectKey identifies a row across tables.
type objectKey struct {
	ct  int64
	row string
}

// CompressLocal applies python-sync-db's local log compression (compress(),
// merge.md rules C1–C7) to a node's pending operations and returns the
// operations to keep, oldest first, and the orders of those to delete.
//
// Pattern rules, per row, on its operations oldest first (a run of two or
// more):
//
//	C1  i u*    → i        (the updates are folded into the insert)
//	C2  i u* d  → nothing  (the row was born and died locally)
//	C3  u u*    → u        (the newest update is kept)
//	C4  u u* d  → d        (only the delete is kept)
//	C5  any other run on a tracked table collapses to its last operation,
//	    with the command that takes the server from the row's state before
//	    the run to its state now: the row existed before when the run starts
//	    with u or d, and exists now when it is found. Existed and exists: u;
//	    new and exists: i; existed and gone: d; new and gone: nothing.
//	    (python-sync-db left such runs alone; a later compression of what
//	    C9 left could then drop a live row's insert: i d i → i d → nothing.)
//
// Then, over what remains:
//
//	C6  operations on an untracked table are kept as they are
//	C7  an i or u whose row no longer exists is dropped
//
// (python-sync-db's C8 and C9, which dropped duplicates left by its C5,
// have nothing left to act on.)
//
// exists reports whether a row still exists locally; tracked whether a
// content type is tracked.
func CompressLocal(ops []models.Operation, exists func(ct int64, row string) bool, tracked func(ct int64) bool) (keep []models.Operation, drop []int64) {
	// Most rows have one operation: group by index into ops, and give a
	// row its own slice only from its second operation on.
	first := make(map[objectKey]int, len(ops))
	var more map[objectKey][]models.Operation
	firsts := make([]int, 0, len(ops)) // each row's first operation, in input order
	for i, op := range ops {
		k := objectKey{op.ContentTypeID, op.RowID}
		j, ok := first[k]
		if !ok {
			first[k] = i
			firsts = append(firsts, i)
			continue
		}
		if more == nil {
			more = map[objectKey][]models.Operation{}
		}
		if _, ok := more[k]; !ok {
			more[k] = []models.Operation{ops[j]}
		}
		more[k] = append(more[k], op)
	}
	keep = make([]models.Operation, 0, len(firsts))
	for _, i := range firsts {
		op := ops[i]
		g, ok := more[objectKey{op.ContentTypeID, op.RowID}]
		if !ok { // one operation: only C6 and C7 apply
			if tracked(op.ContentTypeID) && (op.Command == models.Insert || op.Command == models.Update) && !exists(op.ContentTypeID, op.RowID) {
				drop = append(drop, op.Order)
			} else {
				keep = append(keep, op)
			}
			continue
		}
		if !slices.IsSortedFunc(g, byOrder) {
			slices.SortStableFunc(g, byOrder)
		}
		kept, dropped := compressLocalGroup(g, exists, tracked)
		keep = append(keep, kept...)
		drop = append(drop, dropped...)
	}
	if !slices.IsSortedFunc(keep, byOrder) {
		slices.SortFunc(keep, byOrder)
	}
	if !slices.IsSorted(drop) {
		slices.Sort(drop)
	}
	if len(keep) == 0 {
		keep = nil
	}
	return keep, drop
}

func byOrder(a, b models.Operation) int { return cmp.Compare(a.Order, b.Order) }

func compressLocalGroup(g []models.Operation, exists func(int64, string) bool, tracked func(int64) bool) (keep []models.Operation, drop []int64) {
	removed := make([]bool, len(g))
	if len(g) >= 2 {
		first, last := g[0].Command, g[len(g)-1].Command
		middleUpdates := true
		for _, op := range g[1 : len(g)-1] {
			if op.Command != models.Update {
				middleUpdates = false
				break
			}
		}
		allUpdatesAfterFirst := middleUpdates && last == models.Update
		switch {
		case first == models.Insert && allUpdatesAfterFirst: // C1
			for i := 1; i < len(g); i++ {
				removed[i] = true
			}
		case first == models.Insert && middleUpdates && last == models.Delete: // C2
			for i := range g {
				removed[i] = true
			}
		case first == models.Update && allUpdatesAfterFirst: // C3
			for i := 0; i < len(g)-1; i++ {
				removed[i] = true
			}
		case first == models.Update && middleUpdates && last == models.Delete: // C4
			for i := 0; i < len(g)-1; i++ {
				removed[i] = true
			}
		case tracked(g[0].ContentTypeID): // C5
			existed := first != models.Insert
			now := exists(g[0].ContentTypeID, g[0].RowID)
			for i := range g {
				removed[i] = true
			}
			var cmd models.Command
			switch {
			case existed && now:
				cmd = models.Update
			case now:
				cmd = models.Insert
			case existed:
				cmd = models.Delete
			}
			if cmd != "" {
				op := g[len(g)-1]
				op.Command = cmd
				return []models.Operation{op}, ordersOf(g[:len(g)-1])
			}
			return nil, ordersOf(g)
		}
	}
	// Then what remains (one operation per tracked row, after C1–C5).
	for i, op := range g {
		if removed[i] || !tracked(op.ContentTypeID) { // C6
			continue
		}
		if (op.Command == models.Insert || op.Command == models.Update) && !exists(op.ContentTypeID, op.RowID) { // C7
			removed[i] = true
		}
	}
	for i, op := range g {
		if removed[i] {
			drop = append(drop, op.Order)
		} else {
			keep = append(keep, op)
		}
	}
	return keep, drop
}

// CompressRemote applies python-sync-db's compression of the operations a
// pull brings (compressed_operations(), merge.md rules R1–R8), leaving at
// most one operation per row, ordered by order:
//
//	R1  a single operation       → itself
//	R2  i … d                    → nothing
//	R3  i … (not d)              → the first operation (the insert)
//	R4  u … d                    → the last operation (the delete)
//	R5  u … (not d)              → the first operation (the update)
//	R6  d … d                    → the first operation (the delete)
//	R7  d … u                    → the last operation (the update)
//	R8  d … i                    → an update, with the last operation's
//	                                order and version
//
// The input need not be sorted.
func CompressRemote(ops []protocol.Operation) []protocol.Operation {
	type key struct{ table, row string }
	// group numbers the rows in the order they first appear.
	group := make(map[key]int, len(ops))
	ascending := true
	for i, op := range ops {
		k := key{op.Table, op.RowID}
		if _, ok := group[k]; !ok {
			group[k] = len(group)
		}
		if i > 0 && ops[i-1].Order >= op.Order {
			ascending = false
		}
	}
	if len(group) == len(ops) && ascending {
		// What a server sends: a chunk compressed already, one operation
		// per row in ascending orders. It is its own result (R1 for every
		// row, and sorting leaves it as it is): no group and no sort per
		// row.
		out := make([]protocol.Operation, len(ops))
		copy(out, ops)
		return out
	}
	groups := make([][]protocol.Operation, len(group))
	for _, op := range ops {
		g := group[key{op.Table, op.RowID}]
		groups[g] = append(groups[g], op)
	}
	out := make([]protocol.Operation, 0, len(groups))
	for _, g := range groups {
		sort.SliceStable(g, func(i, j int) bool { return g[i].Order < g[j].Order })
		if op, ok := CompressRun(g[0], g[len(g)-1], len(g)); ok {
			out = append(out, op)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Order < out[j].Order })
	return out
}

// CompressRun is the result of rules R1–R8 for the operations on one row,
// given only the first and last of them and how many there are. ok is false
// when nothing remains (R2). The server uses it to compress in SQL.
func CompressRun(first, last protocol.Operation, n int) (protocol.Operation, bool) {
	if n <= 1 {
		return first, true // R1
	}
	switch first.Command {
	case models.Insert:
		if last.Command == models.Delete {
			return protocol.Operation{}, false // R2
		}
		return first, true // R3
	case models.Update:
		if last.Command == models.Delete {
			return last, true // R4
		}
		return first, true // R5
	default: // first is a delete
		switch last.Command {
		case models.Delete:
			return first, true // R6
		case models.Update:
			return last, true // R7
		default:
			op := last // R8
			op.Command = models.Update
			return op, true
		}
	}
}

func ordersOf(ops []models.Operation) []int64 {
	out := make([]int64, len(ops))
	for i, op := range ops {
		out[i] = op.Order
	}
	return out
}

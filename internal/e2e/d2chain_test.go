package e2e_test

import (
	"testing"
)

// Chained D2: b deletes node 1 (cascade: node 4 and its item 3); a adds a
// sub under item 3 (item 3 -> node 4 -> node 1). b's pull restores item 3
// (D2) and the chain above it; before, it restored item 3 only and every
// Sync failed on a foreign key.
func TestD2Chain(t *testing.T) {
	h2Run(t, h2Plain, 2, func(e *h2Env) {
		h2Seed(e)
		a, b := e.ns[0], e.ns[1]
		e.exec(a, "INSERT INTO h2_subs (id, item_id, title) VALUES (10, 3, 'ta')")
		e.sync(a)
		e.exec(b, "DELETE FROM h2_subs WHERE item_id IN (SELECT id FROM h2_items WHERE node_id IN (1, 4))", "DELETE FROM h2_nodes WHERE id = 1")
		e.settle()
	})
}

// Chained D2 in one self-referencing table: a updates node 6
// (6 -> 5 -> 4 -> 1); b deletes node 5 and node 1 (cascades). b's pull
// restores node 5 (D2) and node 4 and node 1 above it.
func TestD2TreeChain(t *testing.T) {
	h2Run(t, h2Plain, 2, func(e *h2Env) {
		h2Seed(e)
		a, b := e.ns[0], e.ns[1]
		e.exec(a, "INSERT INTO h2_nodes (id, parent_id, code) VALUES (5, 4, 'v'), (6, 5, 'u')")
		e.sync(a)
		e.sync(b)
		e.exec(a, "UPDATE h2_nodes SET note = 'a' WHERE id = 6", "INSERT INTO h2_items (id, node_id, sku) VALUES (10, 6, 'sa')")
		e.sync(a)
		e.exec(b, "DELETE FROM h2_subs", "DELETE FROM h2_nodes WHERE id = 5", "DELETE FROM h2_nodes WHERE id = 1")
		e.settle()
	})
}

package e2e_test

import (
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/merge"
)

var h2Policies = map[string]*client.Config{
	"clientwins":        {DefaultPolicy: merge.ClientWins},
	"clientwins_chunk1": {DefaultPolicy: merge.ClientWins, ChunkSize: 1},
}

// trimPast takes b offline past the horizon: a syncs after the clock
// moved, and the server trims.
func (e *h2Env) trimPast() {
	e.t.Helper()
	e.clk.Advance(25 * time.Hour)
	a := e.ns[0]
	e.exec(a, "INSERT INTO h2_nodes (id, parent_id, code) VALUES (90, NULL, 'trim')")
	e.sync(a)
	e.exec(a, "UPDATE h2_nodes SET note = 'trim' WHERE id = 90")
	e.sync(a)
	if tr, err := e.srv.Srv.Trim(e.ctx); err != nil || tr.RetiredNodes == 0 {
		e.t.Fatalf("trim %+v %v", tr, err)
	}
}

// Under merge.ClientWins: b deletes node 4 (cascade: item 3); a updates
// node 4 and adds sub 10 under item 3. The policy keeps b's delete of
// node 4 and of item 3; sub 10 restores item 3 (D2), and with it node 4,
// which item 3 references. Before D2 followed the chain, every pull, and
// every Reset (with trim: every Sync's reset), failed on a foreign key.
func h2DeleteVsChild(e *h2Env, trim bool) {
	h2Seed(e)
	a, b := e.ns[0], e.ns[1]
	e.exec(a, "UPDATE h2_nodes SET note = 'a' WHERE id = 4", "INSERT INTO h2_subs (id, item_id, title) VALUES (10, 3, 'ta')")
	e.sync(a)
	e.exec(b, "DELETE FROM h2_nodes WHERE id = 4")
	if trim {
		e.trimPast()
	}
	e.settle()
}

func TestD2ChainClientWins(t *testing.T) {
	h2Run(t, h2Policies, 2, func(e *h2Env) { h2DeleteVsChild(e, false) })
}

func TestResetD2Chain(t *testing.T) {
	h2Run(t, h2Policies, 2, func(e *h2Env) { h2DeleteVsChild(e, true) })
}

// Same under merge.ClientWins, a changing item 3 (not node 4) and adding
// sub 10 under it.
func TestD2ChainClientWinsItemUpdate(t *testing.T) {
	h2Run(t, h2Policies, 2, func(e *h2Env) {
		h2Seed(e)
		a, b := e.ns[0], e.ns[1]
		e.exec(a, "UPDATE h2_items SET sku = 's3a' WHERE id = 3", "INSERT INTO h2_subs (id, item_id, title) VALUES (10, 3, 'ta')")
		e.sync(a)
		e.exec(b, "DELETE FROM h2_nodes WHERE id = 4")
		e.settle()
	})
}

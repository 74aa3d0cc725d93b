package merge_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/protocol"
)

// A chain of three tables for D1 on pull-only tables: groups (pull-only,
// as an application's categories), lists in a group and items in a list
// (both ways).

type d1Group struct {
	bun.BaseModel `bun:"table:d1_groups"`

	ID   int64  `bun:"id,pk,autoincrement"`
	Name string `bun:"name,notnull"`
}

type d1List struct {
	bun.BaseModel `bun:"table:d1_lists"`

	ID      int64    `bun:"id,pk,autoincrement"`
	GroupID int64    `bun:"group_id,notnull"`
	Group   *d1Group `bun:"rel:belongs-to,join:group_id=id,on_delete:CASCADE"`
}

type d1Item struct {
	bun.BaseModel `bun:"table:d1_items"`

	ID     int64   `bun:"id,pk,autoincrement"`
	ListID int64   `bun:"list_id,notnull"`
	List   *d1List `bun:"rel:belongs-to,join:list_id=id,on_delete:CASCADE"`
}

// TestD1PullOnly pins D1 on rows of tables the node does not push
// (merge.Pushes, merge.md D1): the server's delete of such a row that the
// node's pending rows depend on, directly or up a chain, cannot be kept
// (no push re-creates it), so Finish refuses the pull with a
// *merge.PendingDependentsError naming the deleted rows and the pending
// rows below them; the caller applies nothing. A delete the pull's other
// operations free (a policy dropping the pending rows) or follow (the
// server re-created the row) is no refusal. Before, D1 kept the row and
// logged an insert of it that the server refuses.
func TestD1PullOnly(t *testing.T) {
	reg, err := dbsync.Track(dbtest.SQLite(t), dbsync.PullOnly((*d1Group)(nil)), (*d1List)(nil), (*d1Item)(nil))
	if err != nil {
		t.Fatal(err)
	}
	o := func(table, key string) merge.Obj { return merge.Obj{Table: "d1_" + table, Key: key} }
	g, l, i := func(k string) merge.Obj { return o("groups", k) }, func(k string) merge.Obj { return o("lists", k) }, func(k string) merge.Obj { return o("items", k) }
	row := func(ob merge.Obj, cols ...string) trow {
		r := protocol.Row{"id": json.RawMessage(ob.Key)}
		for j := 0; j+1 < len(cols); j += 2 {
			r[cols[j]] = json.RawMessage(cols[j+1])
		}
		return trow{obj: ob, row: r}
	}
	op := func(cmd string, ob merge.Obj) protocol.Operation {
		v := int64(1)
		return protocol.Operation{Table: ob.Table, RowID: ob.Key, Command: protocol.Command(cmd), VersionID: &v}
	}
	lop := func(cmd string, ob merge.Obj, order int64) merge.LocalOp {
		return merge.LocalOp{Obj: ob, Command: protocol.Command(cmd), Orders: []int64{order}}
	}
	type chunk struct {
		ops     []protocol.Operation
		payload []trow
	}
	cases := []struct {
		name   string
		local  []merge.LocalOp
		refs   []merge.Ref
		policy merge.Policy
		// pushesAll: no merge.Pushes option (every table pushed: the
		// rule as it was, kept for pushed tables).
		pushesAll bool
		chunks    []chunk
		// deleted and pending are the refusal's rows (nil deleted: Finish
		// must succeed); deletes and adds the plans' deletes and log
		// entries added, over every chunk and Finish.
		deleted, pending []merge.Obj
		deletes          []merge.Obj
		adds             []string
	}{
		{
			name:    "direct",
			local:   []merge.LocalOp{lop("i", l("5"), 1), lop("u", l("6"), 2), lop("i", l("7"), 3)},
			refs:    []merge.Ref{{Child: l("5"), Parent: g("1")}, {Child: l("6"), Parent: g("1")}, {Child: l("7"), Parent: g("2")}},
			chunks:  []chunk{{ops: []protocol.Operation{op("d", g("1")), op("d", g("3"))}}, {ops: []protocol.Operation{op("d", g("2"))}}},
			deleted: []merge.Obj{g("1"), g("2")},
			pending: []merge.Obj{l("5"), l("6"), l("7")},
		},
		{
			// The pending item depends on the group through its list,
			// which has no pending change; the server deleted both, the
			// group first, in an earlier chunk.
			name:    "chain",
			local:   []merge.LocalOp{lop("i", i("9"), 1)},
			refs:    []merge.Ref{{Child: i("9"), Parent: l("1")}, {Child: l("1"), Parent: g("1")}},
			chunks:  []chunk{{ops: []protocol.Operation{op("d", g("1"))}}, {ops: []protocol.Operation{op("d", l("1"))}}},
			deleted: []merge.Obj{g("1")},
			pending: []merge.Obj{i("9")},
		},
		{
			// The same, children first, one chunk; the list has a pending
			// update too: both are named.
			name:    "chain_pending_on_the_way",
			local:   []merge.LocalOp{lop("u", l("1"), 1), lop("i", i("9"), 2)},
			refs:    []merge.Ref{{Child: i("9"), Parent: l("1")}, {Child: l("1"), Parent: g("1")}},
			chunks:  []chunk{{ops: []protocol.Operation{op("d", l("1")), op("d", g("1"))}}},
			deleted: []merge.Obj{g("1")},
			pending: []merge.Obj{i("9"), l("1")},
		},
		{
			// ServerWins drops the item's change (M5, the server deleted
			// it too, in a later chunk): nothing depends on the group or
			// the list any more, and their deletes apply.
			name:    "freed_by_the_policy",
			local:   []merge.LocalOp{lop("u", i("9"), 1)},
			refs:    []merge.Ref{{Child: i("9"), Parent: l("1")}, {Child: l("1"), Parent: g("1")}},
			policy:  merge.ServerWins,
			chunks:  []chunk{{ops: []protocol.Operation{op("d", g("1")), op("d", l("1"))}}, {ops: []protocol.Operation{op("d", i("9"))}}},
			deletes: []merge.Obj{i("9"), l("1"), g("1")},
		},
		{
			// The server deleted the group and re-created it: its delete
			// waits, then the insert writes it (M1), nothing logged.
			name:    "recreated_by_the_server",
			local:   []merge.LocalOp{lop("i", l("5"), 1)},
			refs:    []merge.Ref{{Child: l("5"), Parent: g("1")}},
			chunks:  []chunk{{ops: []protocol.Operation{op("d", g("1"))}}, {ops: []protocol.Operation{op("i", g("1"))}, payload: []trow{row(g("1"), "name", `"g1"`)}}},
			deletes: nil,
		},
		{
			// A table the node pushes: D1 keeps the row, the next push
			// re-creates it (as without merge.Pushes).
			name:      "pushed_table_kept",
			local:     []merge.LocalOp{lop("i", l("5"), 1)},
			refs:      []merge.Ref{{Child: l("5"), Parent: g("1")}},
			pushesAll: true,
			chunks:    []chunk{{ops: []protocol.Operation{op("d", g("1"))}}},
			adds:      []string{"i d1_groups/1 head"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			local := merge.NewLocal(tc.local, tc.refs)
			var opts []merge.Option
			if !tc.pushesAll {
				opts = append(opts, merge.Pushes(func(table string) bool { return reg.Table(table).Direction.Pushed() }))
			}
			var policy func(string) merge.Policy
			if tc.policy != nil {
				policy = func(string) merge.Policy { return tc.policy }
			}
			m := merge.NewMerger(reg, local, newFakeDB(reg), policy, opts...)
			var deletes []merge.Obj
			var adds []string
			note := func(p *merge.Plan) {
				deletes = append(deletes, p.Deletes...)
				for _, a := range p.AddOps {
					s := string(a.Command) + " " + a.Obj.String()
					if a.Head {
						s += " head"
					}
					adds = append(adds, s)
				}
			}
			for n, c := range tc.chunks {
				payload := map[string]map[string]protocol.Row{}
				for _, r := range c.payload {
					if payload[r.obj.Table] == nil {
						payload[r.obj.Table] = map[string]protocol.Row{}
					}
					payload[r.obj.Table][r.obj.Key] = r.row
				}
				p, err := m.Chunk(c.ops, payload)
				if err != nil {
					t.Fatalf("chunk %d: %v", n, err)
				}
				note(p)
			}
			p, err := m.Finish()
			if tc.deleted != nil {
				var pd *merge.PendingDependentsError
				if !errors.As(err, &pd) {
					t.Fatalf("Finish: %v (plan %+v), want a *merge.PendingDependentsError", err, p)
				}
				if !slices.Equal(pd.Deleted, tc.deleted) || !slices.Equal(pd.Pending, tc.pending) {
					t.Fatalf("refused %v for pending %v, want %v for %v", pd.Deleted, pd.Pending, tc.deleted, tc.pending)
				}
				return
			}
			if err != nil {
				t.Fatalf("Finish: %v", err)
			}
			note(p)
			if !slices.Equal(deletes, tc.deletes) || !slices.Equal(adds, tc.adds) {
				t.Fatalf("deletes %v, log entries added %v; want %v and %v", deletes, adds, tc.deletes, tc.adds)
			}
		})
	}
}

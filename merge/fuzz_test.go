package merge_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
	"github.com/go-dbsync/dbsync/protocol"
)

// fuzzInput reads small numbers from fuzz bytes; past the end it reads 0.
type fuzzInput struct {
	b []byte
	i int
}

func (in *fuzzInput) next(n int) int {
	if in.i >= len(in.b) {
		return 0
	}
	v := int(in.b[in.i]) % n
	in.i++
	return v
}

var fuzzNames = []string{"a", "b", "c", "d"}

var fuzzCommands = []models.Command{models.Insert, models.Update, models.Delete}

// fuzzMerge decodes data into a node (rows, pending operations, references),
// a pull (one or two chunks of remote operations with payloads) and a
// policy, over 4 parents and 4 children, and merges it. It returns a
// transcript of everything the merge decided, and reports broken
// invariants.
func fuzzMerge(t *testing.T, kits []*kit, data []byte) string {
	in := &fuzzInput{b: data}
	k := kits[in.next(2)]
	var out strings.Builder

	// The node: each row is absent, synced, or pending i/u/d.
	var rows []trow
	var local []merge.LocalOp
	var refs []merge.Ref
	orders := map[int64]bool{}
	order := int64(0)
	for _, prefix := range []string{"P", "C"} {
		for n := 1; n <= 4; n++ {
			state := in.next(5) // 0 absent, 1 synced, 2 i, 3 u, 4 d
			var r trow
			if prefix == "P" {
				r = k.Par(n, fuzzNames[in.next(4)])
			} else {
				r = k.Chi(n, 1+in.next(4), "t"+strconv.Itoa(in.next(3)))
			}
			if state == 1 || state == 2 || state == 3 {
				rows = append(rows, r)
			}
			if state >= 2 {
				order++
				op := merge.LocalOp{Obj: r.obj, Command: fuzzCommands[state-2], Orders: []int64{order}}
				if in.next(3) == 0 {
					order++
					op.Orders = append(op.Orders, order)
				}
				for _, o := range op.Orders {
					orders[o] = true
				}
				local = append(local, op)
				if prefix == "C" && state != 4 {
					p, _ := protocol.Key(r.row["parent_id"])
					refs = append(refs, merge.Ref{Child: r.obj, Parent: merge.Obj{Table: k.P, Key: p}})
				}
			}
		}
	}
	db := newFakeDB(k.reg, rows...)
	l := merge.NewLocal(local, refs)

	if k.kind == "int" && in.next(2) == 1 {
		sm := map[string]int64{k.P: int64(in.next(6)), k.C: int64(in.next(6))}
		moves, err := merge.Renumber(k.reg, l, sm, map[string]int64{k.P: 4, k.C: 4})
		if err != nil {
			t.Fatalf("Renumber: %v", err)
		}
		for _, mv := range moves {
			fmt.Fprintf(&out, "move %s %d->%d\n", mv.Table, mv.From, mv.To)
			db.move(mv)
		}
	}

	// The pull.
	var remote []protocol.Operation
	payload := map[string]map[string]protocol.Row{}
	addPayload := func(r trow) {
		if payload[r.obj.Table] == nil {
			payload[r.obj.Table] = map[string]protocol.Row{}
		}
		payload[r.obj.Table][r.obj.Key] = r.row
	}
	nops := in.next(9)
	for i := 0; i < nops; i++ {
		n := 1 + in.next(6) // rows 5 and 6 exist only on the server
		cmd := fuzzCommands[in.next(3)]
		var r trow
		if in.next(2) == 0 {
			r = k.Par(n, fuzzNames[in.next(4)])
		} else {
			r = k.Chi(n, 1+in.next(6), "s"+strconv.Itoa(in.next(3)))
			if cmd != models.Delete && in.next(2) == 0 {
				p, _ := strconv.Atoi(k.sym(merge.Obj{Table: k.P, Key: mustKey(r.row["parent_id"])})[1:])
				addPayload(k.Par(p, fuzzNames[in.next(4)]))
			}
		}
		v := int64(1)
		remote = append(remote, protocol.Operation{Order: int64(100 + i), Table: r.obj.Table, RowID: r.obj.Key, Command: cmd, VersionID: &v})
		if cmd != models.Delete && in.next(4) != 0 {
			addPayload(r)
		}
	}
	remote = oplog.CompressRemote(remote)

	var policy merge.Policy
	switch in.next(6) {
	case 0:
		policy = merge.Default
	case 1:
		policy = merge.ServerWins
	case 2:
		policy = merge.ClientWins
	case 3:
		policy = merge.LastWriteWins("updated")
	case 4:
		policy = merge.PolicyFunc(func(c *merge.Conflict) merge.Decision {
			switch {
			case c.RemoteRow != nil:
				return merge.Decision{Resolution: merge.UseRow, Row: withCol(c.RemoteRow, "rev", "7")}
			case c.LocalRow != nil:
				return merge.Decision{Resolution: merge.UseRow, Row: withCol(c.LocalRow, "rev", "8")}
			}
			return merge.Decision{Resolution: merge.KeepLocal}
		})
	default:
		policy = merge.LastWriteWins("rev")
	}
	m := merge.NewMerger(k.reg, l, db, func(string) merge.Policy { return policy })

	split := in.next(len(remote) + 1)
	dropped := map[int64]bool{}
	for ci, ops := range [][]protocol.Operation{remote[:split], remote[split:]} {
		plan, err := m.Chunk(ops, payload)
		if err != nil {
			var uc *dbsync.UniqueConstraintError
			if !errors.As(err, &uc) {
				t.Errorf("chunk %d: unexpected error %v", ci, err)
			}
			fmt.Fprintf(&out, "chunk %d: %v\n", ci, err)
			return out.String()
		}
		for _, w := range plan.Writes {
			tb := k.reg.Table(w.Table)
			if tb == nil {
				t.Fatalf("write to unknown table %s", w.Table)
			}
			key, err := tb.RowKey(w.Row)
			if err != nil || key != w.Key {
				t.Fatalf("write %s carries the row %s", w.Obj, canon(w.Row))
			}
		}
		for _, o := range plan.DropOrders {
			if !orders[o] {
				t.Fatalf("plan drops order %d, which is not a pending operation", o)
			}
			if dropped[o] {
				t.Fatalf("plan drops order %d twice", o)
			}
			dropped[o] = true
		}
		for _, a := range plan.AddOps {
			if !a.Command.Valid() || k.reg.Table(a.Table) == nil {
				t.Fatalf("bad log entry %+v", a)
			}
		}
		fmt.Fprintf(&out, "chunk %d:\n%v\n", ci, k.view(plan))
		db.apply(plan)
	}
	plan, err := m.Finish()
	if err == nil {
		fmt.Fprintf(&out, "finish:\n%v\n", k.view(plan))
		db.apply(plan)
	}
	fmt.Fprintf(&out, "finish: %v\n", err)
	for _, prefix := range []string{"P", "C"} {
		for n := 1; n <= 12; n++ {
			sym := prefix + strconv.Itoa(n)
			if op := l.Op(k.O(sym)); op != nil {
				fmt.Fprintf(&out, "%s %s\n", sym, localView(op))
			}
		}
	}
	return out.String()
}

func mustKey(v []byte) string {
	k, ok := protocol.Key(v)
	if !ok {
		panic("no key in " + string(v))
	}
	return k
}

// FuzzMerge: on any node state and pull, Chunk never panics, decides the
// same twice, and writes rows under their own keys.
func FuzzMerge(f *testing.F) {
	kits := newKits(f)
	f.Add([]byte{})
	f.Add([]byte{0, 3, 1, 2, 0, 4, 4, 1, 2, 3, 8, 1, 2, 0, 1, 1, 0, 2, 3})
	f.Add([]byte{1, 2, 0, 1, 3, 2, 2, 4, 0, 1, 1, 3, 3, 2, 2, 0, 0, 2, 1, 1, 7, 2, 2, 1, 0, 3, 1, 1, 1, 0, 4, 4, 1})
	f.Add([]byte("the node deleted a parent the server still references"))
	f.Add([]byte("\x00\x02\x03\x01\x02\x01\x02\x04\x00\x03\x02\x01\x01\x02\x03\x00\x01\x08\x00\x02\x00\x01\x01\x01\x01\x02\x00\x01\x04\x02"))
	for i := 0; i < 32; i++ {
		seed := make([]byte, 64)
		for j := range seed {
			seed[j] = byte((i*131 + j*29 + i*j*7) % 251)
		}
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a := fuzzMerge(t, kits, data)
		b := fuzzMerge(t, kits, data)
		if a != b {
			t.Fatalf("two merges of the same input differ:\n%s\n----\n%s", a, b)
		}
	})
}

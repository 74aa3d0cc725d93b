package merge_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/protocol"
)

// textSchema has a table whose text key ignores case on the node
// ("codes") and a table referencing it ("items").
type textSchema struct{}

func (textSchema) TableSchema(name string) *protocol.TableSchema {
	switch name {
	case "codes":
		return &protocol.TableSchema{Name: "codes", KeyColumn: "code", KeyKind: protocol.KeyText, Uniques: [][]string{{"name"}}}
	case "items":
		return &protocol.TableSchema{Name: "items", KeyColumn: "id", KeyKind: protocol.KeyText,
			ForeignKeys: []protocol.ForeignKey{{Column: "code", RefTable: "codes"}}}
	}
	return nil
}

// foldedRows is the node's rows of codes, by their own spelling, found
// by any spelling as under NOCASE.
type foldedRows map[string]protocol.Row

func (f foldedRows) Rows(table string, keys []string) (map[string]protocol.Row, error) {
	out := map[string]protocol.Row{}
	for _, k := range keys {
		for held, row := range f {
			if strings.EqualFold(held, k) {
				out[held] = row
			}
		}
	}
	return out, nil
}

// UniqueHolders finds the rows holding the names of rows (codes' one
// unique column).
func (f foldedRows) UniqueHolders(_ string, _ []string, rows []protocol.Row) (map[int]string, error) {
	out := map[int]string{}
	for i, r := range rows {
		for held, row := range f {
			if string(row["name"]) == string(r["name"]) {
				out[i] = held
			}
		}
	}
	return out, nil
}

// spellings answers merge.Spellings for f: the held spelling of keys
// that name a row under another.
func (f foldedRows) spellings(table string, keys []string) (map[string]string, error) {
	out := map[string]string{}
	for _, k := range keys {
		for held := range f {
			if strings.EqualFold(held, k) && held != k {
				out[k] = held
			}
		}
	}
	return out, nil
}

func codeRow(code, name string) protocol.Row {
	c, _ := json.Marshal(code)
	n, _ := json.Marshal(name)
	return protocol.Row{"code": c, "name": n}
}

// TestK2Spellings: on a node whose text key ignores case (merge.Spellings
// says which rows it holds under other spellings), a remote operation on
// "abc" meets the node's pending change of its row "ABC" as one row: the
// plan respells the node's row first (Plan.Respells), then the M rule
// applies under the pull's spelling. Without Spellings (keys compared
// byte for byte) they are two rows.
func TestK2Spellings(t *testing.T) {
	t.Parallel()
	op := func(table, key string, cmd protocol.Command) protocol.Operation {
		return protocol.Operation{Table: table, RowID: key, Command: cmd}
	}
	codes := func(key string) merge.Obj { return merge.Obj{Table: "codes", Key: key} }
	type want struct {
		respells  []merge.Respell
		writes    []string // keys written
		deletes   []string
		drop      []int64
		add       []merge.NewOp
		conflicts []string // kind/resolution
		local     map[string]protocol.Command
	}
	cases := []struct {
		name   string
		policy merge.Policy
		bytes  bool // no Spellings: keys compared byte for byte
		held   foldedRows
		local  []merge.LocalOp
		refs   []merge.Ref
		chunks [][]protocol.Operation
		want   want
	}{
		{
			name: "insert_insert/keep_local", policy: merge.Default,
			held:   foldedRows{"ABC": codeRow("ABC", "b1")},
			local:  []merge.LocalOp{{Obj: codes("ABC"), Command: protocol.Insert, Orders: []int64{1}}},
			chunks: [][]protocol.Operation{{op("codes", "abc", protocol.Insert)}},
			want: want{respells: []merge.Respell{{Obj: codes("ABC"), To: "abc", References: true}}, conflicts: []string{"update_update/keep_local"},
				local: map[string]protocol.Command{"abc": protocol.Insert}},
		},
		{
			name: "insert_insert/take_remote", policy: merge.ServerWins,
			held:   foldedRows{"ABC": codeRow("ABC", "b1")},
			local:  []merge.LocalOp{{Obj: codes("ABC"), Command: protocol.Insert, Orders: []int64{1}}},
			chunks: [][]protocol.Operation{{op("codes", "abc", protocol.Insert)}},
			want: want{respells: []merge.Respell{{Obj: codes("ABC"), To: "abc", References: true}}, writes: []string{"abc"}, drop: []int64{1},
				conflicts: []string{"update_update/take_remote"}, local: map[string]protocol.Command{}},
		},
		{
			name: "insert_insert/bytes", policy: merge.Default, bytes: true,
			held:   foldedRows{"ABC": codeRow("ABC", "b1")},
			local:  []merge.LocalOp{{Obj: codes("ABC"), Command: protocol.Insert, Orders: []int64{1}}},
			chunks: [][]protocol.Operation{{op("codes", "abc", protocol.Insert)}},
			want:   want{writes: []string{"abc"}, local: map[string]protocol.Command{"ABC": protocol.Insert}},
		},
		{
			// The node respelled the row itself (d abc, i ABC): an update.
			name: "node_respelled/keep_local", policy: merge.Default,
			held: foldedRows{"ABC": codeRow("ABC", "b1")},
			local: []merge.LocalOp{{Obj: codes("abc"), Command: protocol.Delete, Orders: []int64{1}},
				{Obj: codes("ABC"), Command: protocol.Insert, Orders: []int64{2}}},
			chunks: [][]protocol.Operation{{op("codes", "abc", protocol.Update)}},
			want: want{respells: []merge.Respell{{Obj: codes("ABC"), To: "abc", References: true}}, conflicts: []string{"update_update/keep_local"},
				local: map[string]protocol.Command{"abc": protocol.Update}},
		},
		{
			name: "node_respelled/take_remote", policy: merge.ServerWins,
			held: foldedRows{"ABC": codeRow("ABC", "b1")},
			local: []merge.LocalOp{{Obj: codes("abc"), Command: protocol.Delete, Orders: []int64{1}},
				{Obj: codes("ABC"), Command: protocol.Insert, Orders: []int64{2}}},
			chunks: [][]protocol.Operation{{op("codes", "abc", protocol.Update)}},
			want: want{respells: []merge.Respell{{Obj: codes("ABC"), To: "abc", References: true}}, writes: []string{"abc"}, drop: []int64{1, 2},
				conflicts: []string{"update_update/take_remote"}, local: map[string]protocol.Command{}},
		},
		{
			// The server respelled the row (d abc, i ABC) the node
			// updated: M5 re-creates it, then it takes the new spelling
			// and meets the insert (M3).
			name: "server_respelled/keep_local", policy: merge.Default,
			held:   foldedRows{"abc": codeRow("abc", "b1")},
			local:  []merge.LocalOp{{Obj: codes("abc"), Command: protocol.Update, Orders: []int64{1}}},
			chunks: [][]protocol.Operation{{op("codes", "abc", protocol.Delete), op("codes", "ABC", protocol.Insert)}},
			want: want{respells: []merge.Respell{{Obj: codes("abc"), To: "ABC", References: true}}, drop: []int64{1},
				add:       []merge.NewOp{{Obj: codes("ABC"), Command: protocol.Insert, Head: true}},
				conflicts: []string{"delete_update/keep_local", "update_update/keep_local"}, local: map[string]protocol.Command{"ABC": protocol.Insert}},
		},
		{
			// The node's row holds the unique value the server's row
			// has: the same row, respelled, no swap (U1).
			name: "insert_insert/take_remote/unique", policy: merge.ServerWins,
			held:   foldedRows{"ABC": codeRow("ABC", "server")},
			local:  []merge.LocalOp{{Obj: codes("ABC"), Command: protocol.Insert, Orders: []int64{1}}},
			chunks: [][]protocol.Operation{{op("codes", "abc", protocol.Insert)}},
			want: want{respells: []merge.Respell{{Obj: codes("ABC"), To: "abc", References: true}}, writes: []string{"abc"}, drop: []int64{1},
				conflicts: []string{"update_update/take_remote"}, local: map[string]protocol.Command{}},
		},
		{
			// The server respelled a row the node did not change (d abc,
			// i ABC in one chunk): respelled and written, not deleted;
			// the rows referencing it keep their spelling.
			name: "server_respelled/unchanged", policy: merge.Default,
			held:   foldedRows{"abc": codeRow("abc", "s1")},
			chunks: [][]protocol.Operation{{op("codes", "abc", protocol.Delete), op("codes", "ABC", protocol.Insert)}},
			want: want{respells: []merge.Respell{{Obj: codes("abc"), To: "ABC"}}, writes: []string{"ABC"},
				local: map[string]protocol.Command{}},
		},
		{
			// A pending row referencing the node's "ABC" keeps the
			// server's "abc" from its delete (D1) once respelled.
			name: "reference_follows", policy: merge.ServerWins,
			held: foldedRows{"ABC": codeRow("ABC", "b1")},
			local: []merge.LocalOp{{Obj: codes("ABC"), Command: protocol.Insert, Orders: []int64{1}},
				{Obj: merge.Obj{Table: "items", Key: "i1"}, Command: protocol.Insert, Orders: []int64{2}}},
			refs:   []merge.Ref{{Child: merge.Obj{Table: "items", Key: "i1"}, Parent: codes("ABC")}},
			chunks: [][]protocol.Operation{{op("codes", "abc", protocol.Insert)}, {op("codes", "abc", protocol.Delete)}},
			want: want{add: []merge.NewOp{{Obj: codes("abc"), Command: protocol.Insert, Head: true}},
				conflicts: []string{"dependency/keep_local"}, local: map[string]protocol.Command{"abc": protocol.Insert}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			local := merge.NewLocal(c.local, c.refs)
			opts := []merge.Option{}
			if !c.bytes {
				opts = append(opts, merge.Spellings(c.held.spellings))
			}
			m := merge.NewMerger(textSchema{}, local, c.held, func(string) merge.Policy { return c.policy }, opts...)
			var plan *merge.Plan
			for _, ops := range c.chunks {
				payload := map[string]map[string]protocol.Row{"codes": {}}
				for _, o := range ops {
					payload["codes"][o.RowID] = codeRow(o.RowID, "server")
				}
				p, err := m.Chunk(ops, payload)
				if err != nil {
					t.Fatal(err)
				}
				plan = p // the last chunk's plan is checked
			}
			fin, err := m.Finish()
			if err != nil {
				t.Fatal(err)
			}
			if len(c.chunks) > 1 {
				plan = fin // the last chunk's delete waited for the end (D1)
			}
			got := want{respells: plan.Respells, drop: plan.DropOrders, add: plan.AddOps, local: map[string]protocol.Command{}}
			for _, w := range plan.Writes {
				got.writes = append(got.writes, w.Key)
			}
			for _, d := range plan.Deletes {
				got.deletes = append(got.deletes, d.Key)
			}
			for _, r := range plan.Conflicts {
				got.conflicts = append(got.conflicts, r.Kind+"/"+map[merge.Resolution]string{merge.KeepLocal: "keep_local", merge.TakeRemote: "take_remote", merge.UseRow: "use_row"}[r.Resolution])
			}
			for _, o := range local.Objs() {
				if o.Table == "codes" {
					got.local[o.Key] = local.Op(o).Command
				}
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("plan and pending rows\n got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

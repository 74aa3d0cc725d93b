package oplog_test

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
	"github.com/go-dbsync/dbsync/protocol"
)

// Content types of the pure compression tests: 1 and 2 are tracked, 9 is
// not.
const untrackedCT = 9

func trackedCT(ct int64) bool { return ct != untrackedCT }

// localOps parses a log written as "i1 u1 d2@2": a command, a row id and
// an optional @content type (default 1). The n-th operation has order n.
func localOps(t testing.TB, spec string) []models.Operation {
	t.Helper()
	var ops []models.Operation
	for i, tok := range strings.Fields(spec) {
		row, ct := tok[1:], int64(1)
		if at := strings.IndexByte(row, '@'); at >= 0 {
			n, err := strconv.ParseInt(row[at+1:], 10, 64)
			if err != nil {
				t.Fatalf("bad token %q", tok)
			}
			row, ct = row[:at], n
		}
		cmd := models.Command(tok[:1])
		if !cmd.Valid() || row == "" {
			t.Fatalf("bad token %q", tok)
		}
		ops = append(ops, models.Operation{Order: int64(i + 1), RowID: row, ContentTypeID: ct, Command: cmd})
	}
	return ops
}

// goneRows parses "1 2@2" into the set of rows that no longer exist.
func goneRows(spec string) map[string]bool {
	gone := map[string]bool{}
	for _, tok := range strings.Fields(spec) {
		if !strings.Contains(tok, "@") {
			tok += "@1"
		}
		gone[tok] = true
	}
	return gone
}

func existsFunc(gone map[string]bool) func(ct int64, row string) bool {
	return func(ct int64, row string) bool { return !gone[fmt.Sprintf("%s@%d", row, ct)] }
}

func orders(ops []models.Operation) []int64 {
	out := make([]int64, 0, len(ops))
	for _, op := range ops {
		out = append(out, op.Order)
	}
	return out
}

// checkLocal checks what holds for every result of CompressLocal: each
// input order is either kept or dropped, exactly once; kept operations are
// the input operations, unchanged but for a command rewritten by C5; both
// lists are sorted.
func checkLocal(t testing.TB, in, keep []models.Operation, drop []int64) {
	t.Helper()
	if len(keep)+len(drop) != len(in) {
		t.Fatalf("kept %d and dropped %d of %d operations", len(keep), len(drop), len(in))
	}
	byOrder := map[int64]models.Operation{}
	for _, op := range in {
		byOrder[op.Order] = op
	}
	seen := map[int64]bool{}
	for _, op := range keep {
		want, ok := byOrder[op.Order]
		want.Command = op.Command
		if !ok || !reflect.DeepEqual(op, want) || !op.Command.Valid() {
			t.Fatalf("kept %+v, which is not an input operation", op)
		}
		seen[op.Order] = true
	}
	for _, o := range drop {
		if _, ok := byOrder[o]; !ok || seen[o] {
			t.Fatalf("dropped order %d: not an input order, or also kept or dropped twice", o)
		}
		seen[o] = true
	}
	if !slices.IsSortedFunc(keep, func(a, b models.Operation) int { return int(a.Order - b.Order) }) {
		t.Fatalf("kept operations not sorted by order: %v", orders(keep))
	}
	if !slices.IsSorted(drop) {
		t.Fatalf("dropped orders not sorted: %v", drop)
	}
}

func TestCompressLocal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ops  string // see localOps
		gone string // rows that no longer exist, see goneRows
		keep []int64
		drop []int64
		cmds string // commands of the kept operations when C5 rewrote one ("" = unchanged)
	}{
		{name: "C1_insert_update", ops: "i1 u1", keep: []int64{1}, drop: []int64{2}},
		{name: "C1_insert_updates", ops: "i1 u1 u1 u1", keep: []int64{1}, drop: []int64{2, 3, 4}},
		{name: "C2_insert_delete", ops: "i1 d1", gone: "1", drop: []int64{1, 2}},
		{name: "C2_insert_updates_delete", ops: "i1 u1 u1 d1", gone: "1", drop: []int64{1, 2, 3, 4}},
		// The row exists again (its key was reused with capture off): C2
		// still applies, as in python.
		{name: "C2_insert_delete_row_exists", ops: "i1 u1 d1", drop: []int64{1, 2, 3}},
		{name: "C3_update_update", ops: "u1 u1", keep: []int64{2}, drop: []int64{1}},
		{name: "C3_updates", ops: "u1 u1 u1 u1", keep: []int64{4}, drop: []int64{1, 2, 3}},
		{name: "C4_update_delete", ops: "u1 d1", gone: "1", keep: []int64{2}, drop: []int64{1}},
		{name: "C4_updates_delete", ops: "u1 u1 u1 d1", gone: "1", keep: []int64{4}, drop: []int64{1, 2, 3}},
		{name: "C5_empty"},
		{name: "C5_single_operations", ops: "i1 u2 d3", gone: "3", keep: []int64{1, 2, 3}},
		// Irregular runs collapse to their last operation, with the command
		// from the row's state before the run (it existed unless the run
		// starts with i) to its state now.
		{name: "C5_delete_insert", ops: "d1 i1", keep: []int64{2}, drop: []int64{1}, cmds: "u"},
		{name: "C5_delete_update", ops: "d1 u1", keep: []int64{2}, drop: []int64{1}, cmds: "u"},
		{name: "C5_delete_insert_update", ops: "d1 i1 u1", keep: []int64{3}, drop: []int64{1, 2}, cmds: "u"},
		{name: "C5_delete_updates", ops: "d1 u1 u1", keep: []int64{3}, drop: []int64{1, 2}, cmds: "u"},
		{name: "C5_update_insert_delete_row_exists", ops: "u1 i1 d1", keep: []int64{3}, drop: []int64{1, 2}, cmds: "u"},
		{name: "C5_insert_delete_update", ops: "i1 d1 u1", keep: []int64{3}, drop: []int64{1, 2}, cmds: "i"},
		{name: "C5_insert_insert_delete", ops: "i1 i1 d1", gone: "1", drop: []int64{1, 2, 3}},
		{name: "C5_insert_delete_insert_delete", ops: "i1 d1 i1 d1", gone: "1", drop: []int64{1, 2, 3, 4}},
		{name: "C5_update_delete_update_delete", ops: "u1 d1 u1 d1", gone: "1", keep: []int64{4}, drop: []int64{1, 2, 3}, cmds: "d"},
		// The data-loss case of python's rules: a reused key compressed
		// twice (i d i → i d → nothing) lost a live row.
		{name: "C5_insert_delete_insert", ops: "i1 d1 i1", keep: []int64{3}, drop: []int64{1, 2}, cmds: "i"},
		{name: "C5_delete_insert_delete", ops: "d1 i1 d1", gone: "1", keep: []int64{3}, drop: []int64{1, 2}, cmds: "d"},
		{name: "C5_duplicate_inserts", ops: "i1 i1", keep: []int64{2}, drop: []int64{1}, cmds: "i"},
		{name: "C5_duplicate_deletes", ops: "d1 d1 d1", gone: "1", keep: []int64{3}, drop: []int64{1, 2}, cmds: "d"},
		{name: "C5_update_then_insert", ops: "u1 i1", keep: []int64{2}, drop: []int64{1}, cmds: "u"},
		{name: "C5_updates_then_insert", ops: "u1 u1 i1", keep: []int64{3}, drop: []int64{1, 2}, cmds: "u"},
		{name: "C5_update_delete_insert", ops: "u1 d1 i1", keep: []int64{3}, drop: []int64{1, 2}, cmds: "u"},
		{name: "C5_insert_delete_update_insert", ops: "i1 d1 u1 i1", keep: []int64{4}, drop: []int64{1, 2, 3}, cmds: "i"},
		// C6: the pattern rules apply to every table, the rules after them
		// not to untracked ones (whose rows are never found).
		{name: "C6_untracked_kept", ops: "u1@9 i1@9 u2@9 i3@9", gone: "1@9 2@9 3@9", keep: []int64{1, 2, 3, 4}},
		{name: "C6_untracked_duplicates", ops: "d1@9 d1@9", gone: "1@9", keep: []int64{1, 2}},
		{name: "C6_untracked_patterns", ops: "i1@9 u1@9 u1@9 u2@9 d2@9", gone: "1@9 2@9", keep: []int64{1, 5}, drop: []int64{2, 3, 4}},
		{name: "C7_insert_row_gone", ops: "i1", gone: "1", drop: []int64{1}},
		{name: "C7_update_row_gone", ops: "u1", gone: "1", drop: []int64{1}},
		{name: "C7_insert_update_row_gone", ops: "i1 u1", gone: "1", drop: []int64{1, 2}},
		{name: "C7_updates_row_gone", ops: "u1 u1", gone: "1", drop: []int64{1, 2}},
		{name: "C7_delete_kept", ops: "d1", gone: "1", keep: []int64{1}},
		{name: "C7_other_table_same_row", ops: "i1 i1@2", gone: "1@2", keep: []int64{1}, drop: []int64{2}},
		// python-sync-db's verified example: i(City 1), u(City 1),
		// u(City 1), i(City 2), d(City 2) → i(City 1).
		{name: "C1_C2_python_example", ops: "i1 u1 u1 i2 d2", gone: "2", keep: []int64{1}, drop: []int64{2, 3, 4, 5}},
		{
			name: "C1_C2_C3_C4_C7_interleaved",
			ops:  "i1 i2 u1 u3 u2 d2 u3 i4 u1@2 d1@2 u1 i5",
			gone: "2 1@2 5",
			keep: []int64{1, 7, 8, 10},
			drop: []int64{2, 3, 4, 5, 6, 9, 11, 12},
		},
		{
			name: "C1_C4_C5_C6_tables_apart",
			ops:  "i1 u1@2 u1@9 u1 d1@2 i1@9 u2@2 i2@2",
			gone: "1@2 1@9",
			keep: []int64{1, 3, 5, 6, 8},
			drop: []int64{2, 4, 7},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := localOps(t, tc.ops)
			exists := existsFunc(goneRows(tc.gone))
			// The input order must not matter.
			for _, ops := range [][]models.Operation{slices.Clone(in), reversed(in)} {
				before := slices.Clone(ops)
				keep, drop := oplog.CompressLocal(ops, exists, trackedCT)
				if !slices.Equal(ops, before) {
					t.Fatalf("CompressLocal modified its input: %v", ops)
				}
				checkLocal(t, in, keep, drop)
				if got := orders(keep); !slices.Equal(got, nonNil(tc.keep)) {
					t.Fatalf("%s: kept %v, want %v", tc.ops, got, tc.keep)
				}
				if !slices.Equal(nonNil(drop), nonNil(tc.drop)) {
					t.Fatalf("%s: dropped %v, want %v", tc.ops, drop, tc.drop)
				}
				if tc.cmds != "" {
					var got []string
					for _, op := range keep {
						got = append(got, string(op.Command))
					}
					if strings.Join(got, " ") != tc.cmds {
						t.Fatalf("%s: kept commands %v, want %s", tc.ops, got, tc.cmds)
					}
				}
			}
		})
	}
}

func reversed[S ~[]E, E any](s S) S {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

func nonNil(s []int64) []int64 {
	if s == nil {
		return []int64{}
	}
	return s
}

// remoteOps parses operations written as "i1 u2@b d1#7": a command, a row
// id, an optional @table (default "a") and an optional #order (default the
// position, from 1). Each operation's version is 100 + its order.
func remoteOps(t testing.TB, spec string) []protocol.Operation {
	t.Helper()
	var ops []protocol.Operation
	for i, tok := range strings.Fields(spec) {
		rest, order := tok[1:], int64(i+1)
		if h := strings.IndexByte(rest, '#'); h >= 0 {
			n, err := strconv.ParseInt(rest[h+1:], 10, 64)
			if err != nil {
				t.Fatalf("bad token %q", tok)
			}
			rest, order = rest[:h], n
		}
		row, table := rest, "a"
		if at := strings.IndexByte(rest, '@'); at >= 0 {
			row, table = rest[:at], rest[at+1:]
		}
		cmd := models.Command(tok[:1])
		if !cmd.Valid() || row == "" {
			t.Fatalf("bad token %q", tok)
		}
		v := 100 + order
		ops = append(ops, protocol.Operation{Order: order, Table: table, RowID: row, Command: cmd, VersionID: &v})
	}
	return ops
}

// formatRemote writes operations in full, e.g. "u1@a#2v102".
func formatRemote(ops []protocol.Operation) []string {
	out := make([]string, 0, len(ops))
	for _, op := range ops {
		v := "-"
		if op.VersionID != nil {
			v = strconv.FormatInt(*op.VersionID, 10)
		}
		out = append(out, fmt.Sprintf("%s%s@%s#%dv%s", op.Command, op.RowID, op.Table, op.Order, v))
	}
	return out
}

// checkRemote checks what holds for every result of CompressRemote.
func checkRemote(t testing.TB, in, out []protocol.Operation) {
	t.Helper()
	if len(out) > len(in) {
		t.Fatalf("%d operations from %d", len(out), len(in))
	}
	type key struct{ table, row string }
	first, last := map[key]int64{}, map[key]int64{}
	for _, op := range in {
		k := key{op.Table, op.RowID}
		if o, ok := first[k]; !ok || op.Order < o {
			first[k] = op.Order
		}
		if o, ok := last[k]; !ok || op.Order > o {
			last[k] = op.Order
		}
	}
	seen := map[key]bool{}
	for i, op := range out {
		k := key{op.Table, op.RowID}
		if seen[k] {
			t.Fatalf("two operations on %s %s: %q", k.table, k.row, formatRemote(out))
		}
		seen[k] = true
		if _, ok := first[k]; !ok {
			t.Fatalf("operation %+v on a row not in the input", op)
		}
		if op.Order != first[k] && op.Order != last[k] {
			t.Fatalf("operation %+v: order is neither the first nor the last of its row", op)
		}
		if !op.Command.Valid() {
			t.Fatalf("operation %+v: bad command", op)
		}
		if i > 0 && out[i-1].Order >= op.Order {
			t.Fatalf("not sorted by order: %q", formatRemote(out))
		}
	}
	again := oplog.CompressRemote(out)
	if got, want := formatRemote(again), formatRemote(out); !slices.Equal(got, want) {
		t.Fatalf("compressing again gives %q, want the fixed point %q", got, want)
	}
}

func TestCompressRemote(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ops  string // see remoteOps
		want string // the same notation, with explicit orders
	}{
		{name: "R1_empty"},
		{name: "R1_single_insert", ops: "i1", want: "i1#1"},
		{name: "R1_single_update", ops: "u1", want: "u1#1"},
		{name: "R1_single_delete", ops: "d1", want: "d1#1"},
		{name: "R2_insert_delete", ops: "i1 d1"},
		{name: "R2_python_i_u_d", ops: "i1 u1 d1"},
		{name: "R2_insert_delete_insert_delete", ops: "i1 d1 i1 d1"},
		{name: "R3_insert_update", ops: "i1 u1 u1", want: "i1#1"},
		{name: "R3_insert_insert", ops: "i1 i1", want: "i1#1"},
		{name: "R3_python_i_d_i_u", ops: "i1 d1 i1 u1", want: "i1#1"},
		{name: "R4_update_delete", ops: "u1 d1", want: "d1#2"},
		{name: "R4_updates_delete", ops: "u1 u1 u1 d1", want: "d1#4"},
		{name: "R4_python_u_d_i_d", ops: "u1 d1 i1 d1", want: "d1#4"},
		{name: "R5_update_update", ops: "u1 u1 u1", want: "u1#1"},
		{name: "R5_update_insert", ops: "u1 i1", want: "u1#1"},
		{name: "R5_python_u_d_i", ops: "u1 d1 i1", want: "u1#1"},
		{name: "R6_delete_delete", ops: "d1 d1", want: "d1#1"},
		{name: "R6_python_d_i_d", ops: "d1 i1 d1", want: "d1#1"},
		{name: "R7_delete_update", ops: "d1 u1", want: "u1#2"},
		{name: "R7_python_d_i_u", ops: "d1 i1 u1", want: "u1#3"},
		{name: "R8_delete_then_insert", ops: "d1 i1", want: "u1#2"}, // python: d,i → u
		{name: "R8_delete_update_insert", ops: "d1 u1 i1", want: "u1#3"},
		{name: "R8_orders_with_gaps", ops: "i2#40 d1#10 i1#70", want: "i2#40 u1#70"},
		{
			name: "R2_R4_R5_R8_interleaved",
			ops:  "i1 u2 d3 u1 u2@b i3 u2 d2@b d1 i4",
			want: "u2#2 u3#6 d2@b#8 i4#10",
		},
		{
			name: "R1_R3_R6_R7_tables_apart",
			ops:  "d1@b i1 d1@b u1 u1@c i9#30 d2@b#20 u2@b#25",
			want: "d1@b#1 i1#2 u1@c#5 u2@b#25 i9#30",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := remoteOps(t, tc.ops)
			want := formatRemote(remoteOps(t, tc.want))
			for _, ops := range [][]protocol.Operation{slices.Clone(in), reversed(in)} {
				before := formatRemote(ops)
				out := oplog.CompressRemote(ops)
				if got := formatRemote(ops); !slices.Equal(got, before) {
					t.Fatalf("CompressRemote modified its input: %q", got)
				}
				checkRemote(t, in, out)
				if got := formatRemote(out); !slices.Equal(got, want) {
					t.Fatalf("%s: got %q, want %q", tc.ops, got, want)
				}
			}
		})
	}
}

// TestCompressRun checks the per-row rule table that the server evaluates
// in SQL from the first and last operation of a row and their count.
func TestCompressRun(t *testing.T) {
	t.Parallel()
	v1, v2 := int64(101), int64(102)
	op := func(cmd models.Command, order int64, v *int64) protocol.Operation {
		return protocol.Operation{Order: order, Table: "a", RowID: "1", Command: cmd, VersionID: v}
	}
	tests := []struct {
		name        string
		first, last models.Command
		n           int
		want        string // "" when nothing remains
	}{
		{name: "R1_one", first: models.Delete, last: models.Insert, n: 1, want: "d1@a#1v101"},
		{name: "R2", first: models.Insert, last: models.Delete, n: 2},
		{name: "R3_update", first: models.Insert, last: models.Update, n: 3, want: "i1@a#1v101"},
		{name: "R3_insert", first: models.Insert, last: models.Insert, n: 3, want: "i1@a#1v101"},
		{name: "R4", first: models.Update, last: models.Delete, n: 2, want: "d1@a#2v102"},
		{name: "R5_update", first: models.Update, last: models.Update, n: 5, want: "u1@a#1v101"},
		{name: "R5_insert", first: models.Update, last: models.Insert, n: 3, want: "u1@a#1v101"},
		{name: "R6", first: models.Delete, last: models.Delete, n: 3, want: "d1@a#1v101"},
		{name: "R7", first: models.Delete, last: models.Update, n: 2, want: "u1@a#2v102"},
		{name: "R8", first: models.Delete, last: models.Insert, n: 2, want: "u1@a#2v102"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			first, last := op(tc.first, 1, &v1), op(tc.last, 2, &v2)
			got, ok := oplog.CompressRun(first, last, tc.n)
			if !ok {
				if tc.want != "" {
					t.Fatalf("nothing remains, want %s", tc.want)
				}
				return
			}
			if s := formatRemote([]protocol.Operation{got})[0]; s != tc.want {
				t.Fatalf("got %s, want %s", s, tc.want)
			}
			if first.Command != tc.first || last.Command != tc.last {
				t.Fatal("CompressRun modified its arguments")
			}
		})
	}
}

// fuzzLocal decodes fuzz bytes into a log: data[0] says which rows are gone
// (a bit per row of content types 1 and 2), data[1]&1 reverses the log,
// and each further byte is one operation: command, row 0-3 and content type
// 1, 2 or 9 (untracked, whose rows are never found).
func fuzzLocal(data []byte) (ops []models.Operation, exists func(int64, string) bool) {
	var gone, flags byte
	if len(data) > 0 {
		gone, data = data[0], data[1:]
	}
	if len(data) > 0 {
		flags, data = data[0], data[1:]
	}
	data = data[:min(len(data), 64)]
	for i, b := range data {
		ct := []int64{1, 2, untrackedCT}[(b/12)%3]
		ops = append(ops, models.Operation{
			Order:         int64(3*i + 1),
			RowID:         strconv.Itoa(int(b/3) % 4),
			ContentTypeID: ct,
			Command:       []models.Command{models.Insert, models.Update, models.Delete}[b%3],
		})
	}
	if flags&1 != 0 {
		slices.Reverse(ops)
	}
	exists = func(ct int64, row string) bool {
		if ct == untrackedCT {
			return false
		}
		r, _ := strconv.Atoi(row)
		return gone&(1<<(uint(r)+4*uint(ct-1))) == 0
	}
	return ops, exists
}

func FuzzCompressLocal(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 1, 1, 3, 5})                    // i0 u0 u0 i1 d1
	f.Add([]byte{0x02, 1, 0, 1, 1, 3, 5})                 // the same, reversed, row 1 gone
	f.Add([]byte{0, 0, 2, 0, 2, 1, 0})                    // d i d u i
	f.Add([]byte{0xff, 0, 24, 25, 26, 27, 28, 12, 13, 0}) // untracked and tracked
	f.Add([]byte{0x0f, 0, 1, 0, 2, 0, 1, 2, 1, 0, 4, 3, 5, 9, 10, 11, 14, 13, 12})
	f.Fuzz(func(t *testing.T, data []byte) {
		ops, exists := fuzzLocal(data)
		keep, drop := oplog.CompressLocal(ops, exists, trackedCT)
		checkLocal(t, ops, keep, drop)
		type key struct {
			ct  int64
			row string
		}
		seen := map[key]bool{}
		for _, op := range keep {
			if !trackedCT(op.ContentTypeID) {
				continue
			}
			k := key{op.ContentTypeID, op.RowID}
			if seen[k] {
				t.Fatalf("two operations kept on row %s@%d", op.RowID, op.ContentTypeID)
			}
			seen[k] = true
			if op.Command != models.Delete && !exists(op.ContentTypeID, op.RowID) { // C7
				t.Fatalf("kept %+v whose row is gone", op)
			}
		}
		// Compressing again changes nothing: what one compression keeps,
		// the next keeps too (python's rules lost rows here).
		again, dropped := oplog.CompressLocal(keep, exists, trackedCT)
		if len(dropped) != 0 || !reflect.DeepEqual(again, keep) {
			t.Fatalf("second compression of %v: kept %v, dropped %v", keep, again, dropped)
		}
	})
}

// fuzzRemote decodes fuzz bytes into operations: data[0]&1 reverses them,
// each further byte is one operation: command, row 0-3 and table a, b or c.
func fuzzRemote(data []byte) []protocol.Operation {
	var flags byte
	if len(data) > 0 {
		flags, data = data[0], data[1:]
	}
	data = data[:min(len(data), 64)]
	ops := make([]protocol.Operation, 0, len(data))
	for i, b := range data {
		v := int64(1000 + i)
		ops = append(ops, protocol.Operation{
			Order:     int64(2*i + 1),
			Table:     []string{"a", "b", "c"}[(b/12)%3],
			RowID:     strconv.Itoa(int(b/3) % 4),
			Command:   []models.Command{models.Insert, models.Update, models.Delete}[b%3],
			VersionID: &v,
		})
	}
	if flags&1 != 0 {
		slices.Reverse(ops)
	}
	return ops
}

func FuzzCompressRemote(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 2, 0, 1})          // i d i u
	f.Add([]byte{1, 1, 2, 0, 2})          // u d i d, reversed
	f.Add([]byte{0, 2, 0})                // d i
	f.Add([]byte{0, 0, 1, 2, 2, 0, 2})    // i u d d i d
	f.Add([]byte{1, 2, 0, 1, 14, 12, 26}) // several rows and tables
	f.Fuzz(func(t *testing.T, data []byte) {
		ops := fuzzRemote(data)
		checkRemote(t, ops, oplog.CompressRemote(ops))
	})
}

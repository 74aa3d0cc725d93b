package client

import (
	"fmt"
	"testing"

	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestRenumbered: a refusal's rows follow the moves of the pulls after
// it, in order, only in their own table, sorted and each once.
func TestRenumbered(t *testing.T) {
	e := func(table, pk string) protocol.ScopeEntry { return protocol.ScopeEntry{Table: table, PK: pk} }
	cases := []struct {
		name    string
		entries []protocol.ScopeEntry
		moves   []merge.Move
		want    []protocol.ScopeEntry
	}{
		{"no moves", []protocol.ScopeEntry{e("a", "11")}, nil, []protocol.ScopeEntry{e("a", "11")}},
		{"moved", []protocol.ScopeEntry{e("a", "11"), e("a", "5")},
			[]merge.Move{{Table: "a", From: 11, To: 21}}, []protocol.ScopeEntry{e("a", "21"), e("a", "5")}},
		{"other table", []protocol.ScopeEntry{e("a", "11")},
			[]merge.Move{{Table: "b", From: 11, To: 21}}, []protocol.ScopeEntry{e("a", "11")}},
		{"two pulls", []protocol.ScopeEntry{e("a", "11")},
			[]merge.Move{{Table: "a", From: 11, To: 21}, {Table: "a", From: 21, To: 22}}, []protocol.ScopeEntry{e("a", "22")}},
		{"sorted", []protocol.ScopeEntry{e("a", "11"), e("a", "5"), e("b", "1")},
			[]merge.Move{{Table: "a", From: 11, To: 3}}, []protocol.ScopeEntry{e("a", "3"), e("a", "5"), e("b", "1")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := fmt.Sprint(tc.entries)
			if got := renumbered(tc.entries, tc.moves); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("renumbered: %v, want %v", got, tc.want)
			}
			if fmt.Sprint(tc.entries) != in {
				t.Errorf("renumbered changed its argument to %v", tc.entries)
			}
		})
	}
}

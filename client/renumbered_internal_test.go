package client

import (
	"errors"
	"fmt"
	"testing"

	"github.com/go-dbsync/dbsync"
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

// TestWithScope: a refusal naming its rows by their keys after a pull is
// a new error; the one the push's event carried is left as it was (the
// application may be reading it: a data race before), and the new one
// keeps its sentinels and text.
func TestWithScope(t *testing.T) {
	old := &dbsync.ScopeError{Entries: []protocol.ScopeEntry{{Table: "a", PK: "11"}}}
	err := fmt.Errorf("client: the server refused the push: %w", old)
	err2 := fmt.Errorf("%w: %w", dbsync.ErrPendingChanges, err)
	moved := &dbsync.ScopeError{Entries: []protocol.ScopeEntry{{Table: "a", PK: "21"}}}
	got := withScope(err2, old, moved)
	var se *dbsync.ScopeError
	if !errors.As(got, &se) || se != moved {
		t.Fatalf("errors.As finds %v, want the moved refusal", se)
	}
	if !errors.Is(got, dbsync.ErrPendingChanges) {
		t.Error("the sentinel the error wrapped is lost")
	}
	if want := dbsync.ErrPendingChanges.Error() + ": client: the server refused the push: " + moved.Error(); got.Error() != want {
		t.Errorf("text %q, want %q", got, want)
	}
	if old.Entries[0].PK != "11" {
		t.Errorf("the earlier error changed: %v", old)
	}
	if dbsync.Code(got) != protocol.CodeOutOfScope {
		t.Errorf("code %q", dbsync.Code(got))
	}
}

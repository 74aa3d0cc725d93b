package peer_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/peer"
)

// TestLimitErrorNamesRow: a LimitError names the first row of a page from
// its first bytes, cut anywhere, whatever the order of its fields.
func TestLimitErrorNamesRow(t *testing.T) {
	t.Parallel()
	page, err := json.Marshal(peer.Batch{Changes: []peer.Change{{Table: "notes", ID: "n1", HLC: 1, Node: "x", Row: json.RawMessage(`{"body":"` + strings.Repeat("b", 9000) + `"}`)}}, Last: 3})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, page, table, id string
	}{
		{"a page cut in its row", string(page[:200]), "notes", "n1"},
		{"a whole page", string(page), "notes", "n1"},
		{"fields in another order", `{"last":1,"more":true,"changes":[{"hlc":5,"row":{"a":[1,{"b":2}]},"id":"k","table":"lists"}]}`, "lists", "k"},
		{"cut before the id", `{"changes":[{"table":"notes","i`, "notes", ""},
		{"no changes", `{"last":1}`, "", ""},
		{"not a page", `[1,2]`, "", ""},
		{"an id not a string", `{"changes":[{"table":"notes","id":7}]}`, "notes", ""},
		{"nothing", ``, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := (&peer.LimitError{Limit: "X.Max", Max: 10}).NameRow([]byte(tc.page))
			if e.Table != tc.table || e.ID != tc.id {
				t.Fatalf("named %q %q, want %q %q", e.Table, e.ID, tc.table, tc.id)
			}
			if !errors.Is(e, dbsync.ErrTooLarge) || !strings.Contains(e.Error(), "X.Max (10 bytes)") {
				t.Fatalf("%v: not ErrTooLarge, or the bound not named", e)
			}
		})
	}
}

// FuzzLimitErrorNameRow: the first bytes of a page that passed a bound
// come from the peer, unread past the bound: naming its row never panics
// and reads at most 4 KiB of it.
func FuzzLimitErrorNameRow(f *testing.F) {
	f.Add([]byte(`{"changes":[{"table":"notes","id":"n1","row":{"a":1}}],"last":1}`))
	f.Add([]byte(`{"last":1,"changes":[{"row":"x","id":"k","table":"lists"`))
	f.Add([]byte(`{"changes":[[[[`))
	f.Add([]byte(`{"x":` + strings.Repeat("[", 5000)))
	f.Fuzz(func(t *testing.T, page []byte) {
		e := (&peer.LimitError{Limit: "X.Max", Max: 1}).NameRow(page)
		if len(e.Table)+len(e.ID) > 4<<10 {
			t.Fatalf("named a row of %d bytes from a head of at most 4 KiB", len(e.Table)+len(e.ID))
		}
		_ = e.Error()
	})
}

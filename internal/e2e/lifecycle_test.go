package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/server"
)

// lcExec runs each query (run).
func lcExec(t *testing.T, db bun.IDB, queries ...string) {
	t.Helper()
	for _, q := range queries {
		run(t, db, q)
	}
}

// TestResetKeepsPendingChanges: node A goes offline past the server's
// horizon with pending inserts, updates and deletes; B pushes more; the
// server trims; A's Sync is answered reset_required, resets and pushes.
// Every pending change survives or ends as merge.md's "Reset" section
// says, and A, B and the server converge.
func TestResetKeepsPendingChanges(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		policy   merge.Policy
		explicit bool   // Reset before Sync
		kept     int    // of the 10 rows with pending changes
		lists    string // the lists in the end
	}{
		// A's deletes of rows the server still has are undone (M4).
		{"default", merge.Default, false, 7, "[five-b one-a six-a six-b taken taken-a three two-a]"},
		// Every pending change is kept.
		{"client wins", merge.ClientWins, true, 9, "[one-a six-a six-b taken taken-a two-a]"},
	}
	for _, kind := range dbtest.Kinds {
		for _, tc := range cases {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				testResetKeepsPendingChanges(t, kind, tc.policy, tc.explicit, tc.kept, tc.lists)
			})
		}
	}
}

func testResetKeepsPendingChanges(t *testing.T, kind string, policy merge.Policy, explicit bool, kept int, lists string) {
	ctx := context.Background()
	clk := dbtest.NewClock(time.Now())
	// The server's clock moves days ahead; requests are signed
	// with the real time.
	srv := synctest.NewServer(t, kind, &server.Config{Now: clk.Now, ClockSkew: 100 * time.Hour, NodeHorizon: 24 * time.Hour})
	var hooked []merge.Move // Config.OnMoved: the same moves
	a := synctest.NewClient(t, srv, "a", &client.Config{DefaultPolicy: policy,
		OnMoved: func(_ context.Context, moves []merge.Move) { hooked = append(hooked, moves...) }})
	b := synctest.NewClient(t, srv, "b", nil)
	n1, n2 := uuid.NewString(), uuid.NewString()
	lcExec(t, b.DB,
		"INSERT INTO lists (id, name) VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four'), (5, 'five')",
		"INSERT INTO todos (id, list_id, title) VALUES (1, 1, 't1'), (2, 2, 't2')",
		"INSERT INTO notes (id, body, created, count) VALUES ('"+n1+"', 'n1', '2024-01-01 00:00:00', 0)")
	for _, n := range []*synctest.Client{b, a} {
		if _, err := n.Sync(ctx); err != nil {
			t.Fatalf("%s sync: %v", n.Name, err)
		}
	}

	// A, offline: one change of each kind the merge tells apart.
	lcExec(t, a.DB,
		"UPDATE lists SET name = 'one-a' WHERE id = 1",     // nobody else touched it
		"UPDATE lists SET name = 'two-a' WHERE id = 2",     // B deletes it: M5, kept
		"DELETE FROM lists WHERE id = 3",                   // nobody else touched it: M4
		"DELETE FROM lists WHERE id = 4",                   // B deletes it too: M6
		"DELETE FROM lists WHERE id = 5",                   // B updates it: M4
		"INSERT INTO lists (id, name) VALUES (6, 'six-a')", // B takes key 6: K1
		"INSERT INTO todos (id, list_id, title) VALUES (3, 6, 't3-a')",
		"INSERT INTO lists (id, name) VALUES (7, 'taken')", // B takes the name: U4
		"INSERT INTO notes (id, body, created, count) VALUES ('"+n2+"', 'n2-a', '2024-01-01 00:00:00', 0)",
		"UPDATE notes SET body = 'n1-a' WHERE id = '"+n1+"'") // B updates it too: M3
	// B goes on, and stays live.
	lcExec(t, b.DB,
		"DELETE FROM lists WHERE id IN (2, 4)", // t2 goes with list 2
		"UPDATE lists SET name = 'five-b' WHERE id = 5",
		"INSERT INTO lists (id, name) VALUES (6, 'six-b'), (7, 'taken')",
		"UPDATE notes SET body = 'n1-b' WHERE id = '"+n1+"'")
	if _, err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Advance(25 * time.Hour)
	lcExec(t, b.DB, "UPDATE lists SET name = 'one' WHERE id = 1") // a no-op write: B pushes again
	for range 2 {
		if _, err := b.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := srv.Srv.Trim(ctx)
	if err != nil {
		t.Fatal(err)
	}
	av, err := a.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tr.RetiredNodes != 1 || tr.Floor <= av {
		t.Fatalf("trim %+v does not leave A (version %d) behind", tr, av)
	}
	if _, err := a.Pull(ctx); !errors.Is(err, dbsync.ErrResetRequired) {
		t.Fatalf("A pull: %v, want reset_required", err)
	}

	// U4: the reset refuses, naming A's row, and applies nothing.
	before := synctest.Dump(t, a.DB, a.Reg)
	_, err = a.Sync(ctx)
	var uc *dbsync.UniqueConstraintError
	if !errors.As(err, &uc) || len(uc.Entries) != 1 || uc.Entries[0].Table != "lists" {
		t.Fatalf("A sync: %v, want a unique conflict on A's list", err)
	}
	if d := synctest.Diff(before, synctest.Dump(t, a.DB, a.Reg)); d != "" {
		t.Fatalf("a refused reset changed A:\n%s", d)
	}
	lcExec(t, a.DB, "UPDATE lists SET name = 'taken-a' WHERE name = 'taken'")
	var reset *client.ResetResult
	if explicit {
		// The documented path without Sync: Reset, then Push.
		if reset, err = a.Reset(ctx); err != nil {
			t.Fatalf("A reset after renaming: %v", err)
		}
	}
	res, err := a.Sync(ctx)
	if err != nil {
		t.Fatalf("A sync after renaming: %v", err)
	}
	if explicit != (res.Reset == nil) || len(res.Pushes) != 1 {
		t.Fatalf("A sync: %s, want a push (and a reset unless A reset first)", res)
	}
	if !explicit {
		reset = res.Reset
	}
	if reset.Pending != 10 || reset.Kept != kept {
		t.Errorf("reset kept %d of %d pending rows, want %d of 10", reset.Kept, reset.Pending, kept)
	}
	want := map[string]int{merge.KindUpdateUpdate: 2, merge.KindDeleteUpdate: 1, merge.KindUpdateDelete: 2,
		merge.KindDeleteDelete: 1, merge.KindRenumber: 2}
	for k, n := range want {
		if reset.Conflicts[k] != n {
			t.Errorf("conflicts %v, want %s×%d", reset.Conflicts, k, n)
		}
	}
	// The moves are reported, each to the key its row holds now.
	if len(reset.Moved) != want[merge.KindRenumber] {
		t.Errorf("reset reports moves %v, want %d", reset.Moved, want[merge.KindRenumber])
	}
	if !slices.Equal(hooked, reset.Moved) {
		t.Errorf("Config.OnMoved received %v, the reset reports %v", hooked, reset.Moved)
	}
	for _, mv := range reset.Moved {
		var n int
		if err := a.DB.NewRaw("SELECT count(*) FROM ? WHERE id = ?", bun.Ident(mv.Table), mv.To).Scan(ctx, &n); err != nil || n != 1 {
			t.Errorf("move %v: %d rows at its new key (%v)", mv, n, err)
		}
	}
	if _, err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	server := synctest.Dump(t, srv.DB, srv.Reg)
	for _, n := range []*synctest.Client{a, b} {
		if d := synctest.Diff(server, synctest.Dump(t, n.DB, n.Reg)); d != "" {
			t.Fatalf("%s and the server differ:\n%s", n.Name, d)
		}
	}
	for _, c := range []struct{ q, want string }{
		{"SELECT name FROM lists ORDER BY name", lists},
		{"SELECT l.name || '/' || t.title FROM todos t JOIN lists l ON l.id = t.list_id ORDER BY t.title", "[one-a/t1 six-a/t3-a]"},
		{"SELECT body FROM notes ORDER BY body", "[n1-a n2-a]"},
	} {
		if got := relStrings(t, srv.DB, c.q); fmt.Sprint(got) != c.want {
			t.Errorf("%s: %v, want %s", c.q, got, c.want)
		}
	}
}

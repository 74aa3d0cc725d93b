package e2e_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/merge"
)

// TestRenumberedKeyGoesStale pins what the README (Conflicts) warns of:
// node a inserts a todo and keeps the key the insert returned; node b's
// insert takes that key on the server first, and a's next sync moves a's
// row to another key (merge.md K1) and brings b's row under the old one.
// a's later update by the key it kept then changes b's row, and that is
// what every database holds: the application must map such a key through
// the moves the sync reports (PullResult.Moved, and Config.OnMoved), or
// read it again after a sync (or use UUID keys).
func TestRenumberedKeyGoesStale(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := synctest.NewServer(t, kind, nil)
			var hooked []merge.Move // Config.OnMoved: the same moves
			a := synctest.NewClient(t, s, "a", &client.Config{OnMoved: func(_ context.Context, moves []merge.Move) { hooked = append(hooked, moves...) }})
			b := synctest.NewClient(t, s, "b", nil)
			run(t, a.DB, "INSERT INTO lists (id, name) VALUES (1, 'home')")
			mustSync(t, a)
			mustSync(t, b)
			res, err := a.DB.ExecContext(ctx, "INSERT INTO todos (list_id, title) VALUES (1, 'a-new')")
			if err != nil {
				t.Fatal(err)
			}
			kept, err := res.LastInsertId()
			if err != nil {
				t.Fatal(err)
			}
			run(t, b.DB, "INSERT INTO todos (list_id, title) VALUES (1, 'b-new')")
			mustSync(t, b)
			// a's row moves; b's arrives under the kept key. The sync
			// says so, for the application to map the key it kept.
			sr, err := a.Sync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var moved int64
			if err := a.DB.NewRaw("SELECT id FROM todos WHERE title = 'a-new'").Scan(ctx, &moved); err != nil {
				t.Fatal(err)
			}
			if moved == kept {
				t.Fatalf("a's row kept its key %d: no renumbering to show", kept)
			}
			var reported []merge.Move
			for _, pl := range sr.Pulls {
				reported = append(reported, pl.Moved...)
			}
			if want := []merge.Move{{Table: "todos", From: kept, To: moved}}; !slices.Equal(reported, want) {
				t.Fatalf("the sync reports moves %v, want %v", reported, want)
			}
			if !slices.Equal(hooked, reported) {
				t.Fatalf("Config.OnMoved received %v, the sync reports %v", hooked, reported)
			}
			run(t, a.DB, "UPDATE todos SET title = 'a-new edited' WHERE id = ?", kept)
			mustSync(t, a)
			mustSync(t, b)
			want := map[int64]string{kept: "a-new edited", moved: "a-new"}
			for _, db := range []*synctest.Client{a, b} {
				var rows []struct {
					ID    int64
					Title string
				}
				if err := db.DB.NewRaw("SELECT id, title FROM todos").Scan(ctx, &rows); err != nil {
					t.Fatal(err)
				}
				if len(rows) != len(want) {
					t.Fatalf("%s holds %v, want %v", db.Name, rows, want)
				}
				for _, r := range rows {
					if want[r.ID] != r.Title {
						t.Fatalf("%s holds %v, want %v (b's row overwritten by the stale key)", db.Name, rows, want)
					}
				}
			}
			if d := synctest.Diff(synctest.Dump(t, s.DB, s.Reg), synctest.Dump(t, b.DB, b.Reg)); d != "" {
				t.Fatalf("server and b differ:\n%s", d)
			}
		})
	}
}

// TestWatchReportsMoves: Watch runs its syncs itself, so their results
// never reach the application; Config.OnMoved does. Node a inserts two
// todos offline, b's inserts take their keys on the server first, and a
// runs Watch: OnMoved receives a's moves once (both rows, to the keys
// they hold). (TestRenumberedKeyGoesStale and TestResetKeepsPendingChanges
// check it against Sync's and Reset's results.)
func TestWatchReportsMoves(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := synctest.NewServer(t, kind, nil)
			reported := make(chan []merge.Move, 8)
			a := synctest.NewClient(t, s, "a", &client.Config{OnMoved: func(_ context.Context, moves []merge.Move) { reported <- moves }})
			b := synctest.NewClient(t, s, "b", nil)
			run(t, a.DB, "INSERT INTO lists (id, name) VALUES (1, 'home')")
			mustSync(t, a)
			mustSync(t, b)
			var kept []int64
			for _, title := range []string{"a-1", "a-2"} {
				res, err := a.DB.ExecContext(ctx, "INSERT INTO todos (list_id, title) VALUES (1, ?)", title)
				if err != nil {
					t.Fatal(err)
				}
				k, err := res.LastInsertId()
				if err != nil {
					t.Fatal(err)
				}
				kept = append(kept, k)
			}
			run(t, b.DB, "INSERT INTO todos (list_id, title) VALUES (1, 'b-1'), (1, 'b-2')")
			mustSync(t, b)
			wctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- a.Watch(wctx, &client.WatchOptions{Wait: time.Second}) }()
			var got []merge.Move
			select {
			case got = <-reported:
			case <-time.After(30 * time.Second):
				t.Fatal("Watch synced no moves to OnMoved in 30 s")
			}
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("watch: %v", err)
			}
			var want []merge.Move
			for i, title := range []string{"a-1", "a-2"} {
				var now int64
				if err := a.DB.NewRaw("SELECT id FROM todos WHERE title = ?", title).Scan(ctx, &now); err != nil {
					t.Fatal(err)
				}
				want = append(want, merge.Move{Table: "todos", From: kept[i], To: now})
			}
			if !slices.Equal(got, want) {
				t.Fatalf("OnMoved received %v, want %v", got, want)
			}
			select {
			case more := <-reported:
				t.Fatalf("OnMoved received %v again", more)
			default:
			}
		})
	}
}

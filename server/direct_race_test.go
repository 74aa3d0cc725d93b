package server_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestDirectWriteDuringPush: a direct write to the server's database (an
// admin tool, on a connection of its own) made while a push is applied,
// after the push sealed the direct writes and checked its base, to a row
// the push writes. It must not be lost under the push nor logged out of
// order: on PostgreSQL it waits for the push to commit (the push locked
// the row before it sealed), then applies over it, sealed in a later
// version; on SQLite the database's single writer orders them.
// Before, on PostgreSQL, the push overwrote the direct write and its
// operation was sealed after the push's: an update lost, and a delete
// re-created by the push but pulled as deleted (nodes and server
// diverged). The push is rebased (based on version 1, after version 2
// changed another row) or fast-forward, sent in one request or in chunks.
// A chunked commit does not lock its rows first, and an insert has no row
// to lock: there the direct write commits first, and the push is refused
// (pull_needed) instead of overwriting it.
func TestDirectWriteDuringPush(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, tc := range []struct {
			name, write string
			cmd         models.Command // the push's, to lists id
			id          int64
			want        int // rows of lists id at the end
		}{
			{"update", "UPDATE lists SET name = 'admin' WHERE id = 2", models.Update, 2, 1},
			{"delete", "DELETE FROM lists WHERE id = 2", models.Update, 2, 0},
			{"insert", "INSERT INTO lists (id, name) VALUES (4, 'admin')", models.Insert, 4, 1},
		} {
			for _, v := range []struct{ rebased, chunked bool }{{true, false}, {false, false}, {true, true}, {false, true}} {
				rebased := v.rebased
				t.Run(fmt.Sprintf("%s/%s/rebased=%v/chunked=%v", kind, tc.name, rebased, v.chunked), func(t *testing.T) {
					t.Parallel()
					direct := newDirectWrite(tc.write)
					f := newFixture(t, kind, &server.Config{BeforePush: direct.hook})
					direct.db = f.DB
					a, b, c := f.register(), f.register(), f.register()
					if _, err := f.Srv.Push(ctx, a.id, newPush(nil).list(models.Insert, 1, "one").list(models.Insert, 2, "two").Ptr()); err != nil {
						t.Fatal(err)
					}
					base := ptr(1)
					if rebased {
						if _, err := f.Srv.Push(ctx, a.id, newPush(ptr(1)).list(models.Insert, 3, "three").Ptr()); err != nil {
							t.Fatal(err)
						}
					} else if _, err := f.Srv.Push(ctx, b.id, newPush(ptr(1)).list(models.Update, 1, "b").Ptr()); err != nil {
						t.Fatal(err)
					} else {
						base = ptr(2)
					}
					direct.armed = true
					req := newPush(base).list(tc.cmd, tc.id, "node-b").Ptr()
					var resp *protocol.PushResponse
					var err error
					if v.chunked {
						resp, err = f.commitChunked(b, req)
					} else {
						resp, err = f.Srv.Push(ctx, b.id, req)
					}
					// A direct insert that waited for the push (SQLite's
					// single writer) fails on the key the push took: the
					// application is told, and the push's row stays.
					wantName := "admin"
					if derr := <-direct.done; derr != nil {
						if tc.cmd != models.Insert || err != nil || !strings.Contains(strings.ToLower(derr.Error()), "unique") {
							t.Fatalf("direct write: %v (push: %v)", derr, err)
						}
						wantName = "node-b"
					}
					if err != nil && !errors.Is(err, dbsync.ErrPullNeeded) {
						t.Fatalf("push: %v", err)
					}
					if _, err := f.Srv.Seal(ctx); err != nil {
						t.Fatal(err)
					}
					var n int
					var name string
					if err := f.DB.NewRaw("SELECT COUNT(*), COALESCE(MAX(name), '') FROM lists WHERE id = ?", tc.id).Scan(ctx, &n, &name); err != nil {
						t.Fatal(err)
					}
					if n != tc.want || (n == 1 && name != wantName) {
						t.Fatalf("the server holds %d rows of lists %d (%q) after the push (%v) and the direct write: the direct write was lost", n, tc.id, name, err)
					}
					// What a node holding the version before the push pulls
					// agrees with the server: the row's last operation.
					from := *base
					if resp != nil {
						from = resp.NewVersionID - 1
					}
					var last models.Command
					for _, op := range pulledOps(mustPull(t, f.Srv, c.id, &protocol.PullRequest{LatestVersionID: ptr(from)})) {
						if op.Table == "lists" && op.RowID == fmt.Sprint(tc.id) {
							last = op.Command
						}
					}
					if (last == models.Delete) != (n == 0) {
						t.Fatalf("the server holds %d rows of lists %d, and a pull's last operation of it is %q", n, tc.id, last)
					}
				})
			}
		}
	}
}

// TestPushWaitsForAppTransaction: an application's read-modify-write
// (PostgreSQL: SELECT ... FOR UPDATE, then UPDATE; SQLite: the write lock)
// of a row a push writes, while the push comes. The push waits for the
// row, sees the application's write sealed and answers pull_needed (its
// base is older); neither side deadlocks, and the application's write
// stays.
func TestPushWaitsForAppTransaction(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			a, b := f.register(), f.register()
			if _, err := f.Srv.Push(ctx, a.id, newPush(nil).list(models.Insert, 1, "one").list(models.Insert, 2, "two").Ptr()); err != nil {
				t.Fatal(err)
			}
			tx, err := f.DB.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			first := "SELECT name FROM lists WHERE id = 2 FOR UPDATE"
			if kind == dbtest.KindSQLite {
				first = "UPDATE lists SET name = name WHERE id = 2"
			}
			if _, err := tx.ExecContext(ctx, first); err != nil {
				t.Fatal(err)
			}
			pushed := make(chan error, 1)
			go func() {
				_, err := f.Srv.Push(ctx, b.id, newPush(ptr(1)).list(models.Update, 2, "node-b").Ptr())
				pushed <- err
			}()
			time.Sleep(200 * time.Millisecond) // the push waits for the row
			if _, err := tx.ExecContext(ctx, "UPDATE lists SET name = 'admin' WHERE id = 2"); err != nil {
				t.Fatalf("application update: %v", err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatalf("application commit: %v", err)
			}
			if err := <-pushed; !errors.Is(err, dbsync.ErrPullNeeded) {
				t.Fatalf("push: %v, want ErrPullNeeded", err)
			}
			var name string
			if err := f.DB.NewRaw("SELECT name FROM lists WHERE id = 2").Scan(ctx, &name); err != nil || name != "admin" {
				t.Fatalf("lists 2 is %q (%v), want the application's write", name, err)
			}
		})
	}
}

// TestBeforePushWritesPushRow: a BeforePush hook writing, in the push's
// transaction, a row the push writes too is the application's to order:
// the push is accepted, not refused as overwriting a direct write (it
// would be refused again at every retry). So is a hook writing in a
// savepoint (bun's nested RunInTx): a subtransaction of the push's, whose
// rows carry their own transaction id.
func TestBeforePushWritesPushRow(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, v := range []struct{ chunked, savepoint bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
			chunked := v.chunked
			t.Run(fmt.Sprintf("%s/chunked=%v/savepoint=%v", kind, chunked, v.savepoint), func(t *testing.T) {
				t.Parallel()
				armed := false
				hook := func(ctx context.Context, tx bun.Tx, info *server.PushInfo) error {
					if !armed {
						return nil
					}
					if v.savepoint {
						return tx.RunInTx(ctx, nil, func(ctx context.Context, sp bun.Tx) error {
							_, err := sp.ExecContext(ctx, "UPDATE lists SET name = 'hook' WHERE id = 2")
							return err
						})
					}
					_, err := tx.ExecContext(ctx, "UPDATE lists SET name = 'hook' WHERE id = 2")
					return err
				}
				f := newFixture(t, kind, &server.Config{BeforePush: hook})
				a := f.register()
				if _, err := f.Srv.Push(ctx, a.id, newPush(nil).list(models.Insert, 1, "one").list(models.Insert, 2, "two").Ptr()); err != nil {
					t.Fatal(err)
				}
				armed = true
				req := newPush(ptr(1)).list(models.Update, 2, "node").Ptr()
				var err error
				if chunked {
					_, err = f.commitChunked(a, req)
				} else {
					_, err = f.Srv.Push(ctx, a.id, req)
				}
				if err != nil {
					t.Fatalf("push with a BeforePush writing its row: %v", err)
				}
			})
		}
	}
}

// TestDirectChildDuringChunkedDelete: a direct insert of a child of a row
// a push deletes, committed while the push is applied, after its orphan
// check and before its delete. The child must not be lost silently (the
// push's delete setting off the foreign key's ON DELETE CASCADE, with
// capture off, merge.md V4): the direct insert waits for the push and
// fails, or the push is refused and the child stays. A push in one
// request locks the parent first (lockRows); a chunked commit did not,
// and its delete cascaded to the child, which the overwritten check,
// looking only at the version's own rows, did not see.
func TestDirectChildDuringChunkedDelete(t *testing.T) {
	t.Parallel()
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			t.Parallel()
			var f *fixture
			armed := false
			direct := make(chan error, 1)
			hook := func(ctx context.Context, tx bun.Tx, info *server.PushInfo) error {
				if !armed {
					return nil
				}
				armed = false
				go func() {
					// After the push's orphan checks, while it deletes
					// the todos (slowed below), before it deletes list 1.
					time.Sleep(300 * time.Millisecond)
					_, err := f.DB.ExecContext(context.Background(), "INSERT INTO todos (id, list_id, title, done) VALUES (9, 1, 'admin', false)")
					direct <- err
				}()
				return nil
			}
			f = newFixture(t, dbtest.KindPostgres, &server.Config{BeforePush: hook})
			for _, q := range []string{
				`CREATE FUNCTION slow_push_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('dbsync.capture', true) = 'off' THEN PERFORM pg_sleep(1); END IF;
  RETURN OLD;
END $$`,
				"CREATE TRIGGER slow_push_delete BEFORE DELETE ON todos FOR EACH ROW EXECUTE FUNCTION slow_push_delete()",
			} {
				if _, err := f.DB.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			a, b := f.register(), f.register()
			if _, err := f.Srv.Push(ctx, a.id, newPush(nil).list(models.Insert, 1, "one").todo(models.Insert, 1, 1, "milk").Ptr()); err != nil {
				t.Fatal(err)
			}
			armed = true
			req := newPush(ptr(1)).del("todos", 1).del("lists", 1).Ptr()
			var err error
			if chunked {
				_, err = f.commitChunked(b, req)
			} else {
				_, err = f.Srv.Push(ctx, b.id, req)
			}
			derr := <-direct
			var n int
			if qerr := f.DB.NewRaw("SELECT COUNT(*) FROM todos WHERE id = 9").Scan(ctx, &n); qerr != nil {
				t.Fatal(qerr)
			}
			if derr == nil && n == 0 {
				t.Fatalf("the direct insert of todo 9 committed, the push (%v) deleted list 1, and todo 9 is gone: the direct write was lost", err)
			}
		})
	}
}

// TestDirectDeleteOfParentDuringPush: a direct write to the server's
// database deletes a list after a fast-forward push sealed the direct
// writes and checked its base, before the push writes a todo of that
// list (the push locks the rows it writes, not the rows they reference).
// The push's reference check fails on a change the node could not have
// seen: that is pull_needed (the pull brings the delete, D1 settles it),
// as for a rebased push, not a foreign_key refusal, which an application
// takes for its own error and gives its todo up. Before, PostgreSQL
// answered foreign_key; SQLite's single writer orders them.
func TestDirectDeleteOfParentDuringPush(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			direct := newDirectWrite("DELETE FROM lists WHERE id = 1")
			f := newFixture(t, kind, &server.Config{BeforePush: direct.hook})
			direct.db = f.DB
			a, b := f.register(), f.register()
			if _, err := f.Srv.Push(ctx, a.id, newPush(nil).list(models.Insert, 1, "one").Ptr()); err != nil {
				t.Fatal(err)
			}
			direct.armed = true
			_, err := f.Srv.Push(ctx, b.id, newPush(ptr(1)).todo(models.Insert, 1, 1, "node-b").Ptr())
			if derr := <-direct.done; derr != nil {
				t.Fatalf("direct write: %v", derr)
			}
			if err != nil && !errors.Is(err, dbsync.ErrPullNeeded) {
				t.Fatalf("push: %v, want success or ErrPullNeeded", err)
			}
		})
	}
}

// TestDirectWriteAndUniqueRefusal: a push, based on the latest version,
// renames list 1 to a name another list holds on the server, and a direct
// write commits while it is applied. When the direct write gave the name
// to its holder (after the push sealed the direct writes), the node could
// not have seen it: pull_needed, the pull brings it and U1 settles it.
// When the direct write touched another row, the holder's name is in a
// version the node holds: the refusal is the unique conflict itself, which
// the application resolves. Before, any direct write pending turned the
// refusal into pull_needed, and a server application writing all the time
// kept a node's Sync pulling and pushing until MaxSyncRounds, the conflict
// never reported as one.
func TestDirectWriteAndUniqueRefusal(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, direct string
		stale        bool // the direct write made the conflict
	}{
		{"holder written meanwhile", "INSERT INTO lists (id, name) VALUES (7, 'three')", true},
		{"another row written meanwhile", "UPDATE lists SET name = 'deux' WHERE id = 2", false},
	}
	for _, kind := range dbtest.Kinds {
		for _, tc := range cases {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				direct := newDirectWrite(tc.direct)
				f := newFixture(t, kind, &server.Config{BeforePush: direct.hook})
				direct.db = f.DB
				a, b := f.register(), f.register()
				seed := newPush(nil).list(models.Insert, 1, "one").list(models.Insert, 2, "two")
				if !tc.stale {
					seed = seed.list(models.Insert, 3, "three")
				}
				resp, err := f.Srv.Push(ctx, a.id, seed.Ptr())
				if err != nil {
					t.Fatal(err)
				}
				direct.armed = true
				_, err = f.Srv.Push(ctx, b.id, newPush(ptr(resp.NewVersionID)).list(models.Update, 1, "three").Ptr())
				derr := <-direct.done
				var uc *dbsync.UniqueConstraintError
				switch {
				case tc.stale && err == nil:
					// SQLite: the push first, then the direct insert,
					// refused for the name the push gave list 1.
					if derr == nil || kind == dbtest.KindPostgres {
						t.Fatalf("push accepted, direct insert: %v; want the push refused on PostgreSQL, the insert on SQLite", derr)
					}
				case tc.stale && !errors.Is(err, dbsync.ErrPullNeeded):
					t.Fatalf("push: %v, want ErrPullNeeded: the holder's name came from a direct write the node could not see", err)
				case !tc.stale && (!errors.As(err, &uc) || errors.Is(err, dbsync.ErrPullNeeded)):
					t.Fatalf("push: %v, want the unique conflict itself: the holder's name is in a version the node holds", err)
				case !tc.stale && derr != nil:
					t.Fatalf("direct write: %v", derr)
				}
			})
		}
	}
}

// TestDirectWriteBeforePullSnapshot: a direct write commits after a pull
// sealed the direct writes, before the pull reads its snapshot. The pull
// must not send its rows without its operations: a swap of unique values
// (the direct write gives a row the value it takes from another) would
// reach a node as the one row's new value, without the other's change
// (merge.md U3: merge.ErrInconsistent, the node stuck until the swap's
// version is pulled with them). The pull seals it and reads again. Before,
// it sent the row of the direct write, sealed in a later version.
func TestDirectWriteBeforePullSnapshot(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			a, b := f.register(), f.register()
			if _, err := f.Srv.Push(ctx, a.id, newPush(nil).list(models.Insert, 1, "one").Ptr()); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Srv.Push(ctx, a.id, newPush(ptr(1)).list(models.Update, 1, "uno").Ptr()); err != nil {
				t.Fatal(err)
			}
			armed := true
			f.Srv.SetPullSealed(func() {
				if armed {
					armed = false
					if _, err := f.DB.ExecContext(ctx, "UPDATE lists SET name = 'admin' WHERE id = 1"); err != nil {
						t.Error(err)
					}
				}
			})
			msgs := mustPull(t, f.Srv, b.id, &protocol.PullRequest{LatestVersionID: ptr(1)})
			latest := *msgs[0].LatestVersionID
			if v, err := f.Srv.Seal(ctx); err != nil {
				t.Fatal(err)
			} else if v != 0 {
				t.Fatalf("the pull answered version %d with the rows of a direct write it did not seal (sealed after it, in version %d)", latest, v)
			}
		})
	}
}

// TestPushDeadlockIsBusy: an application's transaction on the server's
// database locks a row a push writes, the push locks another first (rows
// in key order) and waits, then the application asks for the push's row.
// PostgreSQL fails one of the two (deadlock detected, SQLSTATE 40P01),
// here the push, which waited first: nothing of it was written, and the
// node is to retry later (dialect.IsBusy: 503 busy over HTTP), not told
// of an internal error (500). The application's write stays.
func TestPushDeadlockIsBusy(t *testing.T) {
	t.Parallel()
	f := newFixture(t, dbtest.KindPostgres, nil)
	a, b := f.register(), f.register()
	if _, err := f.Srv.Push(ctx, a.id, newPush(nil).list(models.Insert, 1, "one").list(models.Insert, 2, "two").Ptr()); err != nil {
		t.Fatal(err)
	}
	tx, err := f.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "UPDATE lists SET name = 'app2' WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	pushed := make(chan error, 1)
	go func() {
		_, err := f.Srv.Push(ctx, b.id, newPush(ptr(1)).list(models.Update, 1, "b1").list(models.Update, 2, "b2").Ptr())
		pushed <- err
	}()
	time.Sleep(200 * time.Millisecond) // the push holds lists 1, waits for lists 2
	if _, err := tx.ExecContext(ctx, "UPDATE lists SET name = 'app1' WHERE id = 1"); err != nil {
		t.Fatalf("application update: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-pushed; !dialect.IsBusy(err) {
		t.Fatalf("push: %v, want a busy database (retry later)", err)
	}
}

// directWrite is a BeforePush hook that, armed, runs a direct write to
// the server's database (query, outside the push's transaction) once and
// gives it 300 ms to commit: on PostgreSQL it does unless the push holds
// its row; on SQLite it waits for the push. Its error arrives on done.
type directWrite struct {
	query string
	db    *bun.DB // the server's, set once the fixture exists
	armed bool
	done  chan error
}

func newDirectWrite(query string) *directWrite {
	return &directWrite{query: query, done: make(chan error, 1)}
}

func (d *directWrite) hook(ctx context.Context, tx bun.Tx, info *server.PushInfo) error {
	if !d.armed {
		return nil
	}
	d.armed = false
	go func() {
		_, err := d.db.ExecContext(context.Background(), d.query)
		d.done <- err
	}()
	select {
	case err := <-d.done:
		d.done <- err
	case <-time.After(300 * time.Millisecond):
	}
	return nil
}

// TestDirectWriteSealedMeanwhile: as TestDirectWriteAndUniqueRefusal's
// holder case and TestDirectDeleteOfParentDuringPush on PostgreSQL, but a
// pull of another node seals the direct write after the push's
// transaction failed, before the push looks for pending writes: the
// holder's name (the list's delete) is in a version the node does not
// hold, so the refusal is still pull_needed. Before, only pending
// (unsealed) operations counted, and the node was told of a unique
// conflict or a foreign_key refusal it could not see (SQLite's single
// writer orders them).
func TestDirectWriteSealedMeanwhile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, direct string
		seed, push   *push
	}{
		{"holder of the unique value", "INSERT INTO lists (id, name) VALUES (7, 'three')",
			newPush(nil).list(models.Insert, 1, "one").list(models.Insert, 2, "two"),
			newPush(ptr(1)).list(models.Update, 1, "three")},
		{"parent deleted", "DELETE FROM lists WHERE id = 1",
			newPush(nil).list(models.Insert, 1, "one"),
			newPush(ptr(1)).todo(models.Insert, 1, 1, "node-b")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			direct := newDirectWrite(tc.direct)
			f := newFixture(t, dbtest.KindPostgres, &server.Config{BeforePush: direct.hook})
			direct.db = f.DB
			a, b, c := f.register(), f.register(), f.register()
			resp, err := f.Srv.Push(ctx, a.id, tc.seed.Ptr())
			if err != nil || resp.NewVersionID != 1 {
				t.Fatalf("seed push: %v, %+v; want version 1", err, resp)
			}
			var sealed error
			f.Srv.SetPushFailed(func() {
				_, sealed = pull(t, f.Srv, c.id, &protocol.PullRequest{})
			})
			direct.armed = true
			_, err = f.Srv.Push(ctx, b.id, tc.push.Ptr())
			if derr := <-direct.done; derr != nil {
				t.Fatalf("direct write: %v", derr)
			}
			if sealed != nil {
				t.Fatalf("pull of c: %v", sealed)
			}
			if f.latest() <= resp.NewVersionID {
				t.Fatalf("latest version %d: the pull sealed nothing", f.latest())
			}
			if !errors.Is(err, dbsync.ErrPullNeeded) {
				t.Fatalf("push: %v, want ErrPullNeeded: the direct write came in a version the node does not hold", err)
			}
		})
	}
}

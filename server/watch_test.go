package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// hangGuard bounds a wait that only a bug makes long (a waiter never
// woken); it is not a measure of speed.
const hangGuard = 2 * time.Minute

// watch runs srv.Watch in a goroutine, once it waits.
func watch(t *testing.T, srv *server.Server, after int64) <-chan *protocol.WatchResponse {
	t.Helper()
	out := make(chan *protocol.WatchResponse, 1)
	n := srv.Watching()
	go func() {
		resp, err := srv.Watch(context.Background(), 0, &protocol.WatchRequest{After: after}, time.Hour)
		if err != nil {
			t.Errorf("watch: %v", err)
		}
		out <- resp
	}()
	until(t, "the watch waits", func() bool { return srv.Watching() > n })
	return out
}

// until waits for cond, failing after hangGuard.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(hangGuard); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: never", what)
		}
	}
}

func woken(t *testing.T, ch <-chan *protocol.WatchResponse, want int64) {
	t.Helper()
	select {
	case resp := <-ch:
		if resp == nil || !resp.Changed || resp.LatestVersionID != want {
			t.Fatalf("watch = %+v, want version %d", resp, want)
		}
	case <-time.After(hangGuard):
		t.Fatal("the watch was never woken")
	}
}

// TestWatchListenerReconnects: on PostgreSQL, when the connection a
// Server listens on is cut (pg_terminate_backend), the Server listens
// again, and a version committed by another server process still wakes
// its waiters; Close ends its listening connection. (SQLite servers do
// not listen: the waking of their waiters is in handlers' TestWatchWakes.)
func TestWatchListenerReconnects(t *testing.T) {
	ctx := context.Background()
	u := dbtest.PostgresSchemaURL(t)
	open := func(create bool) *server.Server {
		db, err := dbtest.OpenPostgres(u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		if create {
			if err := testmodels.CreateSchema(ctx, db); err != nil {
				t.Fatal(err)
			}
		}
		srv, _ := synctest.NewHandler(t, db, testmodels.All(), &server.Config{WatchPoll: time.Hour})
		return srv
	}
	a, b := open(true), open(false)
	// listeners returns the backends listening for the schema.
	listeners := func() []int {
		var pids []int
		err := a.DB().NewRaw("SELECT pid FROM pg_stat_activity WHERE application_name = 'dbsync feed dbsync_v_' || md5(current_schema())").Scan(ctx, &pids)
		if err != nil {
			t.Fatal(err)
		}
		return pids
	}
	write := func(name string) int64 {
		t.Helper()
		if _, err := a.DB().NewInsert().Model(&testmodels.List{Name: name}).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		v, err := a.Seal(ctx)
		if err != nil || v == 0 {
			t.Fatalf("seal: %d %v", v, err)
		}
		return v
	}

	ch := watch(t, b, 0)
	until(t, "b listens", func() bool { return len(listeners()) == 1 })
	woken(t, ch, write("one"))

	old := listeners()[0]
	if _, err := a.DB().ExecContext(ctx, "SELECT pg_terminate_backend(?)", old); err != nil {
		t.Fatal(err)
	}
	until(t, "b listens again", func() bool { l := listeners(); return len(l) == 1 && l[0] != old })
	ch = watch(t, b, 1)
	woken(t, ch, write("two"))

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	until(t, "b's listening connection is closed", func() bool { return len(listeners()) == 0 })
}

// TestWatchPolls: a Server that cannot listen (here: its pool allows one
// connection, which a listener would hold) polls the latest version every
// Config.WatchPoll, so a version committed by another server process
// still wakes its waiters. (On SQLite a Server does not poll.)
func TestWatchPolls(t *testing.T) {
	ctx := context.Background()
	u := dbtest.PostgresSchemaURL(t)
	open := func(create bool, conns int) *server.Server {
		db, err := dbtest.OpenPostgres(u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		if create {
			if err := testmodels.CreateSchema(ctx, db); err != nil {
				t.Fatal(err)
			}
		}
		srv, _ := synctest.NewHandler(t, db, testmodels.All(), &server.Config{WatchPoll: 20 * time.Millisecond})
		db.SetMaxOpenConns(conns) // after New, whose install needs more
		return srv
	}
	a, b := open(true, 4), open(false, 1)
	for i, name := range []string{"one", "two"} {
		ch := watch(t, b, int64(i))
		if _, err := a.DB().NewInsert().Model(&testmodels.List{Name: name}).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		v, err := a.Seal(ctx)
		if err != nil || v != int64(i+1) {
			t.Fatalf("seal: %d %v", v, err)
		}
		woken(t, ch, v)
	}
}

// TestWatchPull: WatchPull answers a new version with the pull from
// after= (what Pull answers a request from there asking no parents),
// and with Watch's answer alone when pull is not asked, nothing changed,
// or the server holds nodes to scopes (a pull would need the node's held
// keys).
func TestWatchPull(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			plain := newFixture(t, kind, nil)
			writer, reader := plain.register(), plain.register()
			if _, err := plain.Srv.Push(ctx, writer.id, newPush(nil).list(models.Insert, 1, "home").todo(models.Insert, 1, 1, "t1").Ptr()); err != nil {
				t.Fatal(err)
			}
			scoped := newScopedFixture(t, kind)
			owner := scoped.registerAs("ann")
			if _, err := scoped.DB.NewInsert().Model(&testmodels.Project{OwnerID: "ann", Name: "p"}).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := scoped.Srv.Seal(ctx); err != nil {
				t.Fatal(err)
			}
			cases := []struct {
				name   string
				srv    *server.Server
				node   int64
				req    protocol.WatchRequest
				pulled bool
			}{
				{"a new version", plain.Srv, reader.id, protocol.WatchRequest{After: 0, Pull: true}, true},
				{"a chunk size", plain.Srv, reader.id, protocol.WatchRequest{After: 0, Pull: true, ChunkSize: 1}, true},
				{"pull not asked", plain.Srv, reader.id, protocol.WatchRequest{After: 0}, false},
				{"nothing new", plain.Srv, reader.id, protocol.WatchRequest{After: 1, Pull: true, Wait: time.Millisecond}, false},
				{"scopes", scoped.Srv, owner.id, protocol.WatchRequest{After: 0, Pull: true}, false},
			}
			for _, c := range cases {
				var got []*protocol.Message
				resp, pulled, err := c.srv.WatchPull(ctx, c.node, &c.req, time.Hour, func(m *protocol.Message) error {
					got = append(got, m)
					return nil
				})
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if pulled != c.pulled || resp == nil || resp.Changed != (c.req.After < 1) {
					var vs, ops []string
					_ = plain.DB.NewRaw("SELECT version_id || ' node ' || COALESCE(node_id::text, '-') || ' ' || created::text FROM sync_versions ORDER BY 1").Scan(ctx, &vs)
					_ = plain.DB.NewRaw(`SELECT "order" || ' v' || COALESCE(version_id::text, '-') || ' ' || command || ' ' || content_type_id || ':' || row_id FROM sync_operations ORDER BY "order"`).Scan(ctx, &ops)
					t.Fatalf("%s: pulled %v, %+v; want pulled %v (the database holds versions %q, operations %q)", c.name, pulled, resp, c.pulled, vs, ops)
				}
				if !pulled {
					if len(got) != 0 {
						t.Fatalf("%s: %d lines emitted without a pull", c.name, len(got))
					}
					continue
				}
				after := c.req.After
				want := mustPull(t, c.srv, c.node, &protocol.PullRequest{LatestVersionID: &after, ChunkSize: c.req.ChunkSize, Deleted: map[string][]string{}})
				if g, w := messagesJSON(t, got), messagesJSON(t, want); g != w || want[len(want)-1].OperationCount == 0 {
					t.Fatalf("%s: answered\n%s\nwant what Pull answers\n%s", c.name, g, w)
				}
			}
		})
	}
}

// TestWatchLostNotification: on PostgreSQL, a version whose notification
// never reaches the Server's listener, on a connection that stays alive
// (a pooler in transaction mode, such as PgBouncer's, delivers none),
// still wakes its waiters within Config.WatchPoll: the listener's check
// after a quiet WatchPoll reads the latest version. It used to only ping
// the connection, and the feed, trusting its listener, answered every
// watch "nothing changed" at the end of its wait, for ever: a node that
// only watches never got the other processes' versions. (SQLite servers
// do not listen.)
func TestWatchLostNotification(t *testing.T) {
	ctx := context.Background()
	db, err := dbtest.OpenPostgres(dbtest.PostgresSchemaURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := testmodels.CreateSchema(ctx, db); err != nil {
		t.Fatal(err)
	}
	srv, _ := synctest.NewHandler(t, db, testmodels.All(), &server.Config{WatchPoll: 50 * time.Millisecond})
	// A version committed through the Server, notified: its waiter is
	// woken, so the listener is up and the feed trusts it.
	ch := watch(t, srv, 0)
	if _, err := db.NewInsert().Model(&testmodels.List{Name: "one"}).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := srv.Seal(ctx)
	if err != nil || v != 1 {
		t.Fatalf("seal: %d %v", v, err)
	}
	woken(t, ch, 1)
	// A version whose notification is lost.
	if _, err := db.NewInsert().Model(&models.Version{VersionID: 2, Created: time.Now().UTC()}).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Watch(ctx, 0, &protocol.WatchRequest{After: 1}, 5*time.Second)
	if err != nil || !resp.Changed || resp.LatestVersionID != 2 {
		t.Fatalf("watch after a version whose notification was lost: %+v %v, want version 2", resp, err)
	}
}

// TestWatchVersionsLost: when the database loses versions the feed had
// seen committed (restored from a backup, failed over to a standby that
// lacked them), Watch answers a node holding one at once with the
// database's latest version, below the node's: the node holds versions
// the server lost, and must repair (protocol.md, GET BASE/watch); so is
// a waiter parked before the loss, once the feed reads the database. The
// feed used to keep the version it had seen, answering "nothing changed"
// at the node's own version at the end of each wait, so a watching node
// never learnt it; it pulled from its version once the server's new
// versions passed it, never getting those numbered at or below it.
func TestWatchVersionsLost(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, &server.Config{WatchPoll: 20 * time.Millisecond})
			n := f.register()
			for i := range int64(3) {
				var base *int64
				if i > 0 {
					base = ptr(i)
				}
				if _, err := f.Srv.Push(ctx, n.id, newPush(base).list(models.Insert, i+1, fmt.Sprint("list ", i+1)).Ptr()); err != nil {
					t.Fatal(err)
				}
			}
			// The feed knows version 3 (on PostgreSQL, it listens).
			if resp, err := f.Srv.Watch(ctx, n.id, &protocol.WatchRequest{After: 3}, time.Millisecond); err != nil || resp.LatestVersionID != 3 {
				t.Fatalf("watch from the latest version: %+v %v", resp, err)
			}
			parked := watch(t, f.Srv, 3)
			// The database loses versions 2 and 3, as one restored from a
			// backup taken at version 1 (its rows stay: the feed reads
			// versions only).
			for _, q := range []string{"DELETE FROM sync_operations WHERE version_id > 1", "DELETE FROM sync_pushes WHERE version_id > 1",
				"DELETE FROM sync_versions WHERE version_id > 1"} {
				if _, err := f.DB.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			resp, err := f.Srv.Watch(ctx, n.id, &protocol.WatchRequest{After: 3}, hangGuard)
			if err != nil || resp.Changed || resp.LatestVersionID != 1 {
				t.Fatalf("watch from version 3 after the database lost it: %+v %v, want version 1, unchanged", resp, err)
			}
			select {
			case resp := <-parked:
				if resp == nil || resp.Changed || resp.LatestVersionID != 1 {
					t.Fatalf("watch parked from version 3 before the database lost it: %+v, want version 1, unchanged", resp)
				}
			case <-time.After(hangGuard):
				t.Fatal("the watch parked before the loss was never answered")
			}
			// New versions wake from the database's latest on.
			ch := watch(t, f.Srv, 1)
			if _, err := f.Srv.Push(ctx, n.id, newPush(ptr(1)).list(models.Insert, 4, "list 4").Ptr()); err != nil {
				t.Fatal(err)
			}
			woken(t, ch, 2)
		})
	}
}

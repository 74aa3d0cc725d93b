package client_test

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestPoliciesNameTrackedTables: Config.Policies is keyed by table name; a
// key that names no tracked table (a typo, the model's Go name) would leave
// that table under the default policy without a word, so New refuses it,
// naming the key.
func TestPoliciesNameTrackedTables(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := synctest.ClientSQLite(t, "testmodels", testmodels.CreateSchema, synctest.Models())
	reg, err := dbsync.Track(db, synctest.Models()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"todo", "Todo", "todos "} {
		_, err := client.New(ctx, db, reg, &client.Config{URL: "http://127.0.0.1:1/sync",
			Policies: map[string]merge.Policy{"lists": merge.ServerWins, key: merge.ServerWins}})
		if err == nil || !strings.Contains(err.Error(), "Config.Policies") || !strings.Contains(err.Error(), `"`+key+`"`) {
			t.Fatalf("Policies key %q: New gave %v, want an error naming Config.Policies and the key", key, err)
		}
	}
	if _, err := client.New(ctx, db, reg, &client.Config{URL: "http://127.0.0.1:1/sync",
		Policies: map[string]merge.Policy{"lists": merge.ServerWins, "todos": merge.LastWriteWins("title")}}); err != nil {
		t.Fatalf("Policies of tracked tables: %v", err)
	}
}

// TestSpoolDirChecked: New refuses a Config.SpoolDir that is not an
// existing directory, before it changes the database, with an error
// naming the field (wrapping fs.ErrNotExist for a missing one); an empty
// one (os.TempDir) and a directory are accepted. Before, a wrong one was
// found only when a pull's answer first went past 256 KiB.
func TestSpoolDirChecked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, c := range synctest.SpoolDirCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			db := synctest.NodeDB(t, dbtest.KindSQLite, "testmodels", testmodels.CreateSchema)
			reg, err := dbsync.Track(db, synctest.Models()...)
			if err != nil {
				t.Fatal(err)
			}
			cl, err := client.New(ctx, db, reg, &client.Config{URL: "http://127.0.0.1:1/sync", SpoolDir: c.Dir})
			if !c.Bad {
				if err != nil || cl == nil {
					t.Fatalf("SpoolDir %q: %v", c.Dir, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "client: Config.SpoolDir") {
				t.Fatalf("SpoolDir %q: %v, want an error naming client: Config.SpoolDir", c.Dir, err)
			}
			if c.NotExist != errors.Is(err, fs.ErrNotExist) {
				t.Errorf("SpoolDir %q: errors.Is(%v, fs.ErrNotExist) = %v, want %v", c.Dir, err, !c.NotExist, c.NotExist)
			}
			var logs int
			if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'").Scan(&logs); err != nil {
				t.Fatal(err)
			}
			if logs != 0 {
				t.Error("New installed capture triggers before refusing its SpoolDir")
			}
		})
	}
}

// TestQueryPushOnlyTable: a push-only table is never sent back, queries
// included. Query and QueryAll say so, naming the table, without asking
// the server (which answers any table it does not send "unknown table",
// a puzzle for a table the node tracks).
func TestQueryPushOnlyTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	models := []any{(*testmodels.List)(nil), dbsync.PushOnly((*testmodels.Todo)(nil))}
	var queries atomic.Int64
	srv := synctest.NewServerWith(t, synctest.ServerDB(t, dbtest.KindSQLite, "testmodels-pushonly", testmodels.CreateSchema, models),
		testmodels.CreateSchema, models, synctest.OpenConfig(&server.Config{OnEvent: func(_ context.Context, e dbsync.Event) {
			if e.Op == "query" {
				queries.Add(1)
			}
		}}))
	a := synctest.NewClientWith(t, srv, "a", synctest.ClientDB(t, dbtest.KindSQLite, "testmodels-pushonly", testmodels.CreateSchema, models),
		testmodels.CreateSchema, models, nil)
	if _, err := a.Query(ctx, nil); !errors.Is(err, dbsync.ErrBadRequest) {
		t.Fatalf("Query without a request: %v, want ErrBadRequest", err)
	}
	_, err := a.Query(ctx, &protocol.QueryRequest{Table: "todos"})
	if !errors.Is(err, dbsync.ErrUnknownTable) || !strings.Contains(err.Error(), "push-only") {
		t.Fatalf("Query of a push-only table: %v, want ErrUnknownTable saying push-only", err)
	}
	_, err = client.QueryAll[testmodels.Todo](ctx, a.Client, nil)
	if !errors.Is(err, dbsync.ErrUnknownTable) || !strings.Contains(err.Error(), "push-only") {
		t.Fatalf("QueryAll of a push-only table: %v, want ErrUnknownTable saying push-only", err)
	}
	if n := queries.Load(); n != 0 {
		t.Fatalf("the server answered %d queries, want none", n)
	}
	if _, err := client.QueryAll[testmodels.List](ctx, a.Client, nil); err != nil {
		t.Fatalf("QueryAll of a pulled table: %v", err)
	}
}

// TestSQLiteForeignKeysOff: a SQLite node opened without foreign key
// enforcement (no _pragma=foreign_keys(1) in its DSN) deletes a parent
// without its ON DELETE CASCADE children, and the server refuses that
// push at every sync ("… still references"), a node stuck for a DSN.
// New refuses such a database when tracked tables reference each other,
// saying what to add; one without references between tracked tables is
// accepted.
func TestSQLiteForeignKeysOff(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	open := func(t *testing.T) *bun.DB {
		db := dbtest.SQLiteWithout(t, "foreign_keys")
		if err := testmodels.CreateSchema(ctx, db); err != nil {
			t.Fatal(err)
		}
		return db
	}
	db := open(t)
	reg, err := dbsync.Track(db, synctest.Models()...)
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.New(ctx, db, reg, &client.Config{URL: "http://127.0.0.1:1/sync"})
	if !errors.Is(err, dbsync.ErrDatabaseSettings) || !strings.Contains(err.Error(), "foreign_keys(1)") {
		t.Fatalf("New on SQLite with foreign keys off: %v, want ErrDatabaseSettings naming foreign_keys(1)", err)
	}
	// No reference between the tracked tables: nothing to cascade.
	db = open(t)
	reg, err = dbsync.Track(db, (*testmodels.List)(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.New(ctx, db, reg, &client.Config{URL: "http://127.0.0.1:1/sync"}); err != nil {
		t.Fatalf("New on SQLite with foreign keys off, no references: %v", err)
	}
}

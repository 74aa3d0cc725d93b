package client_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/models"
)

// beforeHook runs fn before each query of a bun.DB.
type beforeHook struct {
	fn func(ctx context.Context, q string)
}

func (h beforeHook) BeforeQuery(ctx context.Context, e *bun.QueryEvent) context.Context {
	h.fn(ctx, e.Query)
	return ctx
}
func (h beforeHook) AfterQuery(context.Context, *bun.QueryEvent) {}

// newClientAt creates another client.Client on db (a Client created in
// another process), once, just before the first query of db containing
// marker runs.
func newClientAt(t *testing.T, db *bun.DB, marker string) *atomic.Bool {
	t.Helper()
	reg, err := dbsync.Track(db, synctest.Models()...)
	if err != nil {
		t.Fatal(err)
	}
	var armed, created atomic.Bool
	armed.Store(true)
	//lint:ignore SA1019 the hook must reach the handle a Client already holds (WithQueryHook copies it)
	db.AddQueryHook(beforeHook{fn: func(ctx context.Context, q string) {
		if !strings.Contains(q, marker) || !armed.CompareAndSwap(true, false) {
			return
		}
		if _, err := client.New(context.WithoutCancel(ctx), db, reg, &client.Config{URL: "http://b.invalid/sync"}); err != nil {
			t.Errorf("b: %v", err)
			return
		}
		created.Store(true)
	}})
	return &created
}

// TestOwnerCheckedInMigrate (a reviewer's; it failed before the check
// moved into the transaction, oplog.InstallOptions.Check): Client.Migrate
// checked the owner in lock only; oplog.Migrate's transaction (fn, capture re-install, untracked
// triggers dropped) does not check it again. A Client created between
// the check and the transaction does not stop it.
func TestOwnerCheckedInMigrate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := synctest.NewTemplateServer(t, dbtest.KindSQLite, nil)
	a := synctest.NewTemplateClient(t, srv, "a", nil)
	created := newClientAt(t, a.DB, "recursive_triggers")
	err := a.Migrate(ctx, func(ctx context.Context, tx bun.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO lists (id, name) VALUES (99, 'from a stale client')")
		return err
	})
	if !created.Load() {
		t.Fatal("b was not created")
	}
	if !errors.Is(err, dbsync.ErrNodeInUse) {
		t.Fatalf("a.Migrate after b was created: %v, want ErrNodeInUse (a's migration ran: %d rows)", err, count(t, a.DB, "lists", "id = 99"))
	}
}

// olderReleaseClient returns a node database holding every test model
// and a client.Client of an older release on it, tracking lists and
// todos only (a newer Client tracks notes too).
func olderReleaseClient(t *testing.T) (*bun.DB, *client.Client) {
	t.Helper()
	db := synctest.ClientDB(t, dbtest.KindSQLite, "testmodels", testmodels.CreateSchema, testmodels.All())
	old, err := dbsync.Track(db, (*testmodels.List)(nil), (*testmodels.Todo)(nil))
	if err != nil {
		t.Fatal(err)
	}
	a, err := client.New(context.Background(), db, old, &client.Config{URL: "http://a.invalid/sync"})
	if err != nil {
		t.Fatal(err)
	}
	return db, a
}

// TestOwnerMigrateKeepsNewerCapture (a reviewer's; it failed before
// oplog.InstallOptions.Check): the harm of an unchecked Migrate
// transaction. A Client of an older release (tracking lists and todos)
// migrates; a Client of the new release (notes too) is created in
// another process between Migrate's owner check and its transaction.
// The older one's re-install drops the notes' capture triggers (not in
// its registry): the owner's writes to notes are no longer logged.
func TestOwnerMigrateKeepsNewerCapture(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, a := olderReleaseClient(t)
	created := newClientAt(t, db, "recursive_triggers") // b tracks every model, notes too
	err := a.Migrate(ctx, func(ctx context.Context, tx bun.Tx) error { return nil })
	if !created.Load() {
		t.Fatal("b was not created")
	}
	exec(t, db, "INSERT INTO notes (id, body, created) VALUES ('8d2b6c1e-3b1f-4f0e-9a51-0a1b2c3d4e5f', 'b', CURRENT_TIMESTAMP)")
	if n := count(t, db, "sync_operations", "version_id IS NULL"); n != 1 {
		t.Fatalf("b's insert into notes logged %d operations, want 1 (a.Migrate after b was created: %v)", n, err)
	}
}

// TestOwnerCheckedInEnsureCapture (a reviewer's; it failed before
// oplog.InstallOptions.Check): Push re-installs missing capture triggers
// (ensureCapture, oplog.Install with its registry) after its owner check,
// in a transaction that did not check it: a Client of an
// older release doing so after the new release's Client was created
// drops the capture of the tables only the new one tracks.
func TestOwnerCheckedInEnsureCapture(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, a := olderReleaseClient(t)
	if _, err := db.NewInsert().Model(&models.Node{NodeID: 1, Registered: time.Now().UTC(), Secret: "s"}).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	// A table rebuilt outside Migrate: its capture triggers are gone.
	var trig []string
	if err := db.NewRaw("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'lists'").Scan(ctx, &trig); err != nil || len(trig) == 0 {
		t.Fatalf("lists triggers %v: %v", trig, err)
	}
	exec(t, db, "DROP TRIGGER \""+trig[0]+"\"")
	created := newClientAt(t, db, "recursive_triggers") // b tracks notes too
	_, err := a.Push(ctx)
	if !created.Load() {
		t.Fatalf("b was not created (push: %v)", err)
	}
	exec(t, db, "INSERT INTO notes (id, body, created) VALUES ('8d2b6c1e-3b1f-4f0e-9a51-0a1b2c3d4e5f', 'b', CURRENT_TIMESTAMP)")
	if n := count(t, db, "sync_operations", "version_id IS NULL"); n != 1 {
		t.Fatalf("b's insert into notes logged %d operations, want 1 (a.Push after b was created: %v)", n, err)
	}
}

package server_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/models"
)

func projectRow(id int64, name string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"id": id, "owner_id": "ann", "name": name})
	return b
}

func taskRow(id, project int64, title string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"id": id, "project_id": project, "title": title})
	return b
}

func newProjectFixture(t *testing.T) *fixture {
	s := synctest.NewServerWith(t, synctest.ServerOn(t, dbtest.KindPostgres, testmodels.CreateScoped, testmodels.Scoped()), testmodels.CreateScoped, testmodels.Scoped(), nil)
	return &fixture{t: t, kind: dbtest.KindPostgres, Server: s}
}

// TestPushNotBlockedByChildInsert: an application transaction that
// inserted a task of project 1 (its foreign key check holds project 1 in
// KEY SHARE) and is still open. A push updating project 1's name (no key
// change, no unique column) needs no lock conflicting with KEY SHARE:
// lockRows takes NO KEY UPDATE on rows written (FOR UPDATE made the push
// wait for the application's transaction, holding the version lock, and
// every other push with it). PostgreSQL: SQLite has no row locks.
func TestPushNotBlockedByChildInsert(t *testing.T) {
	f := newProjectFixture(t)
	a, b, c := f.register(), f.register(), f.register()
	if _, err := f.Srv.Push(ctx, a.id, newPush(nil).op("projects", "1", models.Insert, projectRow(1, "p")).Ptr()); err != nil {
		t.Fatal(err)
	}
	tx, err := f.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "INSERT INTO tasks (id, project_id, title) VALUES (11, 1, 'app')"); err != nil {
		t.Fatal(err)
	}
	pushed := make(chan error, 2)
	go func() {
		_, err := f.Srv.Push(ctx, b.id, newPush(ptr(1)).op("projects", "1", models.Update, projectRow(1, "renamed")).Ptr())
		pushed <- err
	}()
	time.Sleep(200 * time.Millisecond)
	go func() {
		_, err := f.Srv.Push(ctx, c.id, newPush(ptr(1)).op("projects", "2", models.Insert, projectRow(2, "other")).Ptr())
		pushed <- err
	}()
	waiting := 0
	timeout := time.After(3 * time.Second)
	for i := 0; i < 2; i++ {
		select {
		case err := <-pushed:
			if err != nil {
				t.Errorf("push: %v", err)
			}
		case <-timeout:
			waiting = 2 - i
			i = 2
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < waiting; i++ {
		<-pushed
	}
	if waiting > 0 {
		t.Fatalf("%d of 2 pushes still waiting after 3 s for an open application transaction that only inserted a child of project 1", waiting)
	}
}

// TestPushNoDeadlockWithChildInsert: an application transaction
// updates task 10 and then inserts a task of project 1; a push updating
// project 1 and task 10 comes between. Before lockRows (and with FOR NO
// KEY UPDATE) the application's insert goes through and the push waits
// for it; with FOR UPDATE the two deadlock and PostgreSQL aborts one.
func TestPushNoDeadlockWithChildInsert(t *testing.T) {
	f := newProjectFixture(t)
	a, b := f.register(), f.register()
	if _, err := f.Srv.Push(ctx, a.id, newPush(nil).op("projects", "1", models.Insert, projectRow(1, "p")).
		op("tasks", "10", models.Insert, taskRow(10, 1, "t")).Ptr()); err != nil {
		t.Fatal(err)
	}
	tx, err := f.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "UPDATE tasks SET title = 'app' WHERE id = 10"); err != nil {
		t.Fatal(err)
	}
	pushed := make(chan error, 1)
	go func() {
		_, err := f.Srv.Push(ctx, b.id, newPush(ptr(1)).op("projects", "1", models.Update, projectRow(1, "renamed")).
			op("tasks", "10", models.Update, taskRow(10, 1, "node")).Ptr())
		pushed <- err
	}()
	time.Sleep(300 * time.Millisecond) // the push locked project 1, waits for task 10
	_, ierr := tx.ExecContext(ctx, "INSERT INTO tasks (id, project_id, title) VALUES (11, 1, 'app')")
	var cerr error
	if ierr == nil {
		cerr = tx.Commit()
	} else {
		_ = tx.Rollback()
	}
	perr := <-pushed
	if ierr != nil || cerr != nil || (perr != nil && !errors.Is(perr, dbsync.ErrPullNeeded)) {
		t.Fatalf("application insert: %v; commit: %v; push: %v", ierr, cerr, perr)
	}
}

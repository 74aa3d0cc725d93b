package e2e_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/dbtest"
)

// TestPullLockNoDeadlock: on a PostgreSQL node, a pull's lock on the log
// and the tracked tables (LockForMerge) must not deadlock with ordinary
// application transactions: one that first runs a statement on a tracked
// table that logs nothing (an update changing no tracked column) and then
// writes another, and one that locks a row (SELECT ... FOR UPDATE) the
// pull then changes, and updates it. Neither the application nor the
// pull may fail: the pull waits for the application's transaction.
func TestPullLockNoDeadlock(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		delay       time.Duration // before the second statement
		first, then func(e *mrEnv) (string, []any)
	}{
		{"noop_update_then_write", 500 * time.Millisecond,
			func(e *mrEnv) (string, []any) {
				return "UPDATE mr_parents SET name = name WHERE id = ?", []any{e.kind.arg(e.keys["P3"])}
			},
			func(e *mrEnv) (string, []any) {
				return "UPDATE mr_children SET title = 'c2-b' WHERE id = ?", []any{e.kind.arg(e.keys["C2"])}
			}},
		{"select_for_update_then_update", 500 * time.Millisecond,
			func(e *mrEnv) (string, []any) {
				return "SELECT id FROM mr_parents WHERE id = ? FOR UPDATE", []any{e.kind.arg(e.keys["P1"])}
			},
			func(e *mrEnv) (string, []any) {
				return "UPDATE mr_parents SET val = val + 1 WHERE id = ?", []any{e.kind.arg(e.keys["P1"])}
			}},
	}
	// The application's second statement after the pull's deadlock check
	// (deadlock_timeout, 1 s): the application is the victim then.
	late := cases[0]
	late.name, late.delay = "noop_update_then_write_late", 1500*time.Millisecond
	cases = append(cases, late)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			kind := mrKinds[0]
			e := &mrEnv{t: t, ctx: context.Background(), kind: kind, server: dbtest.KindPostgres, nodes: dbtest.KindPostgres,
				keys: map[string]string{}, syms: map[string]string{}}
			e.start(nil)
			e.seed()
			e.rename(e.a.DB, "P1", "p1-a")
			e.sync(e.a)

			tx, err := e.b.DB.BeginTx(e.ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			q, args := c.first(e)
			if _, err := tx.ExecContext(e.ctx, q, args...); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := e.b.Pull(e.ctx)
				done <- err
			}()
			time.Sleep(c.delay) // the pull takes its locks, or waits for them
			q, args = c.then(e)
			_, appErr := tx.ExecContext(e.ctx, q, args...)
			if appErr == nil {
				appErr = tx.Commit()
			}
			pullErr := <-done
			if appErr != nil {
				t.Errorf("the application's transaction failed: %v", appErr)
			}
			if pullErr != nil {
				t.Errorf("the pull failed: %v", pullErr)
			}
		})
	}
}

package oplog_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/oplog"
)

type rollItem1 struct {
	bun.BaseModel `bun:"table:roll_items"`

	ID    int64  `bun:"id,pk,autoincrement"`
	Title string `bun:"title,notnull"`
}

type rollItem2 struct {
	bun.BaseModel `bun:"table:roll_items"`

	ID    int64   `bun:"id,pk,autoincrement"`
	Title string  `bun:"title,notnull"`
	Note  *string `bun:"note"`
}

// createRollItems creates roll_items with an integer key of a sequence,
// a title, and more columns.
func createRollItems(t *testing.T, db bun.IDB, kind, more string) {
	t.Helper()
	key := "INTEGER PRIMARY KEY AUTOINCREMENT"
	if kind == dbtest.KindPostgres {
		key = "BIGSERIAL PRIMARY KEY"
	}
	if _, err := db.ExecContext(context.Background(), "CREATE TABLE roll_items (id "+key+", title TEXT NOT NULL"+more+")"); err != nil {
		t.Fatal(err)
	}
}

// A server process of a new release starts (Install re-creates the
// capture triggers of a table a migration gave a column) while another
// process on the database pushes: the push holds the table and asks for
// the log, Install holds the log (its indexes) and asks for the table.
// PostgreSQL fails one of the two with a deadlock; Install, nothing of
// it committed, runs again and succeeds, and the push goes through.
func TestInstallRetriesDeadlock(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := dbtest.Open(t, kind)
			createRollItems(t, db, kind, "")
			if _, err := db.ExecContext(ctx, "INSERT INTO roll_items (title) VALUES ('one')"); err != nil {
				t.Fatal(err)
			}
			reg1, err := dbsync.Track(db, (*rollItem1)(nil))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := oplog.Install(ctx, db, reg1, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, "ALTER TABLE roll_items ADD COLUMN note TEXT"); err != nil {
				t.Fatal(err)
			}
			reg2, err := dbsync.Track(db, (*rollItem2)(nil))
			if err != nil {
				t.Fatal(err)
			}
			var push bun.Tx
			if kind == dbtest.KindPostgres {
				// The other process's push: it holds the table.
				if push, err = db.BeginTx(ctx, nil); err != nil {
					t.Fatal(err)
				}
				defer func() { _ = push.Rollback() }()
				if _, err := push.ExecContext(ctx, "LOCK TABLE roll_items IN ROW EXCLUSIVE MODE"); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan error, 1)
			go func() {
				_, err := oplog.Install(ctx, db, reg2, nil)
				done <- err
			}()
			if kind == dbtest.KindPostgres {
				// Install waits for the table, holding the log.
				for deadline := time.Now().Add(10 * time.Second); ; {
					var waiting int
					if err := db.NewRaw("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'roll_items' AND c.relnamespace = current_schema()::regnamespace AND NOT l.granted").Scan(ctx, &waiting); err != nil {
						t.Fatal(err)
					}
					if waiting > 0 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("Install does not wait for the table")
					}
					time.Sleep(10 * time.Millisecond)
				}
				// The push logs its rows.
				if _, err := push.ExecContext(ctx, "LOCK TABLE sync_operations IN ROW EXCLUSIVE MODE"); err != nil {
					t.Logf("push: %v", err)
					_ = push.Rollback()
				} else if err := push.Commit(); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Install: %v, want it to succeed", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Install hangs")
			}
			// The capture is release 2's: an update of the new column alone
			// is logged.
			if _, err := db.ExecContext(ctx, "UPDATE roll_items SET note = 'n'"); err != nil {
				t.Fatal(err)
			}
			var ops []string
			if err := db.NewRaw(`SELECT command FROM sync_operations ORDER BY "order"`).Scan(ctx, &ops); err != nil {
				t.Fatal(err)
			}
			if len(ops) == 0 || ops[len(ops)-1] != "u" {
				t.Fatalf("log %v, want the update of note logged", ops)
			}
		})
	}
}

// An install whose model lacks columns the installed capture triggers
// compared (a rolling upgrade's earlier release started again after the
// later one) narrows what an update must change to be logged: it warns,
// naming the columns. Installing the same model again, or a wider one,
// does not.
func TestInstallWarnsNarrowedCapture(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := dbtest.Open(t, kind)
			createRollItems(t, db, kind, ", note TEXT")
			for i, step := range []struct {
				model any
				warn  bool
			}{
				{(*rollItem2)(nil), false},
				{(*rollItem1)(nil), true},
				{(*rollItem1)(nil), false},
				{(*rollItem2)(nil), false},
			} {
				reg, err := dbsync.Track(db, step.model)
				if err != nil {
					t.Fatal(err)
				}
				var buf bytes.Buffer
				if _, err := oplog.Install(ctx, db, reg, &oplog.InstallOptions{Logger: slog.New(slog.NewTextHandler(&buf, nil))}); err != nil {
					t.Fatal(err)
				}
				got := strings.Contains(buf.String(), "compare fewer columns")
				if got != step.warn || got && !strings.Contains(buf.String(), "columns=[note]") {
					t.Errorf("install %d (%T): warned %v, want %v; log:\n%s", i, step.model, got, step.warn, buf.String())
				}
			}
		})
	}
}

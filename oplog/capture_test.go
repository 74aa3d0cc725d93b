package oplog_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
	"github.com/go-dbsync/dbsync/protocol"
)

type bundle struct {
	db  *bun.DB
	reg *dbsync.Registry
}

func setup(t *testing.T, db *bun.DB) *bundle {
	t.Helper()
	ctx := t.Context()
	if err := testmodels.CreateSchema(ctx, db); err != nil {
		t.Fatal(err)
	}
	reg, err := dbsync.Track(db, testmodels.All()...)
	if err != nil {
		t.Fatal(err)
	}
	reg, err = oplog.Install(ctx, db, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{db: db, reg: reg}
}

// logged returns the operations log as "table:command:row[:version]",
// oldest first.
func (b *bundle) logged(t *testing.T) []string {
	t.Helper()
	var ops []models.Operation
	if err := b.db.NewSelect().Model(&ops).OrderExpr(`"order"`).Scan(t.Context()); err != nil {
		t.Fatal(err)
	}
	out := make([]string, 0, len(ops))
	for _, op := range ops {
		s := fmt.Sprintf("%s:%s:%s", b.reg.ByContentType(op.ContentTypeID).Name, op.Command, op.RowID)
		if op.VersionID != nil {
			s += fmt.Sprintf(":v%d", *op.VersionID)
		}
		out = append(out, s)
	}
	return out
}

func (b *bundle) clear(t *testing.T) {
	t.Helper()
	if _, err := b.db.NewDelete().Model((*models.Operation)(nil)).Where("1 = 1").Exec(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func (b *bundle) seed(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	lists := []testmodels.List{{Name: "home"}, {Name: "work"}}
	if _, err := b.db.NewInsert().Model(&lists).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	todos := []testmodels.Todo{{ListID: 1, Title: "a"}, {ListID: 1, Title: "b"}, {ListID: 2, Title: "c"}}
	if _, err := b.db.NewInsert().Model(&todos).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	b.clear(t)
}

func sameSet(got, want []string) bool {
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	return slices.Equal(g, w)
}

// TestCapture checks that every way of writing a tracked table is logged,
// in the same transaction, on both databases.
func TestCapture(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		run  func(ctx context.Context, db bun.IDB) error
		want []string
		// ordered: the log must list want in this order (else as a set, as
		// cascades fire in a different order on each database)
		ordered bool
	}{
		{
			name: "ModelInsert",
			run: func(ctx context.Context, db bun.IDB) error {
				_, err := db.NewInsert().Model(&testmodels.List{Name: "new"}).Exec(ctx)
				return err
			},
			want: []string{"lists:i:3"}, ordered: true,
		},
		{
			name: "SliceInsert",
			run: func(ctx context.Context, db bun.IDB) error {
				todos := []testmodels.Todo{{ListID: 2, Title: "x"}, {ListID: 2, Title: "y"}}
				_, err := db.NewInsert().Model(&todos).Exec(ctx)
				return err
			},
			want: []string{"todos:i:4", "todos:i:5"}, ordered: true,
		},
		{
			name: "ModelUpdateWherePK",
			run: func(ctx context.Context, db bun.IDB) error {
				_, err := db.NewUpdate().Model(&testmodels.Todo{ID: 2, ListID: 1, Title: "b2"}).WherePK().Exec(ctx)
				return err
			},
			want: []string{"todos:u:2"}, ordered: true,
		},
		{
			name: "BulkUpdate",
			run: func(ctx context.Context, db bun.IDB) error {
				todos := []testmodels.Todo{{ID: 1, ListID: 1, Title: "A", Done: true}, {ID: 3, ListID: 2, Title: "C"}}
				_, err := db.NewUpdate().Model(&todos).Column("title", "done").Bulk().Exec(ctx)
				return err
			},
			want: []string{"todos:u:1", "todos:u:3"},
		},
		{
			name: "WhereOnlyUpdate",
			run: func(ctx context.Context, db bun.IDB) error {
				_, err := db.NewUpdate().Model((*testmodels.Todo)(nil)).Set("done = ?", true).Where("list_id = ?", 1).Exec(ctx)
				return err
			},
			want: []string{"todos:u:1", "todos:u:2"},
		},
		{
			// An update that changes no tracked column is not logged: it
			// would carry the node's stale values over other nodes' edits.
			name: "UpdateChangingNothing",
			run: func(ctx context.Context, db bun.IDB) error {
				_, err := db.ExecContext(ctx, "UPDATE todos SET title = title, done = done, list_id = list_id")
				return err
			},
			want: []string{},
		},
		{
			name: "UpdateChangingSomeRows",
			run: func(ctx context.Context, db bun.IDB) error {
				_, err := db.ExecContext(ctx, "UPDATE todos SET title = 'b'")
				return err
			},
			want: []string{"todos:u:1", "todos:u:3"},
		},
		{
			name: "UpdateOfAColumnTheModelLacks",
			run: func(ctx context.Context, db bun.IDB) error {
				if _, err := db.ExecContext(ctx, "ALTER TABLE todos ADD COLUMN viewed INTEGER"); err != nil {
					return err
				}
				_, err := db.ExecContext(ctx, "UPDATE todos SET viewed = 1")
				return err
			},
			want: []string{},
		},
		{
			// Every class of column: the same value is no change (JSON,
			// compared as text on PostgreSQL, bytes, NULL), another is.
			name: "UpdateOfEachClass",
			run: func(ctx context.Context, db bun.IDB) error {
				score := 2.5
				n := &testmodels.Note{ID: uuid.MustParse("6f9619ff-8b86-d011-b42d-00c04fc964ff"), Body: "x",
					Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Data: []byte{1, 2}, Score: &score,
					Meta: json.RawMessage(`{"a":1}`)}
				if _, err := db.NewInsert().Model(n).Exec(ctx); err != nil {
					return err
				}
				if _, err := db.NewUpdate().Model(n).WherePK().Exec(ctx); err != nil { // the same values
					return err
				}
				for _, set := range []string{"meta = '{\"a\":2}'", "tag = 'new'", "score = 3", "data = NULL", "count = 7",
					"created = created", "body = 'X'"} {
					if _, err := db.ExecContext(ctx, "UPDATE notes SET "+set); err != nil {
						return err
					}
				}
				return nil
			},
			want: []string{
				"notes:i:6f9619ff-8b86-d011-b42d-00c04fc964ff",
				"notes:u:6f9619ff-8b86-d011-b42d-00c04fc964ff",
				"notes:u:6f9619ff-8b86-d011-b42d-00c04fc964ff",
				"notes:u:6f9619ff-8b86-d011-b42d-00c04fc964ff",
				"notes:u:6f9619ff-8b86-d011-b42d-00c04fc964ff",
				"notes:u:6f9619ff-8b86-d011-b42d-00c04fc964ff",
				"notes:u:6f9619ff-8b86-d011-b42d-00c04fc964ff",
			},
			ordered: true,
		},
		{
			name: "WhereOnlyDelete",
			run: func(ctx context.Context, db bun.IDB) error {
				_, err := db.NewDelete().Model((*testmodels.Todo)(nil)).Where("title IN (?)", bun.List([]string{"a", "c"})).Exec(ctx)
				return err
			},
			want: []string{"todos:d:1", "todos:d:3"},
		},
		{
			name: "TableOnlyUpdate",
			run: func(ctx context.Context, db bun.IDB) error {
				_, err := db.NewUpdate().Table("lists").Set("name = name || '!'").Where("id = 2").Exec(ctx)
				return err
			},
			want: []string{"lists:u:2"}, ordered: true,
		},
		{
			name: "RawExec",
			run: func(ctx context.Context, db bun.IDB) error {
				if _, err := db.ExecContext(ctx, "INSERT INTO lists (name) VALUES ('raw')"); err != nil {
					return err
				}
				if _, err := db.ExecContext(ctx, "UPDATE todos SET title = 'raw' WHERE id = 3"); err != nil {
					return err
				}
				_, err := db.ExecContext(ctx, "DELETE FROM todos WHERE id = 2")
				return err
			},
			want: []string{"lists:i:3", "todos:u:3", "todos:d:2"}, ordered: true,
		},
		{
			name: "NewRaw",
			run: func(ctx context.Context, db bun.IDB) error {
				_, err := db.NewRaw("UPDATE todos SET done = ? WHERE id > ?", true, 0).Exec(ctx)
				return err
			},
			want: []string{"todos:u:1", "todos:u:2", "todos:u:3"},
		},
		{
			name: "CascadeDelete",
			run: func(ctx context.Context, db bun.IDB) error {
				_, err := db.NewDelete().Model(&testmodels.List{ID: 1}).WherePK().Exec(ctx)
				return err
			},
			want: []string{"lists:d:1", "todos:d:1", "todos:d:2"},
		},
		{
			name: "PrimaryKeyUpdate",
			run: func(ctx context.Context, db bun.IDB) error {
				_, err := db.ExecContext(ctx, "UPDATE todos SET id = 10 WHERE id = 3")
				return err
			},
			want: []string{"todos:d:3", "todos:i:10"}, ordered: true,
		},
		{
			name: "UpsertUpdates",
			run: func(ctx context.Context, db bun.IDB) error {
				_, err := db.NewInsert().Model(&testmodels.List{ID: 2, Name: "work2"}).
					On("CONFLICT (id) DO UPDATE").Set("name = EXCLUDED.name").Exec(ctx)
				return err
			},
			want: []string{"lists:u:2"}, ordered: true,
		},
		{
			name: "UpsertDoNothing",
			run: func(ctx context.Context, db bun.IDB) error {
				_, err := db.NewInsert().Model(&testmodels.List{ID: 2, Name: "work"}).On("CONFLICT DO NOTHING").Exec(ctx)
				return err
			},
			want: []string{},
		},
		{
			name: "UUIDKeys",
			run: func(ctx context.Context, db bun.IDB) error {
				id := uuid.MustParse("6F9619FF-8B86-D011-B42D-00C04FC964FF")
				n := &testmodels.Note{ID: id, Body: "x", Created: time.Now()}
				if _, err := db.NewInsert().Model(n).Exec(ctx); err != nil {
					return err
				}
				n.Body = "y"
				if _, err := db.NewUpdate().Model(n).WherePK().Exec(ctx); err != nil {
					return err
				}
				_, err := db.NewDelete().Model(n).WherePK().Exec(ctx)
				return err
			},
			want: []string{
				"notes:i:6f9619ff-8b86-d011-b42d-00c04fc964ff",
				"notes:u:6f9619ff-8b86-d011-b42d-00c04fc964ff",
				"notes:d:6f9619ff-8b86-d011-b42d-00c04fc964ff",
			},
			ordered: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, kind := range dbtest.Kinds {
				t.Run(kind, func(t *testing.T) {
					t.Parallel()
					b := setup(t, dbtest.Open(t, kind))
					b.seed(t)
					ctx := t.Context()
					// Inside a transaction that commits.
					err := b.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error { return tc.run(ctx, tx) })
					if err != nil {
						t.Fatal(err)
					}
					got := b.logged(t)
					if tc.ordered && !slices.Equal(got, tc.want) || !tc.ordered && !sameSet(got, tc.want) {
						t.Fatalf("logged %q, want %q", got, tc.want)
					}
				})
			}
		})
	}
}

// TestCaptureAutocommit checks statements outside any transaction.
func TestCaptureAutocommit(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		b := setup(t, db)
		b.seed(t)
		ctx := t.Context()
		if _, err := db.ExecContext(ctx, "UPDATE lists SET name = 'h' WHERE id = 1"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.NewDelete().Model((*testmodels.Todo)(nil)).Where("id = 3").Exec(ctx); err != nil {
			t.Fatal(err)
		}
		if got, want := b.logged(t), []string{"lists:u:1", "todos:d:3"}; !slices.Equal(got, want) {
			t.Fatalf("logged %q, want %q", got, want)
		}
	})
}

// TestCaptureRollback checks that a rolled-back transaction leaves no
// operation behind, and that operations are invisible to other connections
// until commit.
func TestCaptureRollback(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		b := setup(t, db)
		b.seed(t)
		ctx := t.Context()
		boom := errors.New("boom")
		err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if _, err := tx.NewInsert().Model(&testmodels.List{Name: "gone"}).Exec(ctx); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "DELETE FROM lists WHERE id = 1"); err != nil {
				return err
			}
			var n int
			if err := tx.NewSelect().Model((*models.Operation)(nil)).ColumnExpr("count(*)").Scan(ctx, &n); err != nil {
				return err
			}
			if n != 4 { // i list, d list, d two todos
				return fmt.Errorf("inside the transaction: %d operations, want 4", n)
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("RunInTx: %v", err)
		}
		if got := b.logged(t); len(got) != 0 {
			t.Fatalf("after rollback the log holds %q", got)
		}
		var lists int
		if err := db.NewSelect().Model((*testmodels.List)(nil)).ColumnExpr("count(*)").Scan(ctx, &lists); err != nil {
			t.Fatal(err)
		}
		if lists != 2 {
			t.Fatalf("%d lists after rollback, want 2", lists)
		}
	})
}

// TestCaptureTruncate checks that PostgreSQL's TRUNCATE, which fires no row
// trigger, is logged as a delete of every row.
func TestCaptureTruncate(t *testing.T) {
	t.Parallel()
	b := setup(t, dbtest.Postgres(t))
	b.seed(t)
	if _, err := b.db.NewTruncateTable().Model((*testmodels.Todo)(nil)).Exec(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, want := b.logged(t), []string{"todos:d:1", "todos:d:2", "todos:d:3"}; !sameSet(got, want) {
		t.Fatalf("logged %q, want %q", got, want)
	}
}

// TestCaptureReplicaRole checks that PostgreSQL's session_replication_role
// = replica (which skips ordinary triggers: pg_restore, replication tools)
// does not skip the capture: dbsync's triggers fire ALWAYS.
func TestCaptureReplicaRole(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		stmt string
		want []string
	}{
		{"Insert", "INSERT INTO lists (id, name) VALUES (5, 'five')", []string{"lists:i:5"}},
		{"Update", "UPDATE todos SET title = 'z' WHERE id = 2", []string{"todos:u:2"}},
		{"Delete", "DELETE FROM todos WHERE id = 3", []string{"todos:d:3"}},
		{"Truncate", "TRUNCATE todos", []string{"todos:d:1", "todos:d:2", "todos:d:3"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, dbtest.Postgres(t))
			b.seed(t)
			err := b.db.RunInTx(t.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
				if _, err := tx.ExecContext(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
					return err
				}
				_, err := tx.ExecContext(ctx, tc.stmt)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := b.logged(t); !sameSet(got, tc.want) {
				t.Fatalf("logged %q, want %q", got, tc.want)
			}
		})
	}
}

// TestCaptureApplicationTriggers: an application's own trigger that
// writes the row a statement just wrote (created through Migrate, as
// schema changes of tracked tables are) is logged after that write, on
// both databases: SQLite fires the newest trigger first, PostgreSQL in
// the order of their names. Logged the other way round, a new row's
// insert followed the update its trigger made, and the push took the
// row for one the server had (merge.md C5, K1).
func TestCaptureApplicationTriggers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		trigger map[string][]string // by database kind
		stmt    string
		want    []string
	}{
		{
			name: "InsertThenUpdated",
			trigger: map[string][]string{
				dbtest.KindSQLite: {"CREATE TRIGGER a_touch AFTER INSERT ON todos BEGIN UPDATE todos SET title = 'auto' WHERE id = NEW.id; END"},
				dbtest.KindPostgres: {
					"CREATE FUNCTION a_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE todos SET title = 'auto' WHERE id = NEW.id; RETURN NULL; END $$",
					"CREATE TRIGGER a_touch AFTER INSERT ON todos FOR EACH ROW EXECUTE FUNCTION a_touch()",
				},
			},
			stmt: "INSERT INTO todos (id, list_id, title) VALUES (40, 1, 'x')",
			want: []string{"todos:i:40", "todos:u:40"},
		},
		{
			name: "InsertThenDeleted",
			trigger: map[string][]string{
				dbtest.KindSQLite: {"CREATE TRIGGER a_drop AFTER INSERT ON todos WHEN NEW.title = 'tmp' BEGIN DELETE FROM todos WHERE id = NEW.id; END"},
				dbtest.KindPostgres: {
					"CREATE FUNCTION a_drop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN DELETE FROM todos WHERE id = NEW.id; RETURN NULL; END $$",
					"CREATE TRIGGER a_drop AFTER INSERT ON todos FOR EACH ROW WHEN (NEW.title = 'tmp') EXECUTE FUNCTION a_drop()",
				},
			},
			stmt: "INSERT INTO todos (id, list_id, title) VALUES (40, 1, 'tmp')",
			want: []string{"todos:i:40", "todos:d:40"},
		},
		{
			name: "KeyChangeThenUpdated",
			trigger: map[string][]string{
				dbtest.KindSQLite: {"CREATE TRIGGER a_touch AFTER UPDATE OF id ON todos BEGIN UPDATE todos SET title = 'moved' WHERE id = NEW.id; END"},
				dbtest.KindPostgres: {
					"CREATE FUNCTION a_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE todos SET title = 'moved' WHERE id = NEW.id; RETURN NULL; END $$",
					"CREATE TRIGGER a_touch AFTER UPDATE OF id ON todos FOR EACH ROW EXECUTE FUNCTION a_touch()",
				},
			},
			stmt: "UPDATE todos SET id = 10 WHERE id = 3",
			want: []string{"todos:d:3", "todos:i:10", "todos:u:10"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dbtest.Each(t, func(t *testing.T, db *bun.DB) {
				t.Parallel()
				ctx := t.Context()
				b := setup(t, db)
				b.seed(t)
				if dialect.MustOf(db) == dialect.Postgres {
					// As an earlier release named it: Install renames it.
					if _, err := db.ExecContext(ctx, "ALTER TRIGGER __sync_capture ON todos RENAME TO sync_capture"); err != nil {
						t.Fatal(err)
					}
				}
				_, err := oplog.Migrate(ctx, db, b.reg, nil, func(ctx context.Context, tx bun.Tx) error {
					kind := dbtest.KindSQLite
					if dialect.MustOf(db) == dialect.Postgres {
						kind = dbtest.KindPostgres
					}
					for _, q := range tc.trigger[kind] {
						if _, err := tx.ExecContext(ctx, q); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := db.ExecContext(ctx, tc.stmt); err != nil {
					t.Fatal(err)
				}
				if got := b.logged(t); !slices.Equal(got, tc.want) {
					t.Fatalf("logged %q, want %q", got, tc.want)
				}
			})
		})
	}
}

// TestCaptureTruncateIsolation: PostgreSQL's TRUNCATE in a REPEATABLE
// READ or SERIALIZABLE transaction is refused. Its trigger logs the rows
// the transaction's snapshot sees, and TRUNCATE removes those committed
// since too: a row inserted meanwhile was removed, its delete never
// logged (the server kept it).
func TestCaptureTruncateIsolation(t *testing.T) {
	t.Parallel()
	for _, level := range []sql.IsolationLevel{sql.LevelRepeatableRead, sql.LevelSerializable} {
		t.Run(level.String(), func(t *testing.T) {
			t.Parallel()
			b := setup(t, dbtest.Postgres(t))
			b.seed(t)
			ctx := t.Context()
			tx, err := b.db.BeginTx(ctx, &sql.TxOptions{Isolation: level})
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			var n int
			if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM todos").Scan(&n); err != nil { // the snapshot
				t.Fatal(err)
			}
			if _, err := b.db.ExecContext(ctx, "INSERT INTO todos (id, list_id, title) VALUES (99, 1, 'meanwhile')"); err != nil {
				t.Fatal(err)
			}
			_, err = tx.ExecContext(ctx, "TRUNCATE todos")
			if err == nil || !strings.Contains(err.Error(), "TRUNCATE of tracked table todos") {
				t.Fatalf("TRUNCATE: %v, want it refused", err)
			}
		})
	}
}

// TestCaptureSwitch checks that dbsync's own writes can switch capture off
// and on again, for the rest of one transaction only.
func TestCaptureSwitch(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		b := setup(t, db)
		b.seed(t)
		ctx := t.Context()
		err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if err := dialect.Capture(ctx, tx, dialect.OplogSwitch, false); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "UPDATE lists SET name = 'quiet' WHERE id = 1"); err != nil {
				return err
			}
			if err := dialect.Capture(ctx, tx, dialect.OplogSwitch, true); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "UPDATE lists SET name = 'loud' WHERE id = 2"); err != nil {
				return err
			}
			return dialect.ResetCapture(ctx, tx, dialect.OplogSwitch)
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "UPDATE todos SET title = 'after' WHERE id = 1"); err != nil {
			t.Fatal(err)
		}
		if got, want := b.logged(t), []string{"lists:u:2", "todos:u:1"}; !slices.Equal(got, want) {
			t.Fatalf("logged %q, want %q", got, want)
		}
	})
}

// TestCaptureConcurrentWriters checks that many connections writing at once
// lose no operation.
func TestCaptureConcurrentWriters(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		b := setup(t, db)
		b.seed(t)
		ctx := t.Context()
		const writers, each = 4, 25
		errs := make(chan error, writers)
		for w := range writers {
			go func() {
				for i := range each {
					err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
						_, err := tx.NewInsert().Model(&testmodels.Todo{ListID: 1, Title: fmt.Sprintf("w%d-%d", w, i)}).Exec(ctx)
						return err
					})
					if err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for range writers {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		var n, rows int
		if err := db.NewSelect().Model((*models.Operation)(nil)).ColumnExpr("count(DISTINCT row_id)").Where("command = 'i'").Scan(ctx, &n); err != nil {
			t.Fatal(err)
		}
		if err := db.NewSelect().Model((*testmodels.Todo)(nil)).ColumnExpr("count(*)").Where("title LIKE 'w%'").Scan(ctx, &rows); err != nil {
			t.Fatal(err)
		}
		if n != writers*each || rows != writers*each {
			t.Fatalf("%d insert operations for %d rows, want %d", n, rows, writers*each)
		}
	})
}

func TestGuardRefuses(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		b := setup(t, db)
		guarded := db.WithQueryHook(oplog.NewGuard(b.reg, nil))
		ctx := t.Context()
		for _, q := range []string{
			`DROP TABLE todos`,
			`drop table if exists "lists"`,
			`ALTER TABLE todos RENAME TO todos_old`,
			`ALTER TABLE lists RENAME COLUMN name TO title`,
			`DROP TRIGGER IF EXISTS sync_capture ON todos`,
			`DROP TRIGGER IF EXISTS __sync_capture ON todos`,
			`ALTER TABLE todos DISABLE TRIGGER ALL`,
			`alter table only "todos" disable trigger user`,
			`ALTER TABLE lists ENABLE REPLICA TRIGGER __sync_capture`,
		} {
			if _, err := guarded.ExecContext(ctx, q); !errors.Is(err, context.Canceled) {
				t.Errorf("%s: got %v, want the statement refused", q, err)
			}
		}
		if err := oplog.Check(ctx, db, b.reg, false); err != nil {
			t.Fatalf("capture damaged: %v", err)
		}
		// Untracked tables and harmless statements pass.
		for _, q := range []string{
			`CREATE TABLE scratch (id INTEGER PRIMARY KEY)`,
			`DROP TABLE scratch`,
			`ALTER TABLE todos ADD COLUMN extra TEXT`,
		} {
			if _, err := guarded.ExecContext(ctx, q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
	})
}

func TestInstall(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		ctx := t.Context()
		b := setup(t, db)
		// Idempotent.
		if _, err := oplog.Install(ctx, db, b.reg, nil); err != nil {
			t.Fatalf("second Install: %v", err)
		}
		if err := oplog.Check(ctx, db, b.reg, false); err != nil {
			t.Fatal(err)
		}
		var cts []models.ContentType
		if err := db.NewSelect().Model(&cts).Order("table_name").Scan(ctx); err != nil {
			t.Fatal(err)
		}
		if len(cts) != 3 || cts[0].TableName != "lists" || cts[0].ContentTypeID != dbsync.ContentTypeID("lists") {
			t.Fatalf("content types %+v", cts)
		}
		// The unique column name of lists is known.
		if got := b.reg.Table("lists").Uniques; len(got) != 1 || !slices.Equal(got[0], []string{"name"}) {
			t.Fatalf("lists uniques %q", got)
		}
		// Triggers lost (as after a SQLite table rebuild) are detected and
		// restored by Install.
		if err := oplog.Uninstall(ctx, db, b.reg); err != nil {
			t.Fatal(err)
		}
		if err := oplog.Check(ctx, db, b.reg, false); !errors.Is(err, oplog.ErrCaptureMissing) {
			t.Fatalf("Check after Uninstall: %v", err)
		}
		if _, err := oplog.Install(ctx, db, b.reg, nil); err != nil {
			t.Fatal(err)
		}
		if err := oplog.Check(ctx, db, b.reg, false); err != nil {
			t.Fatal(err)
		}
		// A client installs no triggers on pull-only tables.
		reg, err := dbsync.Track(db, (*testmodels.List)(nil), dbsync.PullOnly((*testmodels.Todo)(nil)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := oplog.Install(ctx, db, reg, &oplog.InstallOptions{Client: true}); err != nil {
			t.Fatal(err)
		}
		b.clear(t)
		if _, err := db.ExecContext(ctx, "INSERT INTO lists (name) VALUES ('l'); "); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO todos (list_id, title, done) VALUES (1, 't', false)"); err != nil {
			t.Fatal(err)
		}
		if got := b.logged(t); !slices.Equal(got, []string{"lists:i:1"}) {
			t.Fatalf("client log %q, want only the list insert", got)
		}
	})
}

// queryLog records the statements run on a database while on.
type queryLog struct {
	on      bool
	queries []string
}

func (l *queryLog) BeforeQuery(ctx context.Context, e *bun.QueryEvent) context.Context {
	if l.on {
		l.queries = append(l.queries, e.Query)
	}
	return ctx
}

func (l *queryLog) AfterQuery(context.Context, *bun.QueryEvent) {}

// count returns how many recorded statements contain any of subs.
func (l *queryLog) count(subs ...string) int {
	n := 0
	for _, q := range l.queries {
		for _, sub := range subs {
			if strings.Contains(strings.ToUpper(q), strings.ToUpper(sub)) {
				n++
				break
			}
		}
	}
	return n
}

// TestInstallInstalled: Install on a database where everything is
// installed (what every client.New and server.New does) changes no
// trigger and reads SQLite's triggers in one scan of sqlite_master, as
// Check does; a capture trigger that is there but not as Install makes
// it is still replaced.
func TestInstallInstalled(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		ctx := t.Context()
		b := setup(t, db)
		ql := &queryLog{}
		db = db.WithQueryHook(ql)
		ql.on = true
		if _, err := oplog.Install(ctx, db, b.reg, nil); err != nil {
			t.Fatal(err)
		}
		if len(ql.queries) == 0 {
			t.Fatal("the query hook saw none of Install's statements")
		}
		if n := ql.count("CREATE TRIGGER", "DROP TRIGGER", "CREATE OR REPLACE FUNCTION"); n != 0 {
			t.Errorf("Install of an installed database: %d trigger statements, want 0", n)
		}
		if n := ql.count("type = 'trigger'"); n > 1 {
			t.Errorf("Install: %d reads of SQLite's triggers, want at most 1", n)
		}
		ql.queries = nil
		if err := oplog.Check(ctx, db, b.reg, false); err != nil {
			t.Fatal(err)
		}
		if n := ql.count("type = 'trigger'"); n > 1 {
			t.Errorf("Check: %d reads of SQLite's triggers, want at most 1", n)
		}
		ql.on = false

		// A capture trigger that logs nothing, under the name Install
		// gives it, is replaced.
		if dialect.MustOf(db) == dialect.SQLite {
			var name string
			if err := db.NewRaw("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'todos' AND name LIKE '%ai'").Scan(ctx, &name); err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{
				"DROP TRIGGER " + name,
				"CREATE TRIGGER " + name + " AFTER INSERT ON todos FOR EACH ROW BEGIN SELECT 1; END",
			} {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
		} else {
			var fn string
			if err := db.NewRaw(`SELECT p.proname FROM pg_trigger tg JOIN pg_class cl ON cl.oid = tg.tgrelid JOIN pg_proc p ON p.oid = tg.tgfoid
WHERE cl.relname = 'todos' AND cl.relnamespace = current_schema()::regnamespace AND NOT tg.tgisinternal AND tg.tgtype & 1 = 1 LIMIT 1`).Scan(ctx, &fn); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, "CREATE OR REPLACE FUNCTION "+fn+"() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$"); err != nil {
				t.Fatal(err)
			}
		}
		b.clear(t)
		if _, err := db.ExecContext(ctx, "INSERT INTO lists (name) VALUES ('l1')"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO todos (list_id, title, done) VALUES (1, 't1', false)"); err != nil {
			t.Fatal(err)
		}
		if got := b.logged(t); !slices.Equal(got, []string{"lists:i:1"}) {
			t.Fatalf("log with the damaged trigger %q, want only the list insert", got)
		}
		if _, err := oplog.Install(ctx, db, b.reg, nil); err != nil {
			t.Fatal(err)
		}
		b.clear(t)
		if _, err := db.ExecContext(ctx, "INSERT INTO todos (list_id, title, done) VALUES (1, 't2', false)"); err != nil {
			t.Fatal(err)
		}
		if got := b.logged(t); !slices.Equal(got, []string{"todos:i:2"}) {
			t.Fatalf("log after Install %q, want the todo insert", got)
		}
	})
}

// TestInstallForeignKeysFromCatalog: Install adopts a foreign key the
// catalog declares without a bun relation, one that names the parent's
// key column or one that names none (the parent's primary key), on both
// databases.
func TestInstallForeignKeysFromCatalog(t *testing.T) {
	t.Parallel()
	type Parent struct {
		bun.BaseModel `bun:"table:parents"`
		ID            int64 `bun:"id,pk,autoincrement"`
	}
	type Child struct {
		bun.BaseModel `bun:"table:children"`
		ID            int64 `bun:"id,pk,autoincrement"`
		ParentID      int64 `bun:"parent_id"`
	}
	for _, parent := range []string{"parents (id)", "parents"} {
		t.Run(parent, func(t *testing.T) {
			t.Parallel()
			installForeignKeysFromCatalog(t, parent, (*Parent)(nil), (*Child)(nil))
		})
	}
}

func installForeignKeysFromCatalog(t *testing.T, parent string, models ...any) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		ctx := t.Context()
		auto := "INTEGER PRIMARY KEY AUTOINCREMENT"
		if dialect.MustOf(db) == dialect.Postgres {
			auto = "BIGSERIAL PRIMARY KEY"
		}
		for _, q := range []string{
			"CREATE TABLE parents (id " + auto + ")",
			"CREATE TABLE children (id " + auto + ", parent_id BIGINT REFERENCES " + parent + " ON DELETE SET NULL, code TEXT)",
			"CREATE UNIQUE INDEX children_code ON children (parent_id, code)",
		} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		reg, err := dbsync.Track(db, models...)
		if err != nil {
			t.Fatal(err)
		}
		reg, err = oplog.Install(ctx, db, reg, nil)
		if err != nil {
			t.Fatal(err)
		}
		fks := reg.Table("children").ForeignKeys
		if len(fks) != 1 || fks[0] != (protocol.ForeignKey{Column: "parent_id", RefTable: "parents", OnDelete: "SET NULL"}) {
			t.Fatalf("foreign keys %+v", fks)
		}
		if reg.Tables()[0].Name != "parents" {
			t.Fatalf("dependency order %v", reg.Tables())
		}
		if dialect.MustOf(db) == dialect.Postgres {
			var deferrable bool
			if err := db.QueryRowContext(ctx, "SELECT condeferrable FROM pg_constraint WHERE contype = 'f' AND conrelid = 'children'::regclass").Scan(&deferrable); err != nil {
				t.Fatal(err)
			}
			if !deferrable {
				t.Fatal("foreign key not made deferrable")
			}
		}
	})
}

func TestTrackRejects(t *testing.T) {
	t.Parallel()
	type NoPK struct {
		bun.BaseModel `bun:"table:nopk"`
		Name          string `bun:"name"`
	}
	type TwoPK struct {
		bun.BaseModel `bun:"table:twopk"`
		A             int64 `bun:"a,pk"`
		B             int64 `bun:"b,pk"`
	}
	type Reserved struct {
		bun.BaseModel `bun:"table:sync_things"`
		ID            int64 `bun:"id,pk"`
	}
	type FloatKey struct {
		bun.BaseModel `bun:"table:floaty"`
		ID            float64 `bun:"id,pk"`
	}
	db := dbtest.SQLite(t)
	for _, m := range []any{(*NoPK)(nil), (*TwoPK)(nil), (*Reserved)(nil), (*FloatKey)(nil), NoPK{}, 42} {
		if _, err := dbsync.Track(db, m); !errors.Is(err, dbsync.ErrInvalidModel) {
			t.Errorf("Track(%T): %v, want ErrInvalidModel", m, err)
		}
	}
	if !strings.Contains(fmt.Sprint(dbsync.Track(db, (*TwoPK)(nil))), "exactly one primary key") {
		t.Error("error does not explain the problem")
	}
}

// clashUpper and clashLower are tables whose capture objects would share
// names: "Foo" is not a clean name, so its objects are named after "foo"
// with the CRC-32 of "Foo" (b43e23c1) as a suffix, which is the other
// table's name.
type clashUpper struct {
	bun.BaseModel `bun:"table:Foo"`
	ID            int64 `bun:"id,pk,autoincrement"`
}

type clashLower struct {
	bun.BaseModel `bun:"table:foo_b43e23c1"`
	ID            int64 `bun:"id,pk,autoincrement"`
}

// TestInstallObjectNameClash: Install refuses, before it writes anything,
// two tables whose capture triggers or functions would have one name
// (the second would replace the first's, whose writes would then be
// logged as the other table's, or not at all).
func TestInstallObjectNameClash(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		ctx := t.Context()
		for _, m := range []any{(*clashUpper)(nil), (*clashLower)(nil)} {
			if _, err := db.NewCreateTable().Model(m).Exec(ctx); err != nil {
				t.Fatal(err)
			}
		}
		reg, err := dbsync.Track(db, (*clashUpper)(nil), (*clashLower)(nil))
		if err != nil {
			t.Fatal(err)
		}
		_, err = oplog.Install(ctx, db, reg, nil)
		if !errors.Is(err, dbsync.ErrInvalidModel) || !strings.Contains(err.Error(), "foo_b43e23c1") {
			t.Fatalf("Install: %v, want ErrInvalidModel naming the tables", err)
		}
		var n int
		if err := db.NewSelect().TableExpr("sync_content_types").ColumnExpr("count(*)").Scan(ctx, &n); err == nil && n != 0 {
			t.Fatalf("%d content types recorded by a refused Install", n)
		}
	})
}

type swapKeyed struct {
	bun.BaseModel `bun:"table:swap_keyed"`
	ID            int64  `bun:"id,pk"`
	Name          string `bun:"name"`
}

// TestInstallDeferrableKey: Install refuses, on PostgreSQL, a tracked
// table whose key is unique only under DEFERRABLE constraints (its
// primary key, or a unique constraint on the key column alone). Such a
// key lets one statement give a key to
// a row before another gives it up (UPDATE … SET id = 3 - id swaps 1 and
// 2): the row triggers log "d1 i2 d2 i1", and key 2's run "i2 d2" was
// compressed to nothing (merge.md C2), its new values never pushed.
func TestInstallDeferrableKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, create string }{
		{"PrimaryKey", "CREATE TABLE swap_keyed (id bigint PRIMARY KEY DEFERRABLE INITIALLY IMMEDIATE, name text)"},
		{"Unique", "CREATE TABLE swap_keyed (id bigint NOT NULL, name text, CONSTRAINT swap_keyed_id UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)"},
		// One unique index checked at once is enough: no swap passes it.
		{"AlsoImmediate", "CREATE TABLE swap_keyed (id bigint PRIMARY KEY, name text, CONSTRAINT swap_keyed_id UNIQUE (id) DEFERRABLE)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := dbtest.Postgres(t)
			ctx := t.Context()
			if _, err := db.ExecContext(ctx, tc.create); err != nil {
				t.Fatal(err)
			}
			reg, err := dbsync.Track(db, (*swapKeyed)(nil))
			if err != nil {
				t.Fatal(err)
			}
			_, err = oplog.Install(ctx, db, reg, nil)
			if tc.name == "AlsoImmediate" {
				if err != nil {
					t.Fatalf("Install: %v", err)
				}
				return
			}
			if !errors.Is(err, dbsync.ErrInvalidModel) || !strings.Contains(err.Error(), "swap_keyed.id") {
				t.Fatalf("Install: %v, want ErrInvalidModel naming swap_keyed.id", err)
			}
		})
	}
}

type seqKeyed struct {
	bun.BaseModel `bun:"table:seq_keyed"`
	ID            int64 `bun:"id,pk,autoincrement"`
}

type plainKeyed struct {
	bun.BaseModel `bun:"table:plain_keyed"`
	ID            int64 `bun:"id,pk"`
}

type textKeyed struct {
	bun.BaseModel `bun:"table:text_keyed"`
	ID            string `bun:"id,pk"`
}

// TestInstallWarnsKeyWithoutSequence: Install warns, once per Install,
// of each tracked table whose integer key has no sequence (SQLite
// without AUTOINCREMENT, PostgreSQL without serial or identity), on a
// server and on a client: the database may give a deleted row's key to
// a new row (merge.md K1). Tables with a sequence, or text keys, are not
// named.
func TestInstallWarnsKeyWithoutSequence(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		ctx := t.Context()
		ms := []any{(*seqKeyed)(nil), (*plainKeyed)(nil), (*textKeyed)(nil)}
		for _, m := range ms {
			if _, err := db.NewCreateTable().Model(m).Exec(ctx); err != nil {
				t.Fatal(err)
			}
		}
		reg, err := dbsync.Track(db, ms...)
		if err != nil {
			t.Fatal(err)
		}
		for _, client := range []bool{false, true} {
			var buf strings.Builder
			log := slog.New(slog.NewTextHandler(&buf, nil))
			if _, err := oplog.Install(ctx, db, reg, &oplog.InstallOptions{Client: client, Logger: log}); err != nil {
				t.Fatal(err)
			}
			var warned []string
			for line := range strings.Lines(buf.String()) {
				if strings.Contains(line, "level=WARN") && strings.Contains(line, "without a sequence") {
					_, table, _ := strings.Cut(line, "table=")
					warned = append(warned, strings.Fields(table)[0])
				}
			}
			if !slices.Equal(warned, []string{"plain_keyed"}) {
				t.Errorf("client %v: warned of %q, want only plain_keyed; log:\n%s", client, warned, buf.String())
			}
		}
	})
}

type affinityRow struct {
	bun.BaseModel `bun:"table:affinity_rows"`
	ID            int64           `bun:"id,pk,autoincrement"`
	Price         string          `bun:"price,type:numeric"`
	Code          string          `bun:"code,type:integer"`
	Doc           json.RawMessage `bun:"doc,type:jsonb"`
	Note          string          `bun:"note,type:text"`
	Count         int64           `bun:"count,type:numeric"`
	Ratio         float64         `bun:"ratio,type:decimal"`
	Attrs         map[string]any  `bun:"attrs,type:jsonb"`
	Ref           string          `bun:"ref,type:uuid"`
}

// TestInstallWarnsNumericText: Install warns, on SQLite, of each tracked
// column holding text (a string, JSON) whose declared type gives it
// numeric, integer or real affinity (SQLite stores "1.10" as 1.1), and of
// no other column (not a map in JSONB: it encodes as an object, nor a
// string in a UUID column); PostgreSQL stores text as text: no warning.
func TestInstallWarnsNumericText(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		ctx := t.Context()
		q := `CREATE TABLE affinity_rows (id INTEGER PRIMARY KEY AUTOINCREMENT, price NUMERIC, code INTEGER, doc JSONB, note TEXT, count NUMERIC, ratio DECIMAL, attrs JSONB, ref UUID)`
		if dialect.MustOf(db) == dialect.Postgres {
			q = `CREATE TABLE affinity_rows (id BIGSERIAL PRIMARY KEY, price NUMERIC, code TEXT, doc JSONB, note TEXT, count NUMERIC, ratio DECIMAL, attrs JSONB, ref UUID)`
		}
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
		want := []string{"price", "code", "doc"}
		if dialect.MustOf(db) == dialect.Postgres {
			want = nil
		}
		if warned, log := installWarnings(t, db, (*affinityRow)(nil), "numeric affinity"); !slices.Equal(warned, want) {
			t.Errorf("warned of %q, want %q; log:\n%s", warned, want, log)
		}
	})
}

// installWarnings tracks model on db, installs a node's capture, and
// returns the columns named by its warnings whose text holds message, and
// the whole log.
func installWarnings(t *testing.T, db *bun.DB, model any, message string) ([]string, string) {
	t.Helper()
	reg, err := dbsync.Track(db, model)
	if err != nil {
		t.Fatal(err)
	}
	var buf strings.Builder
	if _, err := oplog.Install(t.Context(), db, reg, &oplog.InstallOptions{Client: true, Logger: slog.New(slog.NewTextHandler(&buf, nil))}); err != nil {
		t.Fatal(err)
	}
	var warned []string
	for line := range strings.Lines(buf.String()) {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, message) {
			_, col, _ := strings.Cut(line, "column=")
			warned = append(warned, strings.Fields(col)[0])
		}
	}
	return warned, buf.String()
}

type narrowRow struct {
	bun.BaseModel `bun:"table:narrow_rows"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Port          uint16 `bun:"port"`                // bun: smallint
	Size          uint32 `bun:"size"`                // bun: integer
	Flags         uint8  `bun:"flags"`               // bun: smallint, which holds it
	Delta         int32  `bun:"delta"`               // bun: integer, which holds it
	Small         int32  `bun:"small,type:smallint"` // narrower than int32
	Wide          uint32 `bun:"wide,type:bigint"`    // wide enough
	Count         int64  `bun:"count,type:integer"`  // 64-bit types: the schema's choice
	Maybe         *int32 `bun:"maybe,type:smallint"` // a pointer: its element's type
	Name          string `bun:"name,type:smallint"`  // not an integer field: not this warning
}

// TestInstallWarnsNarrowIntegers: Install warns, on PostgreSQL, of each
// tracked column whose Go integer type holds values the column does not:
// bun creates a uint16 as smallint and a uint32 as integer, a SQLite node
// writes 65535 or 4294967295, and the server refuses every push holding
// it. Not on SQLite, whose integers are 64-bit.
func TestInstallWarnsNarrowIntegers(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		if _, err := db.NewCreateTable().Model((*narrowRow)(nil)).Exec(t.Context()); err != nil {
			t.Fatal(err)
		}
		want := []string{"port", "size", "small", "maybe"}
		if dialect.MustOf(db) == dialect.SQLite {
			want = nil
		}
		if warned, log := installWarnings(t, db, (*narrowRow)(nil), "narrower than its Go type"); !slices.Equal(warned, want) {
			t.Errorf("warned of %q, want %q; log:\n%s", warned, want, log)
		}
	})
}

type lossyRow struct {
	bun.BaseModel `bun:"table:lossy_rows"`
	ID            int64     `bun:"id,pk,autoincrement"`
	Price         float64   `bun:"price,type:numeric(10,2)"` // rounds 1.234
	Whole         string    `bun:"whole,type:numeric(5)"`    // rounds 1.5
	Amount        float64   `bun:"amount,type:numeric"`      // keeps every digit
	Code          string    `bun:"code,type:char(5)"`        // pads "ab"
	Name          string    `bun:"name,type:varchar(5)"`     // refuses longer text: an error
	At            time.Time `bun:"at,type:timestamp(0)"`     // rounds to the second
	AtMicro       time.Time `bun:"at_micro,type:timestamptz(6)"`
	Day           time.Time `bun:"day,type:date"`   // drops the time of day
	Clock         time.Time `bun:"clock,type:time"` // drops the date
	Created       time.Time `bun:"created"`         // bun: timestamptz
	Ratio         float64   `bun:"ratio,type:real"` // rounds 0.1 to a float32
	Single        float32   `bun:"single"`          // bun: real, which holds it
}

// TestInstallWarnsLossyTypes: on PostgreSQL, Install warns of each
// tracked column whose type stores some values changed where SQLite keeps
// them as written (a SQLite node's 1.234 is 1.23 on a PostgreSQL server
// and the other nodes, and stays 1.234 on the node: no error says so);
// on SQLite, of none.
func TestInstallWarnsLossyTypes(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		if _, err := db.NewCreateTable().Model((*lossyRow)(nil)).Exec(t.Context()); err != nil {
			t.Fatal(err)
		}
		want := []string{"price", "whole", "code", "at", "day", "clock", "ratio"}
		if dialect.MustOf(db) == dialect.SQLite {
			want = nil
		}
		if warned, log := installWarnings(t, db, (*lossyRow)(nil), "stores some values changed"); !slices.Equal(warned, want) {
			t.Errorf("warned of %q, want %q; log:\n%s", warned, want, log)
		}
	})
}

// TestSQLiteAffinity pins SQLite's rules for a declared type's affinity.
func TestSQLiteAffinity(t *testing.T) {
	for decl, want := range map[string]string{
		"INTEGER": "INTEGER", "bigint": "INTEGER", "POINT": "INTEGER", // "INT" anywhere
		"VARCHAR(20)": "TEXT", "clob": "TEXT", "text": "TEXT",
		"BLOB": "BLOB", "": "BLOB",
		"REAL": "REAL", "double precision": "REAL", "FLOAT": "REAL",
		"NUMERIC": "NUMERIC", "DECIMAL(10,2)": "NUMERIC", "JSONB": "NUMERIC", "JSON": "NUMERIC", "BOOLEAN": "NUMERIC", "DATETIME": "NUMERIC",
		"CHARINT": "INTEGER", // the first rule wins
	} {
		if got := dialect.SQLiteAffinity(decl); got != want {
			t.Errorf("SQLiteAffinity(%q) = %s, want %s", decl, got, want)
		}
	}
}

// TestInstallDropsUntrackedCapture: a node's Install removes the capture
// triggers (and PostgreSQL functions) of a table its registry no longer
// tracks (a release dropped the model): writes to it are no longer
// logged. A server's Install keeps them (servers of the earlier release
// may still serve the table during a rolling upgrade), and the tracked
// tables' capture is untouched.
func TestInstallDropsUntrackedCapture(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		ctx := t.Context()
		b := setup(t, db)
		b.seed(t)
		lists, err := dbsync.Track(db, (*testmodels.List)(nil))
		if err != nil {
			t.Fatal(err)
		}
		writes := 0
		write := func() {
			t.Helper()
			writes++
			for _, q := range []string{
				fmt.Sprintf("INSERT INTO lists (name) VALUES ('n%d')", writes),
				fmt.Sprintf("UPDATE todos SET title = 'x%d' WHERE id = 1", writes),
			} {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, tc := range []struct {
			client bool
			want   []string
		}{
			{false, []string{"lists:i:3", "todos:u:1"}},
			{true, []string{"lists:i:4"}},
		} {
			var buf strings.Builder
			if _, err := oplog.Install(ctx, db, lists, &oplog.InstallOptions{Client: tc.client, Logger: slog.New(slog.NewTextHandler(&buf, nil))}); err != nil {
				t.Fatal(err)
			}
			b.clear(t)
			write()
			if got := b.logged(t); !slices.Equal(got, tc.want) {
				t.Errorf("client %v: logged %q, want %q", tc.client, got, tc.want)
			}
			if removed := strings.Contains(buf.String(), `removed" table=todos`); removed != tc.client {
				t.Errorf("client %v: removal logged %v; log:\n%s", tc.client, removed, buf.String())
			}
		}
		// Nothing of dbsync's is left on todos; lists is still captured.
		if err := oplog.Check(ctx, db, lists, true); err != nil {
			t.Fatal(err)
		}
		var n int
		q := "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'todos'"
		if db.Dialect().Name().String() == "pg" {
			q = "SELECT COUNT(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relname = 'todos' AND NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace"
		}
		if err := db.QueryRowContext(ctx, q).Scan(&n); err != nil || n != 0 {
			t.Fatalf("%d triggers left on todos (%v)", n, err)
		}
		if db.Dialect().Name().String() == "pg" {
			if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM pg_proc WHERE proname = 'sync_capture_todos' AND pronamespace = current_schema()::regnamespace").Scan(&n); err != nil || n != 0 {
				t.Fatalf("%d capture functions of todos left (%v)", n, err)
			}
		}
		// Tracked again (a later release), it is captured again.
		if _, err := oplog.Install(ctx, db, b.reg, &oplog.InstallOptions{Client: true}); err != nil {
			t.Fatal(err)
		}
		b.clear(t)
		write()
		if got := b.logged(t); !slices.Equal(got, []string{"lists:i:5", "todos:u:1"}) {
			t.Errorf("tracked again: logged %q", got)
		}
	})
}

type releaseOne struct {
	bun.BaseModel `bun:"table:releases"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name,notnull"`
}

type releaseTwo struct {
	bun.BaseModel `bun:"table:releases"`
	ID            int64   `bun:"id,pk,autoincrement"`
	Name          string  `bun:"name,notnull"`
	Note          *string `bun:"note"`
}

// TestInstallColumnMissing: models with a column the table lacks (a new
// release started before its migration ran) are refused by Install,
// naming the column, and nothing is installed. Before, Install made
// capture triggers reading the column, and every later update of the
// table failed with the trigger's error ("no such column: NEW.note").
func TestInstallColumnMissing(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		ctx := t.Context()
		if _, err := db.NewCreateTable().Model((*releaseOne)(nil)).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		reg, err := dbsync.Track(db, (*releaseTwo)(nil))
		if err != nil {
			t.Fatal(err)
		}
		for _, client := range []bool{false, true} {
			_, err := oplog.Install(ctx, db, reg, &oplog.InstallOptions{Client: client})
			if !errors.Is(err, oplog.ErrColumnMissing) || !strings.Contains(err.Error(), "releases.note") {
				t.Fatalf("client %v: Install: %v, want ErrColumnMissing naming releases.note", client, err)
			}
		}
		for _, q := range []string{"INSERT INTO releases (name) VALUES ('one')", "UPDATE releases SET name = 'two'"} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s after the refused Install: %v", q, err)
			}
		}
	})
}

type casedRow struct {
	bun.BaseModel `bun:"table:cased"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name,notnull"`
}

// TestInstallColumnCase: a table whose columns were declared in another
// case, unquoted, holds the model's columns on both databases (SQLite
// matches names without regard to case, PostgreSQL folds them): Install
// accepts it and captures its writes.
func TestInstallColumnCase(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		ctx := t.Context()
		if _, err := db.ExecContext(ctx, "CREATE TABLE cased (ID BIGINT PRIMARY KEY, Name TEXT NOT NULL)"); err != nil {
			t.Fatal(err)
		}
		reg, err := dbsync.Track(db, (*casedRow)(nil))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := oplog.Install(ctx, db, reg, nil); err != nil {
			t.Fatalf("Install: %v", err)
		}
		if _, err := db.ExecContext(ctx, "UPDATE cased SET name = 'two'"); err != nil {
			t.Fatal(err)
		}
	})
}

type generatedRow struct {
	bun.BaseModel `bun:"table:generated"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name,notnull"`
	Upper         string `bun:"upper"`
}

type generatedRead struct {
	bun.BaseModel `bun:"table:generated"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name,notnull"`
	Upper         string `bun:"upper,scanonly"`
}

// TestInstallGeneratedColumn: a generated column is a column of its
// table: Install does not take it for a column the table lacks (SQLite's
// table_info leaves generated columns out). A model writing it is
// refused as such (dbsync.ErrInvalidModel, not ErrColumnMissing); read
// only (scanonly), it installs.
func TestInstallGeneratedColumn(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		ctx := t.Context()
		q := "CREATE TABLE generated (id INTEGER PRIMARY KEY, name TEXT NOT NULL, upper TEXT GENERATED ALWAYS AS (upper(name)) VIRTUAL)"
		if dialect.MustOf(db) == dialect.Postgres {
			q = "CREATE TABLE generated (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, upper TEXT GENERATED ALWAYS AS (upper(name)) STORED)"
		}
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
		reg, err := dbsync.Track(db, (*generatedRow)(nil))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := oplog.Install(ctx, db, reg, nil); !errors.Is(err, dbsync.ErrInvalidModel) || errors.Is(err, oplog.ErrColumnMissing) || !strings.Contains(err.Error(), "generated.upper") {
			t.Fatalf("Install of a model writing the generated column: %v, want dbsync.ErrInvalidModel naming generated.upper", err)
		}
		reg, err = dbsync.Track(db, (*generatedRead)(nil))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := oplog.Install(ctx, db, reg, nil); err != nil {
			t.Fatalf("Install: %v", err)
		}
	})
}

// TestCheckOriginRoleTriggers: a capture trigger set back to the origin
// role (ENABLE TRIGGER, as a restore does after disabling them) misses
// the writes of the replica role: Check reports its table as missing
// capture, so the next push re-installs it.
func TestCheckOriginRoleTriggers(t *testing.T) {
	t.Parallel()
	b := setup(t, dbtest.Postgres(t))
	ctx := t.Context()
	if err := oplog.Check(ctx, b.db, b.reg, false); err != nil {
		t.Fatalf("Check after Install: %v", err)
	}
	if _, err := b.db.ExecContext(ctx, "ALTER TABLE todos ENABLE TRIGGER ALL"); err != nil {
		t.Fatal(err)
	}
	if err := oplog.Check(ctx, b.db, b.reg, false); !errors.Is(err, oplog.ErrCaptureMissing) || !strings.Contains(err.Error(), "todos") {
		t.Fatalf("Check with origin-role triggers: %v, want ErrCaptureMissing naming todos", err)
	}
}

type heldRow struct {
	bun.BaseModel `bun:"table:held_rows"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name"`
}

type emptyRow struct {
	bun.BaseModel `bun:"table:empty_rows"`
	ID            int64 `bun:"id,pk,autoincrement"`
}

// TestInstallWarnsUncaptured: a node's Install warns of each table it
// pushes that holds rows while none of its capture triggers exists: rows
// the application wrote before client.New first captured the table are
// never pushed (README), and a new user saw Sync report nothing to push,
// with nothing logged. Once captured, for an empty table, or after a
// rebuild in Migrate, no warning.
func TestInstallWarnsUncaptured(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		ctx := t.Context()
		for _, m := range []any{(*heldRow)(nil), (*emptyRow)(nil)} {
			if _, err := db.NewCreateTable().Model(m).Exec(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO held_rows (name) VALUES ('a'), ('b'), ('c')"); err != nil {
			t.Fatal(err)
		}
		reg, err := dbsync.Track(db, (*heldRow)(nil), (*emptyRow)(nil))
		if err != nil {
			t.Fatal(err)
		}
		install := func() string {
			var buf strings.Builder
			if _, err := oplog.Install(ctx, db, reg, &oplog.InstallOptions{Client: true, Logger: slog.New(slog.NewTextHandler(&buf, nil))}); err != nil {
				t.Fatal(err)
			}
			var warned []string
			for line := range strings.Lines(buf.String()) {
				if strings.Contains(line, "level=WARN") && strings.Contains(line, "never pushed") {
					warned = append(warned, line)
				}
			}
			return strings.Join(warned, "")
		}
		if w := install(); strings.Count(w, "\n") != 1 || !strings.Contains(w, "table=held_rows rows=3") {
			t.Errorf("first install warned %q, want held_rows and its 3 rows alone", w)
		}
		if w := install(); w != "" {
			t.Errorf("second install warned %q, want nothing", w)
		}
		// A rebuild in Migrate (the triggers dropped with the table, the
		// rows logged before) is no first capture: no warning (a
		// reviewer found one).
		var buf strings.Builder
		_, err = oplog.Migrate(ctx, db, reg, &oplog.InstallOptions{Client: true, Logger: slog.New(slog.NewTextHandler(&buf, nil))},
			func(ctx context.Context, tx bun.Tx) error {
				if _, err := tx.NewCreateTable().Model((*heldRow)(nil)).ModelTableExpr("held_rows_new").Exec(ctx); err != nil {
					return err
				}
				for _, q := range []string{
					"INSERT INTO held_rows_new (id, name) SELECT id, name FROM held_rows",
					"DROP TABLE held_rows",
					"ALTER TABLE held_rows_new RENAME TO held_rows",
				} {
					if _, err := tx.ExecContext(ctx, q); err != nil {
						return err
					}
				}
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(buf.String(), "never pushed") {
			t.Errorf("a rebuild in Migrate warned: %s", buf.String())
		}
	})
}

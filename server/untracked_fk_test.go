package server_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

// ufPet is tracked; its owner_id references uf_owners, a table dbsync does
// not track (an application that forgot to track the parent, or keeps it
// apart).
type ufPet struct {
	bun.BaseModel `bun:"table:uf_pets"`
	ID            int64  `bun:"id,pk,autoincrement"`
	OwnerID       int64  `bun:"owner_id,notnull"`
	Name          string `bun:"name,notnull"`
}

func ufSchema(ctx context.Context, db bun.IDB) error {
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS uf_owners (id BIGINT PRIMARY KEY)`,
		`CREATE TABLE IF NOT EXISTS uf_pets (id INTEGER PRIMARY KEY AUTOINCREMENT,
  owner_id BIGINT NOT NULL REFERENCES uf_owners (id), name TEXT NOT NULL)`,
	} {
		if db.Dialect().Name() == dialect.PG {
			q = strings.Replace(q, "INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY", 1)
		}
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// TestPushReferencingUntrackedTable: a push writing a row whose foreign key
// to an untracked table names a row the server lacks is refused
// (dbsync.ErrForeignKey, 409 foreign_key), nothing written, on SQLite as
// PostgreSQL's own check refuses it, whole or in chunks. A SQLite server
// applies pushes with foreign keys off and checked only references between
// tracked tables: it stored the row, referencing nothing, and nodes
// pulled it.
func TestPushReferencingUntrackedTable(t *testing.T) {
	t.Parallel()
	models := []any{(*ufPet)(nil)}
	for _, kind := range dbtest.Kinds {
		for _, chunked := range []bool{false, true} {
			name := kind + "/whole"
			if chunked {
				name = kind + "/chunked"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				srv := synctest.NewServerWith(t, synctest.ServerOn(t, kind, ufSchema, models), ufSchema, models, nil)
				cfg := &client.Config{}
				if chunked {
					cfg.PushChunkOperations = 1
				}
				a := synctest.NewClientWith(t, srv, "a", dbtest.SQLite(t), ufSchema, models, cfg)
				for _, db := range []bun.IDB{srv.DB, a.DB} {
					if _, err := db.ExecContext(ctx, "INSERT INTO uf_owners (id) VALUES (1)"); err != nil {
						t.Fatal(err)
					}
				}
				// The node has owner 2; the server does not.
				if _, err := a.DB.ExecContext(ctx, "INSERT INTO uf_owners (id) VALUES (2)"); err != nil {
					t.Fatal(err)
				}
				for _, p := range []*ufPet{{OwnerID: 1, Name: "rex"}, {OwnerID: 2, Name: "tom"}} {
					if _, err := a.DB.NewInsert().Model(p).Exec(ctx); err != nil {
						t.Fatal(err)
					}
				}
				_, err := a.Sync(ctx)
				if !errors.Is(err, dbsync.ErrForeignKey) || !errors.Is(err, dbsync.ErrPushRejected) {
					t.Fatalf("push of a pet whose owner the server lacks: %v, want ErrForeignKey and ErrPushRejected", err)
				}
				if kind == dbtest.KindSQLite && !strings.Contains(err.Error(), "uf_owners") {
					t.Fatalf("the refusal %q does not name uf_owners", err)
				}
				if n, err := srv.DB.NewSelect().Table("uf_pets").Count(ctx); err != nil || n != 0 {
					t.Fatalf("the server holds %d pets (%v), want none", n, err)
				}
				// Once the server has the owner, the push goes through.
				if _, err := srv.DB.ExecContext(ctx, "INSERT INTO uf_owners (id) VALUES (2)"); err != nil {
					t.Fatal(err)
				}
				if _, err := a.Sync(ctx); err != nil {
					t.Fatalf("sync once the owner exists: %v", err)
				}
				if n, err := srv.DB.NewSelect().Table("uf_pets").Count(ctx); err != nil || n != 2 {
					t.Fatalf("the server holds %d pets (%v), want 2", n, err)
				}
			})
		}
	}
}

// TestPullReferencingUntrackedTable: a pull bringing a row whose foreign
// key to an untracked table names a row the node lacks is refused
// (dbsync.ErrForeignKey naming the table), nothing applied. A SQLite node
// applies pulls with foreign keys off and checked only references between
// tracked tables: it stored the row, referencing nothing (a repair or
// reset checks whole tables, and refused it).
func TestPullReferencingUntrackedTable(t *testing.T) {
	t.Parallel()
	models := []any{(*ufPet)(nil)}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := synctest.NewServerWith(t, synctest.ServerOn(t, kind, ufSchema, models), ufSchema, models, nil)
			b := synctest.NewClientWith(t, srv, "b", dbtest.SQLite(t), ufSchema, models, nil)
			if _, err := srv.DB.ExecContext(ctx, "INSERT INTO uf_owners (id) VALUES (1), (2)"); err != nil {
				t.Fatal(err)
			}
			if _, err := b.DB.ExecContext(ctx, "INSERT INTO uf_owners (id) VALUES (1)"); err != nil {
				t.Fatal(err)
			}
			for _, p := range []*ufPet{{OwnerID: 1, Name: "rex"}, {OwnerID: 2, Name: "tom"}} {
				if _, err := srv.DB.NewInsert().Model(p).Exec(ctx); err != nil {
					t.Fatal(err)
				}
			}
			_, err := b.Sync(ctx)
			if !errors.Is(err, dbsync.ErrForeignKey) || !strings.Contains(err.Error(), "uf_owners") {
				t.Fatalf("pull of a pet whose owner the node lacks: %v, want ErrForeignKey naming uf_owners", err)
			}
			if strings.Contains(err.Error(), "Repair") {
				t.Fatalf("the refusal %q points to Repair, which cannot bring rows of an untracked table", err)
			}
			if n, err := b.DB.NewSelect().Table("uf_pets").Count(ctx); err != nil || n != 0 {
				t.Fatalf("the node holds %d pets (%v), want none", n, err)
			}
			// Once the node has the owner, the pull goes through.
			if _, err := b.DB.ExecContext(ctx, "INSERT INTO uf_owners (id) VALUES (2)"); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Sync(ctx); err != nil {
				t.Fatalf("sync once the owner exists: %v", err)
			}
			if n, err := b.DB.NewSelect().Table("uf_pets").Count(ctx); err != nil || n != 2 {
				t.Fatalf("the node holds %d pets (%v), want 2", n, err)
			}
		})
	}
}

// uaList is tracked; tables dbsync does not track reference it with every
// ON DELETE action (uaSchema).
type uaList struct {
	bun.BaseModel `bun:"table:ua_lists"`
	ID            int64  `bun:"id,pk,autoincrement"`
	Name          string `bun:"name,notnull"`
}

func uaSchema(ctx context.Context, db bun.IDB) error {
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS ua_lists (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS ua_notes (id BIGINT PRIMARY KEY, list_id BIGINT REFERENCES ua_lists (id) ON DELETE CASCADE)`,
		`CREATE TABLE IF NOT EXISTS ua_tags (id BIGINT PRIMARY KEY, note_id BIGINT REFERENCES ua_notes (id) ON DELETE CASCADE)`,
		`CREATE TABLE IF NOT EXISTS ua_marks (id BIGINT PRIMARY KEY, list_id BIGINT REFERENCES ua_lists (id) ON DELETE SET NULL)`,
		`CREATE TABLE IF NOT EXISTS ua_pins (id BIGINT PRIMARY KEY, list_id BIGINT DEFAULT 1 REFERENCES ua_lists (id) ON DELETE SET DEFAULT)`,
	} {
		if db.Dialect().Name() == dialect.PG {
			q = strings.Replace(q, "INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY", 1)
		}
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// TestUntrackedDeleteActions: a synced delete runs the ON DELETE actions
// of the foreign keys that tables dbsync does not track hold to the
// deleted row (CASCADE down a chain of such tables, SET NULL, SET
// DEFAULT), on the server a push reaches (whole or in chunks), on the
// node a pull reaches, and on a node that repairs, as the database runs
// them for the application's own deletes. SQLite applies sync with
// foreign keys off and ran none: the rows were left referencing the
// deleted row (PostgreSQL ran them).
func TestUntrackedDeleteActions(t *testing.T) {
	t.Parallel()
	models := []any{(*uaList)(nil)}
	for _, srvKind := range dbtest.Kinds {
		for _, nodeKind := range dbtest.Kinds {
			for _, chunked := range []bool{false, true} {
				t.Run(fmt.Sprintf("server=%s/node=%s/chunked=%v", srvKind, nodeKind, chunked), func(t *testing.T) {
					t.Parallel()
					srv := synctest.NewServerWith(t, synctest.ServerOn(t, srvKind, uaSchema, models), uaSchema, models, nil)
					cfg := &client.Config{}
					if chunked {
						cfg.PushChunkOperations = 1
					}
					a := synctest.NewClientWith(t, srv, "a", dbtest.SQLite(t), uaSchema, models, cfg)
					b := synctest.NewClientWith(t, srv, "b", synctest.ClientOn(t, nodeKind, uaSchema, models), uaSchema, models, nil)
					c := synctest.NewClientWith(t, srv, "c", synctest.ClientOn(t, nodeKind, uaSchema, models), uaSchema, models, nil)
					for _, l := range []*uaList{{Name: "one"}, {Name: "two"}} {
						if _, err := a.DB.NewInsert().Model(l).Exec(ctx); err != nil {
							t.Fatal(err)
						}
					}
					for _, n := range []*synctest.Client{a, b, c} {
						if _, err := n.Sync(ctx); err != nil {
							t.Fatalf("%s: first sync: %v", n.Name, err)
						}
					}
					for _, db := range []bun.IDB{srv.DB, b.DB, c.DB} {
						for _, q := range []string{
							"INSERT INTO ua_notes (id, list_id) VALUES (10, 1), (20, 2)",
							"INSERT INTO ua_tags (id, note_id) VALUES (100, 10), (200, 20)",
							"INSERT INTO ua_marks (id, list_id) VALUES (1, 2), (2, 1)",
							"INSERT INTO ua_pins (id, list_id) VALUES (1, 2)",
						} {
							if _, err := db.ExecContext(ctx, q); err != nil {
								t.Fatal(err)
							}
						}
					}
					if _, err := a.DB.NewDelete().Model((*uaList)(nil)).Where("id = 2").Exec(ctx); err != nil {
						t.Fatal(err)
					}
					if _, err := a.Sync(ctx); err != nil {
						t.Fatalf("a pushes the delete of list 2: %v", err)
					}
					uaCheck(t, "the server", srv.DB)
					if _, err := b.Sync(ctx); err != nil {
						t.Fatalf("b pulls the delete of list 2: %v", err)
					}
					uaCheck(t, "b (pull)", b.DB)
					if _, err := c.Repair(ctx, nil); err != nil {
						t.Fatalf("c repairs: %v", err)
					}
					uaCheck(t, "c (repair)", c.DB)
				})
			}
		}
	}
}

// uaCheck: list 2 deleted, its note and that note's tag are gone, its
// mark references nothing, its pin references the default list 1; the
// rows of list 1 are untouched.
func uaCheck(t *testing.T, who string, db bun.IDB) {
	t.Helper()
	var notes, tags []int64
	if err := db.NewRaw("SELECT id FROM ua_notes ORDER BY id").Scan(ctx, &notes); err != nil {
		t.Fatal(err)
	}
	if err := db.NewRaw("SELECT id FROM ua_tags ORDER BY id").Scan(ctx, &tags); err != nil {
		t.Fatal(err)
	}
	var marks, pins []string
	if err := db.NewRaw("SELECT CAST(id AS TEXT) || ':' || COALESCE(CAST(list_id AS TEXT), 'null') FROM ua_marks ORDER BY id").Scan(ctx, &marks); err != nil {
		t.Fatal(err)
	}
	if err := db.NewRaw("SELECT CAST(id AS TEXT) || ':' || COALESCE(CAST(list_id AS TEXT), 'null') FROM ua_pins ORDER BY id").Scan(ctx, &pins); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("notes %v tags %v marks %v pins %v", notes, tags, marks, pins)
	if want := "notes [10] tags [100] marks [1:null 2:1] pins [1:1]"; got != want {
		t.Errorf("%s after list 2 was deleted: %s, want %s", who, got, want)
	}
}

func urSchema(ctx context.Context, db bun.IDB) error {
	if err := uaSchema(ctx, db); err != nil {
		return err
	}
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS ur_holds (id BIGINT PRIMARY KEY, list_id BIGINT REFERENCES ua_lists (id))`,
		`CREATE TABLE IF NOT EXISTS ur_locks (id BIGINT PRIMARY KEY, list_id BIGINT REFERENCES ua_lists (id) ON DELETE RESTRICT)`,
		`CREATE TABLE IF NOT EXISTS ur_seals (id BIGINT PRIMARY KEY, note_id BIGINT REFERENCES ua_notes (id))`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// TestUntrackedRestrictedDelete: a push deleting a row that rows of a
// table dbsync does not track reference through a foreign key without an
// ON DELETE action (NO ACTION, RESTRICT), directly or down an untracked
// ON DELETE CASCADE, is refused with dbsync.ErrForeignKey naming that
// table, whole or in chunks, nothing of it written, on either server
// database, as PostgreSQL refuses such a delete itself; once the server's
// application removed the reference, the node's next sync pushes the
// delete. A SQLite server, which applies pushes with foreign keys off,
// accepted it and left the rows referencing the deleted row.
func TestUntrackedRestrictedDelete(t *testing.T) {
	t.Parallel()
	models := []any{(*uaList)(nil)}
	for _, srvKind := range dbtest.Kinds {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprintf("server=%s/chunked=%v", srvKind, chunked), func(t *testing.T) {
				t.Parallel()
				srv := synctest.NewServerWith(t, synctest.ServerOn(t, srvKind, urSchema, models), urSchema, models, nil)
				cfg := &client.Config{}
				if chunked {
					cfg.PushChunkOperations = 1
				}
				a := synctest.NewClientWith(t, srv, "a", dbtest.SQLite(t), urSchema, models, cfg)
				for _, name := range []string{"one", "two", "three", "four"} {
					if _, err := a.DB.NewInsert().Model(&uaList{Name: name}).Exec(ctx); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := a.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				for _, q := range []string{
					"INSERT INTO ur_holds (id, list_id) VALUES (1, 1)",
					"INSERT INTO ur_locks (id, list_id) VALUES (1, 2)",
					"INSERT INTO ua_notes (id, list_id) VALUES (10, 4)", // ON DELETE CASCADE
					"INSERT INTO ur_seals (id, note_id) VALUES (1, 10)",
				} {
					if _, err := srv.DB.ExecContext(ctx, q); err != nil {
						t.Fatal(err)
					}
				}
				lists := func() []int64 {
					var ids []int64
					if err := srv.DB.NewRaw("SELECT id FROM ua_lists ORDER BY id").Scan(ctx, &ids); err != nil {
						t.Fatal(err)
					}
					return ids
				}
				for _, tc := range []struct {
					name string
					ids  string
					held string // the table holding a reference
					kept string // the server's lists after the refusal
				}{
					{"no action", "1, 3", "ur_holds", "[1 2 3 4]"},
					{"restrict", "2", "ur_locks", "[2 4]"},
					{"cascade into no action", "4", "ur_seals", "[4]"},
				} {
					if _, err := a.DB.ExecContext(ctx, "DELETE FROM ua_lists WHERE id IN ("+tc.ids+")"); err != nil {
						t.Fatal(err)
					}
					_, err := a.Push(ctx)
					if !errors.Is(err, dbsync.ErrForeignKey) {
						t.Fatalf("%s: push deleting lists %s: %v, want dbsync.ErrForeignKey", tc.name, tc.ids, err)
					}
					if !strings.Contains(err.Error(), tc.held) {
						t.Fatalf("%s: the refusal %q does not name %s", tc.name, err, tc.held)
					}
					if got := fmt.Sprint(lists()); got != tc.kept {
						t.Fatalf("%s: the server holds lists %s after the refusal, want %s", tc.name, got, tc.kept)
					}
					if _, err := srv.DB.ExecContext(ctx, "DELETE FROM "+tc.held); err != nil {
						t.Fatal(err)
					}
					if _, err := a.Sync(ctx); err != nil {
						t.Fatalf("%s: sync once the reference is gone: %v", tc.name, err)
					}
				}
				var notes int
				if err := srv.DB.NewRaw("SELECT count(*) FROM ua_notes").Scan(ctx, &notes); err != nil {
					t.Fatal(err)
				}
				if got := fmt.Sprint(lists()); got != "[]" || notes != 0 {
					t.Fatalf("the server holds lists %s and %d notes, want none", got, notes)
				}
			})
		}
	}
}

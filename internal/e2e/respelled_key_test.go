package e2e_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/uptrace/bun"
)

// TestRespelledKeyRefused: a node holding a row of a table whose text key
// ignores case on the server (SQLite's NOCASE, a nondeterministic ICU
// collation on PostgreSQL) under another spelling than the server's
// cannot push its changes of it: Sync returns ErrPushRejected naming the
// server's spelling, at every call (the client neither loops on it nor
// drops the change), and the other node and the server hold the same
// row. Written under the server's spelling, b's change reaches a. Before,
// the server took b's update into "abc" and logged it under "ABC": a's
// pull found no such row and skipped it, and a kept the old values until
// the row changed again under its own spelling. b's key column compares
// bytes: it holds a's "abc" and its own "ABC" as two rows. (A node whose
// key ignores case as the server's does takes the server's spelling when
// it pulls: TestCaseKeyPullMerge.)
func TestRespelledKeyRefused(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			models := []any{(*testmodels.CaseCode)(nil)}
			s := synctest.NewServerWith(t, synctest.ServerDB(t, kind, "case_codes", testmodels.CreateCaseCodes, models), testmodels.CreateCaseCodes, models, nil)
			newNode := func(name, key string, schema func(context.Context, bun.IDB) error) *synctest.Client {
				db := synctest.ClientDB(t, dbtest.KindSQLite, key, schema, models)
				return synctest.NewClientWith(t, s, name, db, schema, models, nil)
			}
			a := newNode("a", "case_codes", testmodels.CreateCaseCodes)
			b := newNode("b", "case_codes_bytes", func(ctx context.Context, db bun.IDB) error {
				_, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS case_codes (code TEXT PRIMARY KEY, name TEXT NOT NULL)")
				return err
			})
			rows := func(db bun.IDB) string {
				t.Helper()
				var out []string
				if err := db.NewRaw("SELECT code || ':' || name FROM case_codes ORDER BY code").Scan(ctx, &out); err != nil {
					t.Fatal(err)
				}
				return strings.Join(out, ",")
			}
			run(t, a.DB, "INSERT INTO case_codes (code, name) VALUES ('abc', 'a1')")
			mustSync(t, a)
			run(t, b.DB, "INSERT INTO case_codes (code, name) VALUES ('ABC', 'b1')")
			var errs []error
			sync := func() {
				_, err := b.Sync(ctx)
				errs = append(errs, err)
			}
			sync() // pulls a's row "abc", b's insert of "ABC" still pending
			run(t, b.DB, "UPDATE case_codes SET name = 'b2' WHERE code = 'ABC'")
			sync()
			sync()
			mustSync(t, a)
			if got, want := rows(a.DB), rows(s.DB); got != want {
				t.Fatalf("a holds %s, the server %s: diverged", got, want)
			}
			for i, err := range errs {
				if !errors.Is(err, dbsync.ErrPushRejected) || !strings.Contains(err.Error(), `which the server holds as "abc"`) {
					t.Fatalf("b's sync %d: %v, want ErrPushRejected naming abc", i, err)
				}
			}
			if pendingCount(t, b) == 0 {
				t.Fatal("b's refused change is no longer pending")
			}
			// Under the server's spelling, b's change goes through.
			run(t, b.DB, "DELETE FROM case_codes WHERE code = 'ABC'")
			run(t, b.DB, "UPDATE case_codes SET name = 'b3' WHERE code = 'abc'")
			mustSync(t, b)
			mustSync(t, a)
			for name, got := range map[string]string{"a": rows(a.DB), "b": rows(b.DB), "the server": rows(s.DB)} {
				if got != "abc:b3" {
					t.Fatalf("%s holds %s, want abc:b3", name, got)
				}
			}
		})
	}
}

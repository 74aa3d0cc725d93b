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
// ignores case (SQLite's NOCASE, a nondeterministic ICU collation on the
// PostgreSQL server) under another spelling than the server's (b created
// "ABC" offline while a pushed "abc"; its first sync pulled a's row into
// its own) cannot push its changes of it: Sync returns ErrPushRejected
// naming the server's spelling, at every call (the client neither loops
// on it nor drops the change), and the other node and the server hold
// the same row. Written under the server's spelling, b's change reaches
// a. Before, the server took b's update into "abc" and logged it under
// "ABC": a's pull found no such row and skipped it, and a kept the old
// values until the row changed again under its own spelling.
func TestRespelledKeyRefused(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			models := []any{(*testmodels.CaseCode)(nil)}
			s := synctest.NewServerWith(t, synctest.ServerDB(t, kind, "case_codes", testmodels.CreateCaseCodes, models), testmodels.CreateCaseCodes, models, nil)
			newNode := func(name string) *synctest.Client {
				db := synctest.ClientDB(t, dbtest.KindSQLite, "case_codes", testmodels.CreateCaseCodes, models)
				return synctest.NewClientWith(t, s, name, db, testmodels.CreateCaseCodes, models, nil)
			}
			a, b := newNode("a"), newNode("b")
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
			sync() // pulls a's row into b's "ABC", its insert still pending
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
			run(t, b.DB, "UPDATE case_codes SET code = 'abc', name = 'b3' WHERE code = 'ABC'")
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

package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// TestInvalidUTF8Key: a row written by SQL with a text key that is not
// valid UTF-8 (SQLite stores any bytes as text). Its Push and Sync fail
// with a *dbsync.ValueError naming the table and the key, nothing pushed,
// until the application deletes or rewrites the row by SQL; then the
// node syncs and the other node gets the rest. Before, the push read the
// row by a key bun's literal had changed (invalid bytes replaced), found
// none, and Sync succeeded: the row stayed on its node, never synced, and
// nothing said so.
func TestInvalidUTF8Key(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const bad = "CAST(X'C328' AS TEXT)" // "\xc3("
	cases := []struct {
		name, fix string
		want      []string
	}{
		{"deleted", "DELETE FROM case_codes WHERE code = " + bad, []string{"ok fine"}},
		{"rewritten", "UPDATE case_codes SET code = 'fixed' WHERE code = " + bad, []string{"fixed bad", "ok fine"}},
	}
	for _, kind := range dbtest.Kinds {
		for _, tc := range cases {
			for _, chunk := range []int{0, 1} {
				t.Run(fmt.Sprintf("%s/%s/chunk=%d", kind, tc.name, chunk), func(t *testing.T) {
					t.Parallel()
					mods := []any{(*testmodels.CaseCode)(nil)}
					s := synctest.NewServerWith(t, dbtest.Open(t, kind), testmodels.CreateCaseCodes, mods, nil)
					a := synctest.NewClientWith(t, s, "a", dbtest.Open(t, dbtest.KindSQLite), testmodels.CreateCaseCodes, mods, &client.Config{PushChunkOperations: chunk})
					b := synctest.NewClientWith(t, s, "b", dbtest.Open(t, dbtest.KindSQLite), testmodels.CreateCaseCodes, mods, nil)
					exec(t, a.DB, "INSERT INTO case_codes (code, name) VALUES ('ok', 'fine')")
					exec(t, a.DB, "INSERT INTO case_codes (code, name) VALUES ("+bad+", 'bad')")
					_, err := a.Sync(ctx)
					var ve *dbsync.ValueError
					if !errors.As(err, &ve) || ve.Table != "case_codes" || ve.Key != "\xc3(" {
						t.Fatalf("sync: %v; want a *dbsync.ValueError naming case_codes and the key", err)
					}
					if got := caseCodes(t, s.DB); len(got) != 0 {
						t.Fatalf("the server holds %q after the refused push, want nothing", got)
					}
					exec(t, a.DB, tc.fix)
					if _, err := a.Sync(ctx); err != nil {
						t.Fatalf("sync after the row was %s: %v", tc.name, err)
					}
					if _, err := b.Sync(ctx); err != nil {
						t.Fatal(err)
					}
					for _, n := range []struct {
						name string
						rows []string
					}{{"the server", caseCodes(t, s.DB)}, {"b", caseCodes(t, b.DB)}} {
						if !slices.Equal(n.rows, tc.want) {
							t.Errorf("%s holds %q, want %q", n.name, n.rows, tc.want)
						}
					}
				})
			}
		}
	}
}

// TestInvalidUTF8KeyDeleteOnly: a row with a text key that is not valid
// UTF-8, written before the node's capture was installed (never logged as
// inserted), is deleted: the delete is dropped from the push (no other
// node can hold the row, and its key, sent, would name another), and the
// server's row whose key is that key with its invalid byte replaced by
// U+FFFD stays. Before, the push sent the key's raw bytes, the server
// refused it as a bad request, and the node could push nothing more.
func TestInvalidUTF8KeyDeleteOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, kind := range dbtest.Kinds {
		for _, chunk := range []int{0, 1} {
			t.Run(fmt.Sprintf("%s/chunk=%d", kind, chunk), func(t *testing.T) {
				t.Parallel()
				mods := []any{(*testmodels.CaseCode)(nil)}
				s := synctest.NewServerWith(t, dbtest.Open(t, kind), testmodels.CreateCaseCodes, mods, nil)
				b := synctest.NewClientWith(t, s, "b", dbtest.Open(t, dbtest.KindSQLite), testmodels.CreateCaseCodes, mods, nil)
				exec(t, b.DB, "INSERT INTO case_codes (code, name) VALUES ('\uFFFD(', 'replaced')")
				syncNode(t, b)
				db := dbtest.Open(t, dbtest.KindSQLite)
				if err := testmodels.CreateCaseCodes(ctx, db); err != nil {
					t.Fatal(err)
				}
				exec(t, db, "INSERT INTO case_codes (code, name) VALUES (CAST(X'C328' AS TEXT), 'bad')")
				a := synctest.NewClientWith(t, s, "a", db, testmodels.CreateCaseCodes, mods, &client.Config{PushChunkOperations: chunk})
				exec(t, a.DB, "DELETE FROM case_codes WHERE name = 'bad'")
				exec(t, a.DB, "INSERT INTO case_codes (code, name) VALUES ('ok', 'fine')")
				syncNode(t, a)
				want := []string{"ok fine", "\uFFFD( replaced"}
				if got := caseCodes(t, s.DB); !slices.Equal(got, want) {
					t.Errorf("the server holds %q, want %q", got, want)
				}
			})
		}
	}
}

// caseCodes lists a database's case_codes as "code name", sorted.
func caseCodes(t *testing.T, db bun.IDB) []string {
	t.Helper()
	var rows []string
	if err := db.NewRaw("SELECT code || ' ' || name FROM case_codes ORDER BY code").Scan(context.Background(), &rows); err != nil {
		t.Fatal(err)
	}
	return rows
}

package peerhttp_test

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
)

// TestOddKeysHTTP: rows with unusual text keys (testmodels.OddTextKeys,
// and one of 300 kB between SQLite nodes) written on a SQLite node and
// edited on its peer reach each other as written over peerhttp (keys
// travel in JSON bodies, never in URLs or SQL literals).
func TestOddKeysHTTP(t *testing.T) {
	t.Parallel()
	keys := append(testmodels.OddTextKeys(), strings.Repeat("z", 300<<10))
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			models := []any{(*oddCode)(nil)}
			b := synctest.NewTemplateNode(t, kind, "odd_codes", createOdd, models, nil)
			srv := httptest.NewServer(peerhttp.NewHandler(b, &peerhttp.Config{Secret: meshSecret}))
			t.Cleanup(srv.Close)
			a := synctest.NewTemplateNode(t, dbtest.KindSQLite, "odd_codes", createOdd, models, nil)
			for i, k := range keys {
				if kind == dbtest.KindPostgres && len(k) > 3000 {
					continue
				}
				if _, err := a.DB().NewInsert().Model(&oddCode{Code: k, Name: fmt.Sprint(i)}).Exec(ctx); err != nil {
					t.Fatal(err)
				}
			}
			p := &peerhttp.Peer{URL: srv.URL, Secret: meshSecret, Self: a}
			if _, err := a.Sync(ctx, p); err != nil {
				t.Fatal(err)
			}
			for i, k := range keys {
				if i%2 == 0 {
					if _, err := b.DB().NewUpdate().Model(&oddCode{Code: k, Name: "b"}).WherePK().Exec(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
			if _, err := a.Sync(ctx, p); err != nil {
				t.Fatal(err)
			}
			if got, want := oddRows(t, b), oddRows(t, a); !slices.Equal(got, want) {
				t.Errorf("b holds %d rows, a %d", len(got), len(want))
			}
		})
	}
}

// TestSpellingsHTTP: "abc" on one node and "ABC" on its peer under a key
// collation that ignores case fail the sync over peerhttp with
// peer.ErrConstraint (the 409 constraint answer), as directly
// (TestConcurrentKeySpellings).
func TestSpellingsHTTP(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			models := []any{(*testmodels.CaseCode)(nil)}
			b := synctest.NewTemplateNode(t, kind, "case_codes", testmodels.CreateCaseCodes, models, nil)
			srv := httptest.NewServer(peerhttp.NewHandler(b, &peerhttp.Config{Secret: meshSecret}))
			t.Cleanup(srv.Close)
			a := synctest.NewTemplateNode(t, dbtest.KindSQLite, "case_codes", testmodels.CreateCaseCodes, models, nil)
			if _, err := a.DB().ExecContext(ctx, "INSERT INTO case_codes (code, name) VALUES ('abc', 'a')"); err != nil {
				t.Fatal(err)
			}
			if _, err := b.DB().ExecContext(ctx, "INSERT INTO case_codes (code, name) VALUES ('ABC', 'b')"); err != nil {
				t.Fatal(err)
			}
			p := &peerhttp.Peer{URL: srv.URL, Secret: meshSecret, Self: a}
			if _, err := a.Sync(ctx, p); !errors.Is(err, peer.ErrConstraint) {
				t.Fatalf("sync: %v", err)
			}
		})
	}
}

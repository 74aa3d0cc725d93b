package peerhttp_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
)

// TestKeyTooLargeForIndex: a SQLite node's row whose text key is too
// large for PostgreSQL's indexes (about 2.7 kB; SQLite has no such
// limit) fails the PostgreSQL peer's apply with a *dbsync.ValueError
// naming the table (dbsync.ErrBadRequest), nothing applied, over HTTP and
// directly, until the row is rewritten; then the rest syncs. Before, the
// direct sync failed in the database's own words and the HTTP one was
// answered 500 internal error, at every sync. From a SQLite peer the
// row syncs.
func TestKeyTooLargeForIndex(t *testing.T) {
	t.Parallel()
	var sb strings.Builder
	x := uint32(1)
	for sb.Len() < 3000 {
		x = x*1664525 + 1013904223
		sb.WriteByte(byte('a' + (x>>24)%26)) // incompressible
	}
	big := sb.String()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			models := []any{(*oddCode)(nil)}
			b := synctest.NewTemplateNode(t, kind, "odd_codes", createOdd, models, nil)
			srv := httptest.NewServer(peerhttp.NewHandler(b, &peerhttp.Config{Secret: meshSecret}))
			t.Cleanup(srv.Close)
			a := synctest.NewTemplateNode(t, dbtest.KindSQLite, "odd_codes", createOdd, models, nil)
			for _, c := range []oddCode{{Code: "ok", Name: "fine"}, {Code: big, Name: "big"}} {
				if _, err := a.DB().NewInsert().Model(&c).Exec(ctx); err != nil {
					t.Fatal(err)
				}
			}
			p := &peerhttp.Peer{URL: srv.URL, Secret: meshSecret, Self: a}
			if kind == dbtest.KindPostgres {
				_, err := b.Sync(ctx, a.AsPeer())
				if ve := (*dbsync.ValueError)(nil); !errors.As(err, &ve) || ve.Table != "odd_codes" || !errors.Is(err, dbsync.ErrBadRequest) {
					t.Fatalf("b syncs with a: %v, want a *dbsync.ValueError naming odd_codes", err)
				}
				if _, err := a.Sync(ctx, p); !errors.Is(err, dbsync.ErrBadRequest) || !strings.Contains(err.Error(), "odd_codes") {
					t.Fatalf("a syncs with b over HTTP: %v, want a bad request naming odd_codes", err)
				}
				if got := oddRows(t, b); len(got) != 0 {
					t.Fatalf("b holds %q after the refused syncs, want nothing", got)
				}
				if _, err := a.DB().ExecContext(ctx, "UPDATE odd_codes SET code = 'short' WHERE name = 'big'"); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := a.Sync(ctx, p); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Sync(ctx, a.AsPeer()); err != nil {
				t.Fatal(err)
			}
			if got, want := oddRows(t, b), oddRows(t, a); !slices.Equal(got, want) || len(want) != 2 {
				t.Errorf("b holds %d rows, a %d, want the same 2", len(got), len(want))
			}
		})
	}
}

type oddCode struct {
	bun.BaseModel `bun:"table:odd_codes"`
	Code          string `bun:"code,pk"`
	Name          string `bun:"name,notnull"`
}

func createOdd(ctx context.Context, db bun.IDB) error {
	_, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS odd_codes (code TEXT PRIMARY KEY, name TEXT NOT NULL)")
	return err
}

func oddRows(t *testing.T, n *peer.Node) []string {
	var cs []oddCode
	if err := n.DB().NewSelect().Model(&cs).Scan(ctx); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%q %s", c.Code, c.Name))
	}
	slices.Sort(out)
	return out
}

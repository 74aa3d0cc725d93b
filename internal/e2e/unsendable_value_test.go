package e2e_test

import (
	"context"
	"errors"
	"math"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
	"github.com/go-dbsync/dbsync/stream"
)

// A row the server holds that dbsync cannot carry (an infinity written
// by SQL: the wire is JSON) fails a node's pull and repair with an error
// naming table, key and column, as a node's own such row fails its push.
// Before, the node got only "internal error (request …)", whatever it
// tried, and could not tell what to rewrite.
func TestServerRowItCannotSendNamed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			s := synctest.NewServer(t, kind, nil)
			b := synctest.NewClient(t, s, "b", nil)
			inf := "'Infinity'"
			if kind == dbtest.KindSQLite {
				inf = "9e999" // SQLite reads it as +Inf
			}
			id := "00000000-0000-4000-8000-000000000001"
			run(t, s.DB, "INSERT INTO notes (id, body, created, score) VALUES (?, 'x', CURRENT_TIMESTAMP, "+inf+")", id)
			want := `notes.score of row "` + id + `"`
			for _, op := range []struct {
				name string
				do   func() error
			}{
				{"pull", func() error { _, err := b.Sync(ctx); return err }},
				{"repair", func() error { _, err := b.Repair(ctx, nil); return err }},
			} {
				err := op.do()
				if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "+Inf") {
					t.Errorf("%s: %v, want an error naming %s and the value", op.name, err, want)
				}
			}
		})
	}
}

// A row a peer holds that dbsync cannot carry (a NaN, an infinity) fails
// the sync of a node pulling it, over peerhttp and over stream sync, with
// an error naming table, key and column. Before, the puller got only
// "internal error".
func TestPeerRowItCannotSendNamed(t *testing.T) {
	t.Parallel()
	secret := []byte("the mesh secret")
	syncs := []struct {
		name string
		sync func(ctx context.Context, t *testing.T, a, b *peer.Node) error
	}{
		{"peerhttp", func(ctx context.Context, t *testing.T, a, b *peer.Node) error {
			srv := httptest.NewServer(peerhttp.NewHandler(a, &peerhttp.Config{Secret: secret}))
			t.Cleanup(srv.Close)
			_, err := b.Sync(ctx, &peerhttp.Peer{URL: srv.URL, Secret: secret, Self: b})
			return err
		}},
		{"stream", func(ctx context.Context, t *testing.T, a, b *peer.Node) error {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(ctx)
			served := make(chan error, 1)
			go func() { served <- stream.Serve(ctx, ln, a, &stream.Config{Secret: secret}) }()
			defer func() {
				cancel()
				<-served
			}()
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				return err
			}
			_, err = stream.Sync(ctx, conn, b, &stream.Config{Secret: secret})
			return err
		}},
	}
	values := []struct {
		name string
		f    float64
		text string
	}{{"NaN", math.NaN(), "NaN"}, {"+Inf", math.Inf(1), "+Inf"}, {"-Inf", math.Inf(-1), "-Inf"}}
	for _, via := range syncs {
		for _, kind := range dbtest.Kinds {
			for _, v := range values {
				t.Run(via.name+"/"+kind+"/"+v.name, func(t *testing.T) {
					t.Parallel()
					ctx := context.Background()
					models := []any{(*fidelityRow)(nil)}
					schema := synctest.CreateTables(models...)
					a := synctest.NewNodeWith(t, synctest.NodeDB(t, kind, "fidelity", schema), models, nil)
					b := synctest.NewNodeWith(t, synctest.NodeDB(t, dbtest.KindSQLite, "fidelity", schema), models, nil)
					if _, err := a.DB().NewInsert().Model(&fidelityRow{ID: 1, F64: v.f}).Exec(ctx); err != nil {
						t.Fatal(err)
					}
					err := via.sync(ctx, t, a, b)
					if err == nil || !strings.Contains(err.Error(), "fidelity_rows.f64 of row") || !strings.Contains(err.Error(), v.text) {
						t.Fatalf("sync: %v, want an error naming fidelity_rows.f64 and %s", err, v.text)
					}
				})
			}
		}
	}
}

// bigUint is a model whose uint64 column, numeric on PostgreSQL, holds
// values above 2^63-1.
type bigUint struct {
	bun.BaseModel `bun:"table:big_uints"`
	ID            int64   `bun:"id,pk,autoincrement"`
	N             uint64  `bun:"n,type:numeric"`
	F             float64 `bun:"f"`
	S             string  `bun:"s"`
}

// Values dbsync does not carry are refused with an error naming table,
// key and column, on every database: a node's NaN or infinity stops its
// push with a *dbsync.ValueError, and a uint64 above 2^63-1 (which a
// PostgreSQL node's numeric column holds) and text with a NUL (which
// SQLite holds) are refused by the server with 400 bad_request (README, "Data is stored as sent, or refused").
func TestNodeValueNotCarriedRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := []struct {
		name string
		node string // the node's database; "" for each
		row  bigUint
		want string
		// typed: the node refuses it itself, with a *dbsync.ValueError
		typed bool
		sql   string // written by this SQL instead (bun cannot write it)
	}{
		{"NaN", "", bigUint{F: math.NaN()}, "big_uints.f of row \"1\": float value NaN has no JSON form", true, ""},
		{"+Inf", "", bigUint{F: math.Inf(1)}, "big_uints.f of row \"1\": float value +Inf has no JSON form", true, ""},
		{"uint64 max", dbtest.KindPostgres, bigUint{N: math.MaxUint64}, "400 bad_request: dbsync: big_uints.n of row \"1\"", false, ""},
		{"text with NUL", dbtest.KindSQLite, bigUint{}, "400 bad_request: dbsync: big_uints.s of row \"1\": dbsync: bad request: text contains a NUL character", false,
			"INSERT INTO big_uints (id, n, f, s) VALUES (1, 0, 0, CAST(X'610062' AS TEXT))"},
	}
	for _, c := range cases {
		for _, server := range dbtest.Kinds {
			for _, node := range dbtest.Kinds {
				if c.node != "" && node != c.node {
					continue
				}
				t.Run(c.name+"/"+server+"/"+node, func(t *testing.T) {
					t.Parallel()
					models := []any{(*bigUint)(nil)}
					schema := synctest.CreateTables(models...)
					s := synctest.NewServerWith(t, synctest.TablesServerDB(t, server, models), schema, models, nil)
					a := synctest.NewClientWith(t, s, "a", synctest.TablesClientDB(t, node, models), schema, models, nil)
					r := c.row
					r.ID = 1
					if c.sql != "" {
						run(t, a.DB, c.sql)
					} else if _, err := a.DB.NewInsert().Model(&r).Exec(ctx); err != nil {
						t.Fatal(err)
					}
					_, err := a.Sync(ctx)
					if err == nil || !strings.Contains(err.Error(), c.want) {
						t.Fatalf("sync: %v, want an error with %q", err, c.want)
					}
					if ve := (*dbsync.ValueError)(nil); c.typed && !errors.As(err, &ve) {
						t.Fatalf("sync: %T %v, want a *dbsync.ValueError", err, err)
					}
					var n int
					if err := s.DB.NewRaw("SELECT count(*) FROM big_uints").Scan(ctx, &n); err != nil || n != 0 {
						t.Fatalf("the server holds %d rows (%v), want none", n, err)
					}
				})
			}
		}
	}
}

package e2e_test

// A harness for states a node once could not sync out of, on a server
// without scopes: nodes sync until they settle, the application renaming
// the rows a U4 error names and giving up the changes a ScopeError names,
// and must then hold what the server holds.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// h2Node is a self-referencing tree with a unique code.
type h2Node struct {
	bun.BaseModel `bun:"table:h2_nodes"`
	ID            int64   `bun:"id,pk,autoincrement"`
	ParentID      *int64  `bun:"parent_id"`
	Code          string  `bun:"code,notnull,unique"`
	Note          string  `bun:"note,notnull,default:''"`
	Parent        *h2Node `bun:"rel:belongs-to,join:parent_id=id,on_delete:CASCADE"`
}

// h2Item belongs to a node, with a unique sku.
type h2Item struct {
	bun.BaseModel `bun:"table:h2_items"`
	ID            int64   `bun:"id,pk,autoincrement"`
	NodeID        int64   `bun:"node_id,notnull"`
	Sku           string  `bun:"sku,notnull,unique"`
	Node          *h2Node `bun:"rel:belongs-to,join:node_id=id,on_delete:CASCADE"`
}

// h2Sub belongs to an item (no cascade: restrict).
type h2Sub struct {
	bun.BaseModel `bun:"table:h2_subs"`
	ID            int64   `bun:"id,pk,autoincrement"`
	ItemID        int64   `bun:"item_id,notnull"`
	Title         string  `bun:"title,notnull"`
	Item          *h2Item `bun:"rel:belongs-to,join:item_id=id"`
}

func h2Models() []any { return []any{(*h2Node)(nil), (*h2Item)(nil), (*h2Sub)(nil)} }

func h2Create(ctx context.Context, db bun.IDB) error {
	for _, m := range h2Models() {
		if _, err := db.NewCreateTable().Model(m).IfNotExists().WithForeignKeys().Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

type h2Env struct {
	t     *testing.T
	ctx   context.Context
	kind  string
	clk   *dbtest.Clock
	srv   *synctest.Server
	ns    []*synctest.Client
	fixes int
}

func h2Start(t *testing.T, kind string, n int, ccfg *client.Config) *h2Env {
	t.Helper()
	clk := dbtest.NewClock(time.Now())
	scfg := &server.Config{Now: clk.Now, ClockSkew: 1000 * time.Hour, NodeHorizon: 24 * time.Hour}
	e := &h2Env{t: t, ctx: context.Background(), kind: kind, clk: clk}
	e.srv = synctest.NewServerWith(t, synctest.ServerDB(t, kind, "h2", h2Create, h2Models()), h2Create, h2Models(), scfg)
	for i := range n {
		name := string(rune('a' + i))
		e.ns = append(e.ns, synctest.NewClientWith(t, e.srv, name, synctest.ClientDB(t, kind, "h2", h2Create, h2Models()), h2Create, h2Models(), ccfg))
	}
	return e
}

func (e *h2Env) exec(n *synctest.Client, qs ...string) {
	e.t.Helper()
	for _, q := range qs {
		run(e.t, n.DB, q)
	}
}

func (e *h2Env) sync(n *synctest.Client) {
	e.t.Helper()
	mustSync(e.t, n)
}

// settle syncs every node a few rounds; a node whose every sync fails in
// the last two rounds is stuck. Then all must converge.
func (e *h2Env) settle() {
	e.t.Helper()
	var last map[string][]string
	for round := range 4 {
		last = map[string][]string{}
		for _, n := range e.ns {
			if _, err := n.Sync(e.ctx); err != nil {
				last[n.Name] = append(last[n.Name], err.Error())
				e.t.Logf("round %d: %s: %v", round, n.Name, err)
				e.fixU4(n, err)
			}
		}
	}
	if len(last) > 0 {
		var b strings.Builder
		for k, v := range last {
			fmt.Fprintf(&b, "%s: %s; ", k, strings.Join(v, " | "))
		}
		for _, n := range e.ns {
			if last[n.Name] == nil {
				continue
			}
			_, rerr := n.Reset(e.ctx)
			_, serr := n.Sync(e.ctx)
			fmt.Fprintf(&b, "[%s: Reset: %v; Sync after: %v] ", n.Name, rerr, serr)
		}
		e.t.Fatalf("nodes still fail to sync: %s", b.String())
	}
	for _, n := range e.ns {
		p, err := n.Pending(e.ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		if len(p) > 0 {
			e.t.Errorf("%s still has pending %v", n.Name, p)
		}
	}
	want := synctest.Dump(e.t, e.srv.DB, e.srv.Reg)
	for _, n := range e.ns {
		if d := synctest.Diff(want, synctest.Dump(e.t, n.DB, e.srv.Reg)); d != "" {
			e.t.Errorf("%s differs from the server:\n%s", n.Name, d)
		}
	}
}

// fixU4 does what the application is told to do on a U4 conflict: it
// changes the named rows' unique values.
func (e *h2Env) fixU4(n *synctest.Client, err error) {
	e.t.Helper()
	var uc *dbsync.UniqueConstraintError
	if !errors.As(err, &uc) {
		return
	}
	for i, en := range uc.Entries {
		col := map[string]string{"h2_nodes": "code", "h2_items": "sku"}[en.Table]
		if col == "" {
			continue
		}
		e.fixes++
		e.exec(n, fmt.Sprintf("UPDATE %s SET %s = 'fix-%s-%d-%d' WHERE id = %s", en.Table, col, n.Name, e.fixes, i, en.PK))
		e.t.Logf("%s: application renames %s %s", n.Name, en.Table, en.PK)
	}
}

func (e *h2Env) count(db bun.IDB, q string) int {
	e.t.Helper()
	var n int
	if err := db.NewRaw(q).Scan(e.ctx, &n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// h2Run runs scenario on every kind with every client configuration of
// ccfgs (whole and chunked pulls, policies); under the race detector at
// default size, pairs (configVariants).
func h2Run(t *testing.T, ccfgs map[string]*client.Config, n int, scenario func(e *h2Env)) {
	t.Parallel()
	configVariants(t, ccfgs, func(t *testing.T, kind string, cfg *client.Config) {
		scenario(h2Start(t, kind, n, cfg))
	})
}

// configVariants runs fn on every kind with every configuration of cfgs,
// as subtests kind/name; without the full product (fullProduct), each
// configuration on one kind, in turn, so that every kind and every
// configuration still run.
func configVariants(t *testing.T, cfgs map[string]*client.Config, fn func(t *testing.T, kind string, cfg *client.Config)) {
	names := slices.Sorted(maps.Keys(cfgs))
	for k, kind := range dbtest.Kinds {
		for j, name := range names {
			if !fullProduct() && len(names) > 1 && j%len(dbtest.Kinds) != k {
				continue
			}
			cfg := cfgs[name]
			t.Run(kind+"/"+name, func(t *testing.T) { fn(t, kind, cfg) })
		}
	}
}

var h2Plain = map[string]*client.Config{"whole": nil, "chunk1": {ChunkSize: 1}}

func h2Seed(e *h2Env) {
	a := e.ns[0]
	e.exec(a,
		"INSERT INTO h2_nodes (id, parent_id, code) VALUES (1, NULL, 'x'), (2, NULL, 'y'), (3, NULL, 'z'), (4, 1, 'w')",
		"INSERT INTO h2_items (id, node_id, sku) VALUES (1, 1, 's1'), (2, 2, 's2'), (3, 4, 's3')",
		"INSERT INTO h2_subs (id, item_id, title) VALUES (1, 1, 't1')")
	for _, n := range e.ns {
		e.sync(n)
	}
}

// giveUp syncs c, which must be refused with a *dbsync.ScopeError naming
// want only, gives that change up (DiscardPending), as an application
// would, and syncs twice more, which must succeed.
func giveUp(t *testing.T, c *client.Client, want protocol.ScopeEntry) {
	t.Helper()
	ctx := context.Background()
	_, err := c.Sync(ctx)
	var se *dbsync.ScopeError
	if !errors.As(err, &se) || len(se.Entries) != 1 || se.Entries[0] != want {
		t.Fatalf("sync: %v, want a ScopeError naming %v", err, want)
	}
	if err := c.DiscardPending(ctx, se.Entries); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := c.Sync(ctx); err != nil {
			t.Fatalf("sync %d after giving %v up: %v", i, want, err)
		}
	}
}

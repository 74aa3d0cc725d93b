package e2e_test

// Resets (a node offline past the trim horizon) on a scoped server,
// combined with scope changes, schema upgrades and DiscardPending.
// Each scenario follows the documented remedies and then checks that the
// node holds what a fresh node of the same user pulls.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/server"
)

// Release 2 of the stuck schema: tasks gain a note, and comments (through
// their task) are new.
type h5Task2 struct {
	bun.BaseModel `bun:"table:stuck_tasks"`
	ID            int64         `bun:"id,pk,autoincrement"`
	ProjectID     int64         `bun:"project_id,notnull"`
	LabelID       *int64        `bun:"label_id"`
	Title         string        `bun:"title,notnull"`
	Note          *string       `bun:"note"`
	Project       *stuckProject `bun:"rel:belongs-to,join:project_id=id,on_delete:CASCADE"`
	Label         *stuckLabel   `bun:"rel:belongs-to,join:label_id=id"`
}

type h5Comment struct {
	bun.BaseModel `bun:"table:stuck_comments"`
	ID            int64    `bun:"id,pk,autoincrement"`
	TaskID        int64    `bun:"task_id,notnull"`
	Body          string   `bun:"body,notnull"`
	Task          *h5Task2 `bun:"rel:belongs-to,join:task_id=id,on_delete:CASCADE"`
}

func h5ModelsV2() []any {
	return []any{(*stuckLabel)(nil), (*stuckProject)(nil), (*stuckMember)(nil), (*h5Task2)(nil), (*h5Comment)(nil)}
}

func h5CreateV2(ctx context.Context, db bun.IDB) error {
	for _, m := range h5ModelsV2() {
		if _, err := db.NewCreateTable().Model(m).IfNotExists().WithForeignKeys().Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

// h5Migrate is release 2's migration on a node of release 1.
func h5Migrate(ctx context.Context, db bun.IDB) error {
	if _, err := db.ExecContext(ctx, "ALTER TABLE stuck_tasks ADD COLUMN note VARCHAR"); err != nil {
		return err
	}
	_, err := db.NewCreateTable().Model((*h5Comment)(nil)).WithForeignKeys().Exec(ctx)
	return err
}

func h5Rules(v2 bool) server.Scopes {
	r := stuckRules()
	if v2 {
		r["stuck_comments"] = server.ThroughParent("task_id")
	}
	return r
}

type h5Env struct {
	t    *testing.T
	ctx  context.Context
	kind string
	v2   bool
	cfg  *client.Config
	clk  *dbtest.Clock
	srv  *synctest.Server
	ann  *synctest.Client
	bob  *synctest.Client
	n    int
}

// h5Start: a scoped server of release 1 (or 2), ann's node (of the
// server's release) and bob's of release 1.
func h5Start(t *testing.T, kind string, v2 bool, cfg *client.Config) *h5Env {
	t.Helper()
	e := &h5Env{t: t, ctx: context.Background(), kind: kind, v2: v2, cfg: cfg, clk: dbtest.NewClock(time.Now())}
	scfg := &server.Config{AuthorizeRegister: synctest.BearerUser, Scopes: h5Rules(v2),
		Now: e.clk.Now, ClockSkew: 1000 * time.Hour, NodeHorizon: 24 * time.Hour}
	if v2 {
		e.srv = synctest.NewServerWith(t, synctest.ServerDB(t, kind, "h5v2", h5CreateV2, h5ModelsV2()), h5CreateV2, h5ModelsV2(), scfg)
		e.ann = synctest.NewClientAs(t, e.srv, "ann/phone", "Bearer ann", synctest.ClientDB(t, kind, "h5v2", h5CreateV2, h5ModelsV2()), h5CreateV2, h5ModelsV2(), cfg)
	} else {
		e.srv = synctest.NewServerWith(t, synctest.ServerDB(t, kind, "stuck", createStuck, stuckModels()), createStuck, stuckModels(), scfg)
		e.ann = synctest.NewClientAs(t, e.srv, "ann/phone", "Bearer ann", synctest.ClientDB(t, kind, "stuck", createStuck, stuckModels()), createStuck, stuckModels(), cfg)
	}
	e.bob = synctest.NewClientAs(t, e.srv, "bob/phone", "Bearer bob", synctest.ClientDB(t, kind, "stuck", createStuck, stuckModels()), createStuck, stuckModels(), cfg)
	return e
}

func (e *h5Env) exec(c *synctest.Client, qs ...string) {
	e.t.Helper()
	for _, q := range qs {
		run(e.t, c.DB, q)
	}
}

func (e *h5Env) sync(c *synctest.Client) {
	e.t.Helper()
	mustSync(e.t, c)
}

// trimPast leaves bob behind the trim: ann writes after the clock moved,
// syncs twice, and the server trims.
func (e *h5Env) trimPast() {
	e.t.Helper()
	e.clk.Advance(25 * time.Hour)
	e.exec(e.ann, "INSERT INTO stuck_labels (id, owner_id, name) VALUES (900, 'ann', 'trim')")
	e.sync(e.ann)
	e.exec(e.ann, "UPDATE stuck_labels SET name = 'trimmed' WHERE id = 900")
	e.sync(e.ann)
	if tr, err := e.srv.Srv.Trim(e.ctx); err != nil || tr.RetiredNodes == 0 {
		e.t.Fatalf("trim %+v %v", tr, err)
	}
}

// upgradeBob migrates bob's database to release 2 and opens his node again
// with release 2's models.
func (e *h5Env) upgradeBob() {
	e.t.Helper()
	if err := h5Migrate(e.ctx, e.bob.DB); err != nil {
		e.t.Fatal(err)
	}
	reg, err := dbsync.Track(e.bob.DB, h5ModelsV2()...)
	if err != nil {
		e.t.Fatal(err)
	}
	c := client.Config{}
	if e.cfg != nil {
		c = *e.cfg
	}
	if e.srv.HTTP == nil {
		c.Transport = synctest.NewTransport(e.srv.Srv)
	} else {
		c.URL = e.srv.URL
	}
	cl, err := client.New(e.ctx, e.bob.DB, reg, &c)
	if err != nil {
		e.t.Fatal(err)
	}
	e.bob = &synctest.Client{Name: e.bob.Name, DB: e.bob.DB, Reg: cl.Registry(), Client: cl}
}

// settle syncs c as an application following the documented remedies
// would: a ScopeError's rows are given up (DiscardPending), a
// UniqueConstraintError's rows renamed. The last two syncs must succeed;
// then c must hold what a fresh node of its user pulls, with nothing
// pending.
func (e *h5Env) settle(c *synctest.Client, user string) {
	e.t.Helper()
	var errs []string
	var last []error
	for i := range 6 {
		_, err := c.Sync(e.ctx)
		last = append(last, err)
		if err == nil {
			continue
		}
		errs = append(errs, fmt.Sprintf("sync %d: %v", i, err))
		e.t.Logf("%s sync %d: %v", c.Name, i, err)
		var se *dbsync.ScopeError
		var uc *dbsync.UniqueConstraintError
		switch {
		case errors.As(err, &se):
			if derr := c.DiscardPending(e.ctx, se.Entries); derr != nil {
				errs = append(errs, fmt.Sprintf("DiscardPending(%v): %v", se.Entries, derr))
				e.t.Logf("%s DiscardPending(%v): %v", c.Name, se.Entries, derr)
			}
		case errors.As(err, &uc):
			for _, en := range uc.Entries {
				col := map[string]string{"stuck_projects": "name"}[en.Table]
				if col == "" {
					continue
				}
				e.n++
				e.exec(c, fmt.Sprintf("UPDATE %s SET %s = 'fix-%d' WHERE id = %s", en.Table, col, e.n, en.PK))
			}
		}
	}
	if last[len(last)-1] != nil || last[len(last)-2] != nil {
		e.t.Fatalf("%s is stuck: %s", c.Name, strings.Join(errs, "; "))
	}
	if p, err := c.Pending(e.ctx); err != nil || len(p) > 0 {
		e.t.Errorf("%s still has pending %v %v", c.Name, p, err)
	}
	e.compareFresh(c, user)
}

// compareFresh compares c with a fresh node of user.
func (e *h5Env) compareFresh(c *synctest.Client, user string) {
	e.t.Helper()
	e.n++
	key, models, create := "stuck", stuckModels(), createStuck
	if c.Reg.Table("stuck_comments") != nil {
		key, models, create = "h5v2", h5ModelsV2(), h5CreateV2
	}
	db := synctest.ClientDB(e.t, e.kind, key, create, models)
	fresh := synctest.NewClientAs(e.t, e.srv, fmt.Sprintf("%s/fresh%d", user, e.n), "Bearer "+user, db, create, models, nil)
	e.sync(fresh)
	if d := synctest.Diff(synctest.Dump(e.t, fresh.DB, fresh.Reg), synctest.Dump(e.t, c.DB, fresh.Reg)); d != "" {
		e.t.Errorf("%s differs from a fresh node of %s (fresh first):\n%s", c.Name, user, d)
	}
}

func h5Run(t *testing.T, v2 bool, cfgs map[string]*client.Config, scenario func(e *h5Env)) {
	t.Parallel()
	if cfgs == nil {
		cfgs = map[string]*client.Config{"default": nil}
	}
	configVariants(t, cfgs, func(t *testing.T, kind string, cfg *client.Config) {
		scenario(h5Start(t, kind, v2, cfg))
	})
}

var h5Both = map[string]*client.Config{"default": nil, "clientwins": {DefaultPolicy: merge.ClientWins}}

// h5Share: bob owns label 1; ann's project 10 with tasks 100, 101 is shared
// with bob (member 1000); bob labels task 100.
func h5Share(e *h5Env) {
	e.exec(e.bob, "INSERT INTO stuck_labels (id, owner_id, name) VALUES (1, 'bob', 'red')")
	e.sync(e.bob)
	e.exec(e.ann,
		"INSERT INTO stuck_projects (id, owner_id, name) VALUES (10, 'ann', 'ann10')",
		"INSERT INTO stuck_tasks (id, project_id, title) VALUES (100, 10, 't100'), (101, 10, 't101')",
		"INSERT INTO stuck_members (id, project_id, user_id) VALUES (1000, 10, 'bob')")
	e.sync(e.ann)
	e.sync(e.bob)
	e.exec(e.bob, "UPDATE stuck_tasks SET label_id = 1 WHERE id = 100")
	e.sync(e.bob)
	e.sync(e.ann)
}

// Revoked for good: bob's pending changes on rows that left his scope
// reference rows still in it (his labels, one new).
func TestResetScopeRevokedPendingRefs(t *testing.T) {
	h5Run(t, false, h5Both, func(e *h5Env) {
		h5Share(e)
		e.exec(e.bob,
			"INSERT INTO stuck_labels (id, owner_id, name) VALUES (2, 'bob', 'blue')",
			"UPDATE stuck_tasks SET label_id = 2, title = 'bob' WHERE id = 101",
			"INSERT INTO stuck_tasks (id, project_id, label_id, title) VALUES (102, 10, 2, 'bob new')",
			"DELETE FROM stuck_tasks WHERE id = 100",
			"UPDATE stuck_labels SET name = 'red2' WHERE id = 1")
		e.exec(e.ann, "DELETE FROM stuck_members WHERE id = 1000")
		e.sync(e.ann)
		e.trimPast()
		e.settle(e.bob, "bob")
		e.sync(e.ann)
		e.compareFresh(e.ann, "ann")
	})
}

// h5Share2: on a release 2 server, ann shares projects 10 and 11 with bob
// (members 1000, 1001), tasks 100 and 110; bob's node is of release 1.
func h5Share2(e *h5Env) {
	e.exec(e.bob, "INSERT INTO stuck_labels (id, owner_id, name) VALUES (1, 'bob', 'red')")
	e.sync(e.bob)
	e.exec(e.ann,
		"INSERT INTO stuck_projects (id, owner_id, name) VALUES (10, 'ann', 'ann10'), (11, 'ann', 'ann11')",
		"INSERT INTO stuck_tasks (id, project_id, title, note) VALUES (100, 10, 't100', 'n100'), (110, 11, 't110', 'n110')",
		"INSERT INTO stuck_comments (id, task_id, body) VALUES (1, 100, 'c1'), (2, 110, 'c2')",
		"INSERT INTO stuck_members (id, project_id, user_id) VALUES (1000, 10, 'bob'), (1001, 11, 'bob')")
	e.sync(e.ann)
	e.sync(e.bob)
	e.exec(e.bob, "UPDATE stuck_tasks SET label_id = 1 WHERE id IN (100, 110)")
	e.sync(e.bob)
	e.sync(e.ann)
}

// Bob, of release 1, offline past the horizon with pending changes in a
// project that stays shared and in one ann stops sharing; ann shares a
// new project and writes notes and comments; bob upgrades, writes
// comments, and syncs.
func TestResetScopeUpgrade(t *testing.T) {
	h5Run(t, true, h5Both, func(e *h5Env) {
		h5Share2(e)
		e.exec(e.bob,
			"UPDATE stuck_tasks SET title = 'bob' WHERE id IN (100, 110)",
			"INSERT INTO stuck_tasks (id, project_id, label_id, title) VALUES (101, 10, 1, 'bob new'), (111, 11, 1, 'bob new 11')")
		e.exec(e.ann,
			"UPDATE stuck_tasks SET note = 'ann' WHERE id IN (100, 110)",
			"INSERT INTO stuck_comments (id, task_id, body) VALUES (3, 100, 'c3'), (4, 110, 'c4')",
			"DELETE FROM stuck_members WHERE id = 1001",
			"INSERT INTO stuck_projects (id, owner_id, name) VALUES (12, 'ann', 'ann12')",
			"INSERT INTO stuck_tasks (id, project_id, title, note) VALUES (120, 12, 't120', 'n120')",
			"INSERT INTO stuck_comments (id, task_id, body) VALUES (5, 120, 'c5')",
			"INSERT INTO stuck_members (id, project_id, user_id) VALUES (1002, 12, 'bob')")
		e.sync(e.ann)
		e.trimPast()
		e.upgradeBob()
		e.exec(e.bob,
			"INSERT INTO stuck_comments (id, task_id, body) VALUES (1, 100, 'bob on 100'), (2, 110, 'bob on 110'), (3, 101, 'bob on 101')")
		e.settle(e.bob, "bob")
		var note string
		if err := e.srv.DB.NewRaw("SELECT note FROM stuck_tasks WHERE id = 100").Scan(e.ctx, &note); err != nil || note != "ann" {
			t.Errorf("server's note of task 100: %q %v, want ann's", note, err)
		}
		e.sync(e.ann)
		e.compareFresh(e.ann, "ann")
	})
}

// Bob's pending insert of a project whose key K1 moves (the server used
// greater keys) and whose unique name a project ann shares with him
// meanwhile holds. The reset (or the pull, without trim) fails with a
// UniqueConstraintError; renaming the named row must get him out.
func h5UniqueMoved(e *h5Env, trim bool) {
	e.sync(e.bob)
	e.exec(e.ann, "INSERT INTO stuck_projects (id, owner_id, name) VALUES (10, 'ann', 'X'), (11, 'ann', 'Y')")
	e.sync(e.ann)
	e.exec(e.bob, "INSERT INTO stuck_projects (id, owner_id, name) VALUES (5, 'bob', 'X')",
		"INSERT INTO stuck_tasks (id, project_id, title) VALUES (50, 5, 'under X')")
	e.exec(e.ann, "INSERT INTO stuck_members (id, project_id, user_id) VALUES (1000, 10, 'bob')")
	e.sync(e.ann)
	if trim {
		e.trimPast()
	}
	e.settle(e.bob, "bob")
	if n := e.count(e.srv.DB, "SELECT count(*) FROM stuck_tasks WHERE title = 'under X'"); n != 1 {
		e.t.Errorf("server holds %d of bob's task", n)
	}
}

func (e *h5Env) count(db bun.IDB, q string) int {
	e.t.Helper()
	var n int
	if err := db.NewRaw(q).Scan(e.ctx, &n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func TestResetScopeUniqueMovedKey(t *testing.T) {
	h5Run(t, false, nil, func(e *h5Env) { h5UniqueMoved(e, true) })
}

// Bob's change to a task of a project ann stopped sharing is refused; he
// gives it up (DiscardPending: the server no longer lets him read the
// task, so it is deleted locally), and ann shares the project again
// before his next pull, which brings the task with the server's values.
// Before, the task kept bob's discarded title for good, every sync
// succeeding. With trim, the change is the one a reset kept (T4, T7).
func h5DiscardThenRegrant(e *h5Env, trim bool) {
	h5Share(e)
	e.exec(e.bob, "UPDATE stuck_tasks SET title = 'bob' WHERE id = 101")
	e.exec(e.ann, "DELETE FROM stuck_members WHERE id = 1000")
	e.sync(e.ann)
	e.exec(e.ann, "UPDATE stuck_projects SET name = 'ann10 renamed' WHERE id = 10")
	e.sync(e.ann)
	if trim {
		e.trimPast()
	}
	_, err := e.bob.Sync(e.ctx)
	var se *dbsync.ScopeError
	if !errors.As(err, &se) {
		e.t.Fatalf("bob: %v, want a ScopeError", err)
	}
	if err := e.bob.DiscardPending(e.ctx, se.Entries); err != nil {
		e.t.Fatal(err)
	}
	e.exec(e.ann, "INSERT INTO stuck_members (id, project_id, user_id) VALUES (1001, 10, 'bob')")
	e.sync(e.ann)
	e.settle(e.bob, "bob")
}

func TestScopeDiscardThenRegrant(t *testing.T) {
	h5Run(t, false, nil, func(e *h5Env) { h5DiscardThenRegrant(e, false) })
}

func TestResetScopeDiscardThenRegrant(t *testing.T) {
	h5Run(t, false, nil, func(e *h5Env) { h5DiscardThenRegrant(e, true) })
}

package e2e_test

// TestRandomModels complements TestConvergence (raw SQL on NOT NULL
// columns, trims, resets, schema upgrades) and TestScopeConvergence
// (scopes): 4 nodes, each on its own SQLite file and its own policy
// (default, server wins, client wins), over HTTP, change tracked bun
// models with nullable columns, a nullable unique column (rm_groups.code),
// a composite unique (rm_items (group_id, slot)), a foreign key with ON
// DELETE CASCADE and a nullable one with ON DELETE SET NULL: through bun
// models (insert, update by primary key, delete), Where-only updates and
// deletes of several rows, raw SQL, unique swaps and a group replaced by
// one taking its code, in transactions that commit or roll back. The
// server's application writes too (direct writes). Nodes Sync, Push,
// Pull, Pull then Push, Repair (with Force when they have changes not
// pushed; then they must hold the server's rows) or stay offline, in
// random order, and now and then the server's answer to a push, a pull
// or a chunked push's commit is lost after the work. Then everyone syncs
// until nothing moves, and every node holds the server's rows, every
// server row holds values some node wrote to it, and every inserted row
// nobody deleted (nor its group) is on the server. On a SQLite server
// and a PostgreSQL one; on PostgreSQL also with two servers on one
// database, where in some rounds every node syncs at once while it and
// the server's application write (not replayable from the seed).
//
//	go test -run TestRandomModels -seed=123 ./internal/e2e/
//	DBSYNC_LONG=1 go test -run TestRandomModels ./internal/e2e/  # 60 rounds, random seed

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/merge"
)

type rmGroup struct {
	bun.BaseModel `bun:"table:rm_groups"`

	ID    int64   `bun:"id,pk,autoincrement"`
	Code  *string `bun:"code,unique"`
	Tag   string  `bun:"tag,notnull"`
	Label *string `bun:"label"`
	Score *int64  `bun:"score"`
}

type rmItem struct {
	bun.BaseModel `bun:"table:rm_items"`

	ID      int64    `bun:"id,pk,autoincrement"`
	GroupID int64    `bun:"group_id,notnull,unique:rm_items_slot"`
	Slot    *int64   `bun:"slot,unique:rm_items_slot"`
	Tag     string   `bun:"tag,notnull"`
	Note    *string  `bun:"note"`
	AltID   *int64   `bun:"alt_id"`
	Group   *rmGroup `bun:"rel:belongs-to,join:group_id=id,on_delete:CASCADE"`
	Alt     *rmGroup `bun:"rel:belongs-to,join:alt_id=id,on_delete:SET NULL"`
}

const (
	rmGroups = "rm_groups"
	rmItems  = "rm_items"
)

var rmModels = []any{(*rmGroup)(nil), (*rmItem)(nil)}

func rmSchema(ctx context.Context, db bun.IDB) error { return createModels(ctx, db, rmModels) }

var errRollback = errors.New("rolled back on purpose")

func TestRandomModels(t *testing.T) {
	t.Parallel()
	long := dbtest.Long()
	seed := *convergenceSeed
	if seed == 0 {
		seed = 20261207
		if long {
			seed = time.Now().UnixNano()
		}
	}
	rounds := 12
	if dbtest.Race() {
		rounds = 8
	}
	if long {
		rounds = 60
	}
	t.Logf("seed %d (replay with -seed=%d), %d rounds", seed, seed, rounds)
	for _, v := range []struct {
		name       string
		server     string
		twoServers bool
	}{
		{"sqlite", dbtest.KindSQLite, false},
		{"postgres", dbtest.KindPostgres, false},
		{"postgres_two_servers", dbtest.KindPostgres, true},
	} {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			runRandomModels(t, v.server, v.twoServers, rounds, seed^int64(len(v.name))<<32)
		})
	}
}

// rmWorld is one run; shadows as cvWorld's: by tag, every value a node
// wrote to the row.
type rmWorld struct {
	t       *testing.T
	ctx     context.Context
	rng     *rand.Rand
	srv     *synctest.Server
	nodes   []*rmNode
	direct  *rmNode                 // the server's application
	losers  []*synctest.AnswerLoser // by server
	tickN   atomic.Int64
	mu      sync.Mutex      // guards stats and the shadows during concurrent syncs
	deleted map[string]bool // tags deleted (explicitly or by cascade)
	stats   map[string]int
}

type rmNode struct {
	*synctest.Client
	wrote     map[string]map[string]bool
	inserted  []string
	discarded map[string]bool // inserts a forced repair gave up
	server    int             // index in rmWorld.losers
	rng       *rand.Rand      // its changes\' generator
	events    []string
}

// rmEffect is what a batch of changes did, applied to the shadows when it
// commits.
type rmEffect struct {
	wrote    [][2]string // tag, tuple
	inserted []string
	deleted  []string
}

func runRandomModels(t *testing.T, server string, two bool, rounds int, seed int64) {
	w := &rmWorld{
		t: t, ctx: context.Background(),
		rng:     rand.New(rand.NewPCG(uint64(seed), 0x5eed)),
		deleted: map[string]bool{},
		stats:   map[string]int{},
	}
	sdb := synctest.ServerDB(t, server, "rm", rmSchema, rmModels)
	// Each server behind an AnswerLoser: now and then the answer of a
	// push or pull is lost after the server did the work.
	var urls []string
	for range map[bool]int{false: 1, true: 2}[two] {
		srv, h := synctest.NewHandler(t, sdb, rmModels, nil)
		if w.srv == nil {
			w.srv = &synctest.Server{DB: sdb, Reg: srv.Registry(), Srv: srv}
		}
		loser := synctest.NewAnswerLoser(h)
		hs := httptest.NewServer(loser)
		t.Cleanup(hs.Close)
		t.Cleanup(func() { _ = srv.Close() })
		w.losers = append(w.losers, loser)
		urls = append(urls, hs.URL+"/sync")
	}
	for i := 0; i < 4; i++ {
		n := &rmNode{wrote: map[string]map[string]bool{}, discarded: map[string]bool{}, server: i % len(urls), rng: w.newRand()}
		policy := []merge.Policy{nil, merge.ServerWins, merge.ClientWins}[w.rng.IntN(3)]
		cfg := &client.Config{URL: urls[n.server], DefaultPolicy: policy, OnEvent: func(_ context.Context, e dbsync.Event) {
			s := fmt.Sprintf("%s v%d ops=%d rows=%d", e.Op, e.VersionID, e.Operations, e.Rows)
			if len(e.Conflicts) > 0 {
				s += fmt.Sprintf(" %v", e.Conflicts)
			}
			if e.Err != nil {
				s += " err=" + e.Err.Error()
			}
			n.events = append(n.events, s)
		}}
		switch i {
		case 1:
			cfg.ChunkSize = 2 // pulls in several chunks
		case 2:
			cfg.PushChunkOperations = 2 // most pushes chunked
		}
		name := fmt.Sprintf("n%d", i)
		db := synctest.ClientSQLite(t, "rm", rmSchema, rmModels)
		n.Client = synctest.NewClientWith(t, nil, name, db, rmSchema, rmModels, cfg)
		w.nodes = append(w.nodes, n)
	}
	// The server's application writes too (direct writes).
	w.direct = &rmNode{Client: &synctest.Client{Name: "srv", DB: sdb}, rng: w.newRand(), wrote: map[string]map[string]bool{}, discarded: map[string]bool{}}
	for round := 0; round < rounds; round++ {
		if w.rng.IntN(3) == 0 {
			w.batch(w.direct)
		}
		for _, i := range w.rng.Perm(len(w.nodes)) {
			n := w.nodes[i]
			for k := w.rng.IntN(5); k > 0; k-- {
				w.batch(n)
			}
			w.act(n)
		}
		if two && w.rng.IntN(2) == 0 {
			// Every node syncs at the same time, through both servers,
			// while it and the server's application write.
			var wg sync.WaitGroup
			for _, n := range w.nodes {
				synced := make(chan struct{})
				wg.Go(func() {
					defer close(synced)
					if err := w.trySync(n); err != nil {
						w.t.Error(err)
					}
				})
				wg.Go(func() {
					// The node writes until its Sync ends (its pulls
					// renumber and delete rows under its writes).
					for range 6 {
						w.batch(n)
						select {
						case <-synced:
							return
						case <-time.After(time.Millisecond):
						}
					}
				})
			}
			wg.Go(func() { w.batch(w.direct) })
			wg.Wait()
			if w.t.Failed() {
				w.t.FailNow()
			}
		}
	}
	quietDown(t, w.ctx, w.rng, w.srv.DB, w.nodes, func(n *rmNode) *synctest.Client { return n.Client }, w.mustSync)
	t.Logf("stats %v", w.stats)
	w.check()
}

func (w *rmWorld) newRand() *rand.Rand { return rand.New(rand.NewPCG(w.rng.Uint64(), w.rng.Uint64())) }

func (w *rmWorld) count(what string) {
	w.mu.Lock()
	w.stats[what]++
	w.mu.Unlock()
}

func (w *rmWorld) tick() int64 { return w.tickN.Add(1) }

func (n *rmNode) strp(prefix string, k int) *string {
	if n.rng.IntN(3) == 0 {
		return nil
	}
	s := fmt.Sprintf("%s%d", prefix, n.rng.IntN(k))
	return &s
}

func (n *rmNode) intp(k int) *int64 {
	if n.rng.IntN(3) == 0 {
		return nil
	}
	v := int64(n.rng.IntN(k))
	return &v
}

// tuple renders a row's values by tag; a group by its tag, not its key.
func (w *rmWorld) tuple(db bun.IDB, table, tag string) (string, bool, error) {
	var q string
	if table == rmGroups {
		q = "SELECT 'code=' || COALESCE(code, '-') || ' label=' || COALESCE(label, '-') || ' score=' || COALESCE(CAST(score AS TEXT), '-') FROM rm_groups WHERE tag = ?"
	} else {
		q = "SELECT 'group=' || g.tag || ' slot=' || COALESCE(CAST(i.slot AS TEXT), '-') || ' note=' || COALESCE(i.note, '-') || ' alt=' || COALESCE(a.tag, '-') FROM rm_items i JOIN rm_groups g ON g.id = i.group_id LEFT JOIN rm_groups a ON a.id = i.alt_id WHERE i.tag = ?"
	}
	var s string
	err := db.NewRaw(q, tag).Scan(w.ctx, &s)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return s, err == nil, err
}

type rmRow struct {
	ID  int64
	Tag string
}

func (w *rmWorld) rows(db bun.IDB, table, where string, args ...any) []rmRow {
	w.t.Helper()
	q := "SELECT id, tag FROM " + table
	if where != "" {
		q += " WHERE " + where
	}
	rs, err := db.QueryContext(w.ctx, q+" ORDER BY tag", args...)
	if err != nil {
		w.t.Fatal(err)
	}
	defer rs.Close()
	var out []rmRow
	for rs.Next() {
		var r rmRow
		if err := rs.Scan(&r.ID, &r.Tag); err != nil {
			w.t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		w.t.Fatal(err)
	}
	return out
}

func (n *rmNode) pick(rows []rmRow) (rmRow, bool) {
	if len(rows) == 0 {
		return rmRow{}, false
	}
	return rows[n.rng.IntN(len(rows))], true
}

// found and hit tell whether a read or a write by a picked row's key (and
// tag) found the row: a pull running meanwhile (concurrent rounds) may
// have deleted it or moved it to another key, giving its key to another
// row (K1) — a write by the key alone would then change that row, and
// the shadows would credit the change to the picked one.
func (w *rmWorld) found(err error) (bool, error) {
	if errors.Is(err, sql.ErrNoRows) {
		w.count("picked row moved or gone")
		return false, nil
	}
	return err == nil, err
}

func (w *rmWorld) hit(res sql.Result, err error) (bool, error) {
	if err != nil {
		return false, err
	}
	k, err := res.RowsAffected()
	if err != nil || k > 0 {
		return err == nil, err
	}
	w.count("picked row moved or gone")
	return false, nil
}

// tagged returns rows by their tags (what record reads).
func tagged(tags []string) []rmRow {
	rows := make([]rmRow, len(tags))
	for i, tag := range tags {
		rows[i].Tag = tag
	}
	return rows
}

// record notes the values of rows (by tag) in e.
func (w *rmWorld) record(db bun.IDB, e *rmEffect, table string, rows ...rmRow) error {
	for _, r := range rows {
		s, ok, err := w.tuple(db, table, r.Tag)
		if err != nil {
			return err
		}
		if !ok {
			// Deleted by a pull or push between its pick and its write
			// (during concurrent syncs): nothing written.
			w.count("written row gone")
			continue
		}
		e.wrote = append(e.wrote, [2]string{r.Tag, s})
	}
	return nil
}

// batch makes one to three changes, alone or in a transaction that
// commits or rolls back.
func (w *rmWorld) batch(n *rmNode) {
	w.t.Helper()
	e := &rmEffect{}
	var err error
	inTx := false
	switch r := n.rng.IntN(10); {
	case r < 5:
		err = w.change(n, n.DB, e)
	default:
		inTx = true
		count := 1 + n.rng.IntN(3)
		rollback := r >= 8
		err = n.DB.RunInTx(w.ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			for range count {
				if err := w.change(n, tx, e); err != nil {
					return err
				}
			}
			if rollback {
				return errRollback
			}
			return nil
		})
		if rollback && errors.Is(err, errRollback) {
			w.count("rolled back")
			return
		}
	}
	if err != nil {
		switch msg := err.Error(); {
		case dialect.IsUniqueViolation(err):
			w.count("local unique violation")
		case strings.Contains(msg, "SQLSTATE 23503") || strings.Contains(msg, "FOREIGN KEY constraint failed"):
			// The group picked was deleted by a push or pull before
			// the write (during concurrent syncs).
			w.count("local foreign key violation")
		case n == w.direct && strings.Contains(msg, "SQLSTATE 40P01"):
			// A transaction locking rows out of key order meets a
			// push locking them in key order: PostgreSQL fails one.
			w.count("direct write deadlock")
		default:
			w.t.Fatalf("%s: %v", n.Name, err)
		}
		if inTx {
			return // rolled back: nothing written
		}
		// Outside a transaction the statements before the one that
		// failed stay: keep what change noted of them.
	}
	w.note(n, e)
}

// note applies what a batch (or a unique conflict's resolution) did to
// the shadows; the node's Sync may resolve a conflict meanwhile.
func (w *rmWorld) note(n *rmNode, e *rmEffect) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, tw := range e.wrote {
		if n.wrote[tw[0]] == nil {
			n.wrote[tw[0]] = map[string]bool{}
		}
		n.wrote[tw[0]][tw[1]] = true
	}
	n.inserted = append(n.inserted, e.inserted...)
	for _, tag := range e.deleted {
		w.deleted[tag] = true
	}
}

// change makes one random change through db (the node's, or a
// transaction's). A unique violation is returned as is.
func (w *rmWorld) change(n *rmNode, db bun.IDB, e *rmEffect) error {
	ctx := w.ctx
	v := w.tick()
	switch r := n.rng.IntN(100); {
	case r < 18: // insert a group (model)
		g := &rmGroup{Code: n.strp("c", 6), Tag: fmt.Sprintf("%s-g%d", n.Name, v), Label: n.strp("l", 3), Score: n.intp(100)}
		if _, err := db.NewInsert().Model(g).Exec(ctx); err != nil {
			return err
		}
		e.inserted = append(e.inserted, g.Tag)
		w.count("insert group")
		return w.record(db, e, rmGroups, rmRow{g.ID, g.Tag})
	case r < 30: // update a group by its key (model, every column)
		p, ok := n.pick(w.rows(db, rmGroups, ""))
		if !ok {
			return nil
		}
		g := &rmGroup{ID: p.ID}
		if ok, err := w.found(db.NewSelect().Model(g).WherePK().Where("tag = ?", p.Tag).Scan(ctx)); !ok {
			return err
		}
		if n.rng.IntN(2) == 0 {
			g.Code = n.strp("c", 6)
		}
		g.Label, g.Score = n.strp("l", 3), n.intp(100)
		if ok, err := w.hit(db.NewUpdate().Model(g).WherePK().Where("tag = ?", p.Tag).Exec(ctx)); !ok {
			return err
		}
		w.count("update group")
		return w.record(db, e, rmGroups, p)
	case r < 38: // Where-only update of several groups
		label := n.strp("l", 3)
		where, arg := "score < ?", any(n.rng.IntN(100))
		if n.rng.IntN(2) == 0 {
			where, arg = "label = ?", fmt.Sprintf("l%d", n.rng.IntN(3))
		}
		var tags []string
		if err := db.NewUpdate().Model((*rmGroup)(nil)).Set("label = ?", label).Set("score = COALESCE(score, 0) + 1").Where(where, arg).Returning("tag").Scan(ctx, &tags); err != nil {
			return err
		}
		w.count("bulk update groups")
		return w.record(db, e, rmGroups, tagged(tags)...)
	case r < 44: // swap the codes of two groups
		rows := w.rows(db, rmGroups, "code IS NOT NULL")
		if len(rows) < 2 {
			return nil
		}
		i := n.rng.IntN(len(rows))
		j := (i + 1 + n.rng.IntN(len(rows)-1)) % len(rows)
		a, b := rows[i], rows[j]
		var ca, cb *string
		if ok, err := w.found(db.NewRaw("SELECT code FROM rm_groups WHERE id = ? AND tag = ?", a.ID, a.Tag).Scan(ctx, &ca)); !ok {
			return err
		}
		if ok, err := w.found(db.NewRaw("SELECT code FROM rm_groups WHERE id = ? AND tag = ?", b.ID, b.Tag).Scan(ctx, &cb)); !ok {
			return err
		}
		for i, step := range []struct {
			code *string
			row  rmRow
		}{{nil, a}, {ca, b}, {cb, a}} {
			ok, err := w.hit(db.ExecContext(ctx, "UPDATE rm_groups SET code = ? WHERE id = ? AND tag = ?", step.code, step.row.ID, step.row.Tag))
			if !ok {
				if i == 0 {
					return err
				}
				// Outside a transaction the first steps stay.
				return errors.Join(err, w.record(db, e, rmGroups, a, b))
			}
		}
		w.count("swap codes")
		return w.record(db, e, rmGroups, a, b)
	case r < 47: // replace a group by a new one taking its code
		p, ok := n.pick(w.rows(db, rmGroups, "code IS NOT NULL"))
		if !ok {
			return nil
		}
		old := &rmGroup{ID: p.ID}
		if ok, err := w.found(db.NewSelect().Model(old).WherePK().Where("tag = ?", p.Tag).Scan(ctx)); !ok {
			return err
		}
		items := w.rows(db, rmItems, "group_id = ?", p.ID)
		alts := w.rows(db, rmItems, "alt_id = ? AND group_id <> ?", p.ID, p.ID)
		if ok, err := w.hit(db.NewDelete().Model(old).WherePK().Where("tag = ?", p.Tag).Exec(ctx)); !ok {
			return err
		}
		e.deleted = append(e.deleted, p.Tag)
		for _, it := range items {
			e.deleted = append(e.deleted, it.Tag)
		}
		if err := w.record(db, e, rmItems, alts...); err != nil {
			return err
		}
		g := &rmGroup{Code: old.Code, Tag: fmt.Sprintf("%s-g%d", n.Name, v), Label: old.Label}
		if _, err := db.NewInsert().Model(g).Exec(ctx); err != nil {
			return err
		}
		e.inserted = append(e.inserted, g.Tag)
		w.count("replace group")
		return w.record(db, e, rmGroups, rmRow{g.ID, g.Tag})
	case r < 50: // delete a group (model), its items by cascade
		p, ok := n.pick(w.rows(db, rmGroups, ""))
		if !ok {
			return nil
		}
		items := w.rows(db, rmItems, "group_id = ?", p.ID)
		alts := w.rows(db, rmItems, "alt_id = ? AND group_id <> ?", p.ID, p.ID)
		if ok, err := w.hit(db.NewDelete().Model(&rmGroup{ID: p.ID}).WherePK().Where("tag = ?", p.Tag).Exec(ctx)); !ok {
			return err
		}
		e.deleted = append(e.deleted, p.Tag)
		for _, it := range items {
			e.deleted = append(e.deleted, it.Tag)
		}
		w.count("delete group")
		return w.record(db, e, rmItems, alts...) // alt_id SET NULL
	case r < 70: // insert an item (model)
		p, ok := n.pick(w.rows(db, rmGroups, ""))
		if !ok {
			return nil
		}
		it := &rmItem{GroupID: p.ID, Slot: n.intp(3), Tag: fmt.Sprintf("%s-i%d", n.Name, v), Note: n.strp("note", 5)}
		if a, ok := n.pick(w.rows(db, rmGroups, "")); ok && n.rng.IntN(2) == 0 {
			it.AltID = &a.ID
		}
		if _, err := db.NewInsert().Model(it).Exec(ctx); err != nil {
			return err
		}
		e.inserted = append(e.inserted, it.Tag)
		w.count("insert item")
		return w.record(db, e, rmItems, rmRow{it.ID, it.Tag})
	case r < 82: // update an item by its key, sometimes moving it
		c, ok := n.pick(w.rows(db, rmItems, ""))
		if !ok {
			return nil
		}
		it := &rmItem{ID: c.ID}
		if ok, err := w.found(db.NewSelect().Model(it).WherePK().Where("tag = ?", c.Tag).Scan(ctx)); !ok {
			return err
		}
		it.Note, it.Slot = n.strp("note", 5), n.intp(3)
		cols := []string{"note", "slot"}
		if n.rng.IntN(3) == 0 {
			it.AltID = nil
			if a, ok := n.pick(w.rows(db, rmGroups, "")); ok && n.rng.IntN(2) == 0 {
				it.AltID = &a.ID
			}
			cols = append(cols, "alt_id")
		}
		if n.rng.IntN(3) == 0 {
			if p, ok := n.pick(w.rows(db, rmGroups, "")); ok {
				it.GroupID = p.ID
				cols = append(cols, "group_id")
			}
		}
		if ok, err := w.hit(db.NewUpdate().Model(it).Column(cols...).WherePK().Where("tag = ?", c.Tag).Exec(ctx)); !ok {
			return err
		}
		w.count("update item")
		return w.record(db, e, rmItems, c)
	case r < 88: // raw SQL: clear the notes of a group's items
		p, ok := n.pick(w.rows(db, rmGroups, ""))
		if !ok {
			return nil
		}
		var tags []string
		if err := db.NewRaw("UPDATE rm_items SET note = NULL WHERE group_id = ? RETURNING tag", p.ID).Scan(ctx, &tags); err != nil {
			return err
		}
		w.count("raw update items")
		return w.record(db, e, rmItems, tagged(tags)...)
	case r < 94: // Where-only delete of items
		note := fmt.Sprintf("note%d", n.rng.IntN(5))
		var tags []string
		if err := db.NewDelete().Model((*rmItem)(nil)).Where("note = ?", note).Returning("tag").Scan(ctx, &tags); err != nil {
			return err
		}
		e.deleted = append(e.deleted, tags...)
		w.count("bulk delete items")
	default: // delete an item (model)
		c, ok := n.pick(w.rows(db, rmItems, ""))
		if !ok {
			return nil
		}
		if ok, err := w.hit(db.NewDelete().Model(&rmItem{ID: c.ID}).WherePK().Where("tag = ?", c.Tag).Exec(ctx)); !ok {
			return err
		}
		e.deleted = append(e.deleted, c.Tag)
		w.count("delete item")
	}
	return nil
}

// act has a node sync in one of several ways, or stay offline.
func (w *rmWorld) act(n *rmNode) {
	w.t.Helper()
	if w.rng.IntN(6) == 0 {
		ep := []string{"push", "pull", "push-commit"}[w.rng.IntN(3)]
		w.losers[n.server].Arm(ep)
		defer w.losers[n.server].Disarm()
		w.count("lost answer " + ep)
	}
	var err error
	switch r := w.rng.IntN(12); {
	case r < 3: // offline
		w.count("offline")
		return
	case r < 6:
		w.mustSync(n)
		return
	case r < 8:
		w.count("push")
		_, err = n.Push(w.ctx)
	case r < 10:
		w.count("pull")
		_, err = n.Pull(w.ctx)
	case r < 11:
		w.count("pull+push")
		if _, err = n.Pull(w.ctx); err == nil {
			_, err = n.Push(w.ctx)
		}
	default:
		err = w.repair(n)
	}
	var uc *dbsync.UniqueConstraintError
	switch {
	case err == nil:
	case errors.Is(err, dbsync.ErrPullNeeded):
		w.count("pull needed")
	case errors.Is(err, dbsync.ErrNetwork):
		w.count("network error")
	case errors.Is(err, dbsync.ErrBusy): // a push failed by a deadlock
		w.count("busy")
	case errors.As(err, &uc):
		w.count("unique conflict")
		if err := w.resolveUnique(n, uc); err != nil {
			w.t.Fatalf("%s: %v", n.Name, err)
		}
	default:
		w.t.Fatalf("%s: %v\nprocedures:\n  %s", n.Name, err, strings.Join(n.events, "\n  "))
	}
}

// repair repairs a node, with Force when it has changes not pushed: its
// pending inserts are then given up.
func (w *rmWorld) repair(n *rmNode) error {
	ops, err := n.Pending(w.ctx)
	if err != nil {
		return err
	}
	force := len(ops) > 0
	if force && w.rng.IntN(2) == 0 {
		w.mustSync(n)
		ops, err = n.Pending(w.ctx)
		if err != nil {
			return err
		}
		force = len(ops) > 0
	}
	var given []string
	for _, op := range ops {
		if op.Command != "i" {
			continue
		}
		var tag string
		err := n.DB.NewRaw("SELECT tag FROM "+op.Table+" WHERE id = ?", op.RowID).Scan(w.ctx, &tag)
		if errors.Is(err, sql.ErrNoRows) {
			continue // an unanswered push's insert, deleted since (X1)
		}
		if err != nil {
			return fmt.Errorf("pending insert %s/%s: %w", op.Table, op.RowID, err)
		}
		given = append(given, tag)
	}
	w.count("repair")
	if force {
		w.count("forced repair")
	}
	_, err = n.Repair(w.ctx, &client.RepairOptions{Force: force})
	if !force && errors.Is(err, dbsync.ErrPendingChanges) {
		// Repair counts the log's operations, not their net change
		// (Pending's): an insert deleted again counts.
		w.count("forced repair of a net-empty log")
		_, err = n.Repair(w.ctx, &client.RepairOptions{Force: true})
	}
	if err != nil {
		return err
	}
	for _, tag := range given {
		n.discarded[tag] = true
	}
	// Nothing else runs meanwhile: the node holds the server's rows.
	dn, ds := synctest.Dump(w.t, n.DB, n.Reg), synctest.Dump(w.t, w.srv.DB, w.srv.Reg)
	if d := synctest.Diff(dn, ds); d != "" {
		w.t.Fatalf("%s: after its repair, differs from the server:\n%s", n.Name, d)
	}
	return nil
}

func (w *rmWorld) mustSync(n *rmNode) {
	w.t.Helper()
	if err := w.trySync(n); err != nil {
		w.t.Fatal(err)
	}
}

// trySync syncs a node until it succeeds, resolving unique conflicts; it
// may run on any goroutine.
func (w *rmWorld) trySync(n *rmNode) error {
	w.count("sync")
	for attempt := 0; ; attempt++ {
		_, err := n.Sync(w.ctx)
		if err == nil {
			return nil
		}
		var uc *dbsync.UniqueConstraintError
		if attempt < 8 && errors.As(err, &uc) {
			w.count("unique conflict")
			if err := w.resolveUnique(n, uc); err != nil {
				return fmt.Errorf("%s: %w", n.Name, err)
			}
			continue
		}
		if attempt < 8 && (errors.Is(err, dbsync.ErrPullNeeded) || errors.Is(err, dbsync.ErrNetwork) || errors.Is(err, dbsync.ErrBusy)) {
			continue
		}
		return fmt.Errorf("%s: sync: %w\nprocedures:\n  %s", n.Name, err, strings.Join(n.events, "\n  "))
	}
}

// resolveUnique clears the unique values of the rows a conflict names (a
// nullable column: NULL never collides).
func (w *rmWorld) resolveUnique(n *rmNode, uc *dbsync.UniqueConstraintError) error {
	if len(uc.Entries) == 0 {
		return fmt.Errorf("unique conflict naming no row: %v", uc)
	}
	for _, en := range uc.Entries {
		var q string
		table := rmGroups
		switch en.Table {
		case rmGroups:
			q = "UPDATE rm_groups SET code = NULL WHERE id = ?"
		case rmItems:
			table = rmItems
			q = "UPDATE rm_items SET slot = NULL WHERE id = ?"
		default:
			return fmt.Errorf("unique conflict on %s: %v", en.Table, uc)
		}
		var tag string
		if err := n.DB.NewRaw("SELECT tag FROM "+table+" WHERE id = ?", en.PK).Scan(w.ctx, &tag); err != nil {
			return fmt.Errorf("the unique conflict names %s/%s, which the node does not have: %w (%v)", table, en.PK, err, uc)
		}
		if _, err := n.DB.ExecContext(w.ctx, q, en.PK); err != nil {
			return err
		}
		e := &rmEffect{}
		if err := w.record(n.DB, e, table, rmRow{Tag: tag}); err != nil {
			return err
		}
		w.note(n, e)
	}
	return nil
}

// check compares every node with the server and explains the server's
// rows.
func (w *rmWorld) check() {
	t := w.t
	t.Helper()
	ds := synctest.Dump(t, w.srv.DB, w.srv.Reg)
	for _, n := range w.nodes {
		dn := synctest.Dump(t, n.DB, n.Reg)
		if d := synctest.Diff(dn, ds); d != "" {
			t.Fatalf("%s and the server differ:\n%s\nprocedures:\n  %s", n.Name, d, strings.Join(n.events, "\n  "))
		}
	}
	var unexplained []string
	present := map[string]bool{}
	for _, table := range []string{rmGroups, rmItems} {
		for _, r := range w.rows(w.srv.DB, table, "") {
			present[r.Tag] = true
			s, ok, err := w.tuple(w.srv.DB, table, r.Tag)
			if err != nil || !ok {
				t.Fatalf("%s %s: %v", table, r.Tag, err)
			}
			explained := false
			for _, n := range w.writers() {
				explained = explained || n.wrote[r.Tag][s]
			}
			if !explained {
				unexplained = append(unexplained, fmt.Sprintf("%s %s: %s", table, r.Tag, s))
			}
		}
	}
	if len(unexplained) > 0 {
		t.Fatalf("server rows no node wrote:\n%s", strings.Join(unexplained, "\n"))
	}
	groupsOf := map[string]map[string]bool{} // item tag → every group it had
	for _, n := range w.writers() {
		for tag, vals := range n.wrote {
			for s := range vals {
				if rest, ok := strings.CutPrefix(s, "group="); ok {
					if groupsOf[tag] == nil {
						groupsOf[tag] = map[string]bool{}
					}
					groupsOf[tag][strings.Fields(rest)[0]] = true
				}
			}
		}
	}
	var lost []string
	total := 0
	for _, n := range w.writers() {
		for _, tag := range n.inserted {
			if w.deleted[tag] || n.discarded[tag] {
				continue
			}
			orphaned := false
			for g := range groupsOf[tag] {
				orphaned = orphaned || w.deleted[g] || w.discardedAny(g)
			}
			if orphaned {
				continue
			}
			total++
			if !present[tag] {
				lost = append(lost, n.Name+":"+tag)
			}
		}
	}
	sort.Strings(lost)
	if len(lost) > 0 {
		for _, n := range w.nodes {
			t.Logf("%s's procedures:\n  %s", n.Name, strings.Join(n.events, "\n  "))
		}
		t.Fatalf("inserted rows lost although nobody deleted them or their groups: %v", lost)
	}
	t.Logf("server: %d groups, %d items; %d surviving inserts checked", len(ds[rmGroups]), len(ds[rmItems]), total)
}

func (w *rmWorld) writers() []*rmNode { return append(append([]*rmNode(nil), w.nodes...), w.direct) }

func (w *rmWorld) discardedAny(tag string) bool {
	for _, n := range w.nodes {
		if n.discarded[tag] {
			return true
		}
	}
	return false
}

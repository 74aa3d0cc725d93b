package server

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// maxStagedScopeEntries bounds the rows a chunked push's scope refusal
// names: the check stops collecting there, and the node learns of the
// others when it pushes again.
const maxStagedScopeEntries = 1000

// stagedScope is scopeGuard for the commit of a chunked push: the same
// checks, over the keys staged with the chunks (sync_push_keys) a page
// at a time and over one chunk at a time, so that memory never holds the
// whole push. Before the writes (guardStaged), every row the push names
// must be in the node's scope or not exist; around each chunk's writes
// (owners, changedOwners), an owner column may change only on rows the
// node owns by it, and a reference it sets must be to a row the node
// reads (scopeGuard.newRefs); after every write (after), every row the
// push wrote must be in the scope, memberships the push writes not
// counted, and every membership row it wrote must name a row the node
// holds (scoper.ungranted). A refusal (*dbsync.ScopeError) fails the
// commit's transaction: nothing of the push is written.
type stagedScope struct {
	s         *Server
	push      *stagedPush
	principal *string
	out       []protocol.ScopeEntry
	// respelt: the first row written in scope under another spelling of
	// its key than the server's (respelled), and how many more.
	respelt *respelling
	// granted: the memberships the push writes that gave the node access
	// before it (scopeEnv.granted), read before the writes.
	granted map[string][][2]string
}

// guardStaged runs the check before the writes; nil guard and no error
// when scopes are off.
func (s *Server) guardStaged(ctx context.Context, tx bun.Tx, push *stagedPush) (*stagedScope, error) {
	if s.scopes == nil {
		return nil, nil
	}
	principal, err := s.principal(ctx, tx, push.node)
	if err != nil {
		return nil, err
	}
	g := &stagedScope{s: s, push: push, principal: principal, granted: map[string][][2]string{}}
	tables, err := push.tables(ctx, tx, s.reg, false)
	if err != nil {
		return nil, err
	}
	for _, t := range tables {
		if err := checkKeyStep(ctx, tx, t, func() (int64, bool, error) { return push.topKey(ctx, tx, t) }); err != nil {
			return nil, err
		}
		if len(s.scopes.memberRules(t.Name)) > 0 {
			err := push.keys(ctx, tx, t, writes, func(keys []string) error {
				return s.scopes.readGrants(ctx, tx, t, keys, principal, g.granted)
			})
			if err != nil {
				return nil, err
			}
		}
		if s.scopes.global(t) && s.scopes.writable(t) {
			continue
		}
		cond := s.scopes.where(t, t.Schema().SQLName, principal)
		err := push.keys(ctx, tx, t, "", func(keys []string) error {
			if !s.scopes.writable(t) {
				g.add(t, keys, nil)
				return nil
			}
			// As the database compares keys (guardScope).
			exist, err := store.ExistingAsAsked(ctx, tx, t, keys, nil)
			if err != nil {
				return err
			}
			in, err := store.ExistingAsAsked(ctx, tx, t, keys, cond)
			if err != nil {
				return err
			}
			g.add(t, keys, func(k string) bool { return exist[k] && !in[k] })
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return g, scopeRefusal(g.out)
}

// add records the keys of t for which out holds (every key when out is
// nil), up to maxStagedScopeEntries.
func (g *stagedScope) add(t *dbsync.Table, keys []string, out func(k string) bool) {
	for _, k := range keys {
		if len(g.out) >= maxStagedScopeEntries {
			return
		}
		if out == nil || out(k) {
			g.out = append(g.out, protocol.ScopeEntry{Table: t.Name, PK: k})
		}
	}
}

// owners reads, before one chunk's writes, the owner and reference
// columns of the rows it writes (scopeGuard.readBefore on the chunk).
func (g *stagedScope) owners(ctx context.Context, tx bun.Tx, plan *pushPlan) (*scopeGuard, error) {
	if g == nil {
		return nil, nil
	}
	cg := &scopeGuard{s: g.s, plan: plan, principal: g.principal}
	for _, tp := range plan.tables {
		if err := cg.readBefore(ctx, tx, tp.table, tp); err != nil {
			return nil, err
		}
	}
	return cg, nil
}

// changedOwners records, after one chunk's writes, the rows whose owner
// column the chunk changed although the node did not own them by it, and
// those it pointed at a row the node does not read (newRefs).
func (g *stagedScope) changedOwners(ctx context.Context, tx bun.Tx, cg *scopeGuard) error {
	if g == nil {
		return nil
	}
	read := &scopeEnv{principal: g.principal, staged: g.push, granted: g.granted}
	for _, tp := range cg.plan.tables {
		keys, err := cg.changedOwners(ctx, tx, tp)
		if err != nil {
			return err
		}
		g.add(tp.table, keys, nil)
		if keys, err = cg.newRefs(ctx, tx, tp, read); err != nil {
			return err
		}
		g.add(tp.table, keys, nil)
	}
	return nil
}

// after checks, once every chunk is written, that every row the push
// wrote is in the node's scope; it returns the refusal of every row
// found out of scope, here or by changedOwners.
func (g *stagedScope) after(ctx context.Context, tx bun.Tx) error {
	if g == nil {
		return nil
	}
	tables, err := g.push.tables(ctx, tx, g.s.reg, true)
	if err != nil {
		return err
	}
	env := &scopeEnv{principal: g.principal, write: true, staged: g.push, granted: g.granted}
	for _, t := range tables {
		if len(g.s.scopes.grantsOf(t.Name)) > 0 {
			err := g.push.keys(ctx, tx, t, writes, func(keys []string) error {
				set := make(map[string]bool, len(keys))
				for _, k := range keys {
					set[k] = true
				}
				ungranted, err := g.s.scopes.ungranted(ctx, tx, t, set, env)
				if err != nil {
					return err
				}
				g.add(t, ungranted, nil)
				return nil
			})
			if err != nil {
				return err
			}
		}
		if g.s.scopes.global(t) {
			continue
		}
		cond := g.s.scopes.cond(t, g.s.scopes.rules[t.Name], t.Schema().SQLName, env, 0)
		err := g.push.keys(ctx, tx, t, writes, func(keys []string) error {
			in, err := store.ExistingWhere(ctx, tx, t, keys, cond)
			if err != nil {
				return err
			}
			missing, other, err := respelled(ctx, tx, t, keys, in, cond)
			if err != nil {
				return err
			}
			g.add(t, missing, nil)
			g.respelt = g.respelt.add(t, other)
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := scopeRefusal(g.out); err != nil {
		return err
	}
	return g.respelt.refusal(ctx, tx)
}

// writes selects the staged keys of inserts and updates (stagedPush.keys).
const writes = "w"

// keys hands the staged keys of the rows of t the push names to fn, a
// page of keyBatch at a time, by key: every key (command ""), those of
// one command (models.Delete), or those of inserts and updates (writes).
func (p *stagedPush) keys(ctx context.Context, db bun.IDB, t *dbsync.Table, command string, fn func(keys []string) error) error {
	after := ""
	for {
		var keys []string
		q := p.filter(db.NewSelect().Model((*stagedKey)(nil))).Column("row_id").
			Where("tbl = ?", t.Name).OrderExpr("row_id ASC").Limit(keyBatch)
		switch command {
		case "":
		case writes:
			q = q.Where("command <> ?", string(models.Delete))
		default:
			q = q.Where("command = ?", command)
		}
		if after != "" {
			q = q.Where("row_id > ?", after)
		}
		if err := q.Scan(ctx, &keys); err != nil {
			return fmt.Errorf("read staged keys of %s: %w", t.Name, err)
		}
		if len(keys) == 0 {
			return nil
		}
		if err := fn(keys); err != nil {
			return err
		}
		if len(keys) < keyBatch {
			return nil
		}
		after = keys[len(keys)-1]
	}
}

// topKey returns the greatest key of the rows of t, a table with integer
// keys, the push inserts or updates (staged keys are canonical), and
// whether it writes any.
func (p *stagedPush) topKey(ctx context.Context, db bun.IDB, t *dbsync.Table) (int64, bool, error) {
	var top sql.NullInt64
	if err := p.filter(db.NewSelect().Model((*stagedKey)(nil))).ColumnExpr("MAX(CAST(row_id AS BIGINT))").
		Where("tbl = ? AND command <> ?", t.Name, string(models.Delete)).Scan(ctx, &top); err != nil {
		return 0, false, fmt.Errorf("read staged keys of %s: %w", t.Name, err)
	}
	return top.Int64, top.Valid, nil
}

// tables returns the tables the push names rows of (only those it writes
// rows of, with onlyWrites).
func (p *stagedPush) tables(ctx context.Context, db bun.IDB, reg *dbsync.Registry, onlyWrites bool) ([]*dbsync.Table, error) {
	q := p.filter(db.NewSelect().Model((*stagedKey)(nil))).Distinct().Column("tbl").OrderExpr("tbl ASC")
	if onlyWrites {
		q = q.Where("command <> ?", string(models.Delete))
	}
	var names []string
	if err := q.Scan(ctx, &names); err != nil {
		return nil, fmt.Errorf("read staged tables: %w", err)
	}
	out := make([]*dbsync.Table, 0, len(names))
	for _, name := range names {
		t := reg.Table(name)
		if t == nil {
			return nil, fmt.Errorf("%w: %q", dbsync.ErrUnknownTable, name)
		}
		out = append(out, t)
	}
	return out, nil
}

package peer

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/protocol"
)

// cascadeNode is the node of the tombstones the delete rule writes: no
// real node, so that every node computes the same version and every feed
// passes it on.
var cascadeNode = uuid.Nil.String()

// parentRef is a reference from a live winning version to a row of a
// table whose key is its identity (a UUID or text key).
type parentRef struct {
	winner int // index in the winners
	parent rowKey
}

// cascade applies the delete rule to a batch's winners before they are
// written: a delete wins over the rows that reference the deleted row.
//
//   - A row of this node that references a row deleted by the batch is
//     deleted too.
//   - A winning live version that references a row deleted here (by the
//     batch, or before) becomes a delete.
//
// Such a delete gets the version (max(the row's version, the tombstones of
// the deleted rows it references) + 1, the nil node): nodes that learn the
// same versions compute the same delete, in whatever order they learn
// them, and nodes that learn different ones settle by last write wins like
// for any two versions. They converge where they would otherwise refuse
// each other's changes forever (a parent deleted on one node while another
// edits or adds a child). Down the chain, deleted rows' own children
// follow.
//
// It also returns the deleted rows that a winning live version references
// here before it moves away from them (see writeRows).
func (n *Node) cascade(ctx context.Context, tx bun.Tx, winners []*incoming, local map[rowKey]versionOf, st *applyState) ([]*incoming, map[rowKey]bool, error) {
	if !n.hasForeignKeys() {
		return winners, nil, nil
	}
	c := &cascader{n: n, tx: tx, winners: winners, local: local, st: st, up: map[rowKey][]rowKey{}}
	if err := c.references(); err != nil {
		return nil, nil, err
	}
	if err := c.loadTombstones(ctx); err != nil {
		return nil, nil, err
	}
	c.start()
	for {
		c.killDanglingWinners()
		if len(c.fresh) == 0 {
			return c.winners, lateAncestors(c.late, c.up), nil
		}
		if err := c.followChildren(ctx); err != nil {
			return nil, nil, err
		}
	}
}

// cascader is the state of one cascade: the winners, growing with the
// deletes the rule adds, and what the rule learned so far.
type cascader struct {
	n       *Node
	tx      bun.Tx
	winners []*incoming
	local   map[rowKey]versionOf
	st      *applyState
	idx     map[rowKey]int // winners by row
	// refs are the references of the live winners (as identities: that
	// is how they travel), byParent indexes them by the row they
	// reference, ask lists the referenced rows the batch does not touch.
	refs     []parentRef
	byParent map[rowKey][]int
	ask      []rowKey
	// tombs are this node's tombstones of the rows of ask.
	tombs map[rowKey]versionOf
	// late are the rows deleted after the batch is written (writeRows).
	late map[rowKey]bool
	// up: for a row the batch deletes, the rows deleted by the batch that
	// it references here (the database's ON DELETE actions can reach it
	// from them).
	up    map[rowKey][]rowKey
	fresh []rowKey // rows deleted since their children were last looked for
	check []int    // references to look at this round
}

// references indexes the winners and collects the references of the live
// ones.
func (c *cascader) references() error {
	c.idx = make(map[rowKey]int, len(c.winners))
	for i, w := range c.winners {
		c.idx[rowKey{w.pt.t.ContentTypeID, w.ID}] = i
	}
	c.byParent = map[rowKey][]int{}
	for i, w := range c.winners {
		if w.Deleted {
			continue
		}
		var row protocol.Row
		for _, fk := range w.pt.t.ForeignKeys {
			ppt := c.n.byName[fk.RefTable]
			if ppt == nil {
				continue
			}
			if row == nil {
				var err error
				if row, err = protocol.ParseRow(w.Row); err != nil {
					return fmt.Errorf("%w: row of %s %s: %w", dbsync.ErrBadRequest, w.Table, w.ID, err)
				}
			}
			k, ok := protocol.Key(row[fk.Column])
			if !ok {
				continue // NULL
			}
			id, err := ppt.identity(k)
			if err != nil {
				continue // not an identity: the apply refuses it later
			}
			pk := rowKey{ppt.t.ContentTypeID, id}
			c.byParent[pk] = append(c.byParent[pk], len(c.refs))
			c.refs = append(c.refs, parentRef{winner: i, parent: pk})
			if _, in := c.idx[pk]; !in {
				c.ask = append(c.ask, pk)
			}
		}
	}
	return nil
}

// loadTombstones reads the tombstones this node holds for the referenced
// rows the batch does not touch.
func (c *cascader) loadTombstones(ctx context.Context) error {
	c.tombs = map[rowKey]versionOf{}
	if len(c.ask) == 0 {
		return nil
	}
	vs, err := c.n.versions(ctx, c.tx, c.ask)
	if err != nil {
		return err
	}
	for k, v := range vs {
		if v.deleted {
			c.tombs[k] = v
		}
	}
	return nil
}

// start sets up the first round: the rows the batch deletes are fresh,
// every reference is looked at.
func (c *cascader) start() {
	for _, w := range c.winners {
		if w.Deleted {
			c.fresh = append(c.fresh, rowKey{w.pt.t.ContentTypeID, w.ID})
		}
	}
	c.check = make([]int, len(c.refs))
	for i := range c.check {
		c.check[i] = i
	}
}

// deletedAs returns the tombstone of a row deleted by the batch or before
// it.
func (c *cascader) deletedAs(k rowKey) (versionOf, bool) {
	if i, ok := c.idx[k]; ok {
		return c.winners[i].ver, c.winners[i].Deleted
	}
	v, ok := c.tombs[k]
	return v, ok
}

// kill returns the delete of a row the rule deletes: after its version and
// the tombstone it follows, by the nil node.
func kill(pt *ptable, id string, was, tomb versionOf) *incoming {
	v := versionOf{hlc: max(was.hlc, tomb.hlc) + 1, node: cascadeNode, deleted: true}
	return &incoming{Change: Change{Table: pt.t.Name, ID: id, HLC: v.hlc, Node: v.node, Deleted: true}, pt: pt, ver: v}
}

// killDanglingWinners turns the live winners (of the references to check)
// referencing deleted rows into deletes, after the newest tombstone among
// the rows they reference.
func (c *cascader) killDanglingWinners() {
	dead := map[int]versionOf{}
	for _, ri := range c.check {
		r := c.refs[ri]
		if c.winners[r.winner].Deleted {
			continue
		}
		if tomb, gone := c.deletedAs(r.parent); gone {
			if prev, seen := dead[r.winner]; !seen || newer(tomb, prev) {
				dead[r.winner] = tomb
			}
		}
	}
	for wi, tomb := range dead {
		w := c.winners[wi]
		c.winners[wi] = kill(w.pt, w.ID, w.ver, tomb)
		c.fresh = append(c.fresh, rowKey{w.pt.t.ContentTypeID, w.ID})
	}
}

// followChildren deletes this node's rows referencing the rows just
// deleted (fresh), which become fresh in turn, and sets the references to
// check next.
func (c *cascader) followChildren(ctx context.Context) error {
	batch := c.fresh
	c.fresh = nil
	c.check = c.check[:0]
	for _, k := range batch {
		c.check = append(c.check, c.byParent[k]...)
	}
	children, err := c.n.referencing(ctx, c.tx, batch)
	if err != nil {
		return err
	}
	// Rows written by an earlier page whose reference waits for a row
	// just deleted are its children too.
	for _, k := range batch {
		for _, ch := range c.st.waitingFor(k) {
			children = append(children, childRef{child: ch, parent: k})
		}
	}
	newest := map[rowKey]versionOf{}
	var unknown []rowKey
	for _, ch := range children {
		if i, in := c.idx[ch.child]; in {
			if c.winners[i].Deleted {
				c.up[ch.child] = append(c.up[ch.child], ch.parent)
			} else {
				// The batch writes it, so its own version decides
				// (above); the row it references here until then is
				// deleted after it is written.
				if c.late == nil {
					c.late = map[rowKey]bool{}
				}
				c.late[ch.parent] = true
			}
			continue
		}
		c.up[ch.child] = append(c.up[ch.child], ch.parent)
		tomb, _ := c.deletedAs(ch.parent)
		if prev, seen := newest[ch.child]; !seen {
			unknown = append(unknown, ch.child)
			newest[ch.child] = tomb
		} else if newer(tomb, prev) {
			newest[ch.child] = tomb
		}
	}
	vs, err := c.n.versions(ctx, c.tx, unknown)
	if err != nil {
		return err
	}
	for _, ck := range unknown {
		was, ok := vs[ck]
		if !ok {
			was = c.local[ck]
		}
		c.idx[ck] = len(c.winners)
		c.winners = append(c.winners, kill(c.n.byCT[ck.ct], ck.id, was, newest[ck]))
		c.fresh = append(c.fresh, ck)
	}
	return nil
}

// lateAncestors adds to the late deletes the deleted rows above them: a
// delete of those run first would reach the late rows, and the rows moving
// away from them, through the database's ON DELETE CASCADE.
func lateAncestors(late map[rowKey]bool, up map[rowKey][]rowKey) map[rowKey]bool {
	todo := make([]rowKey, 0, len(late))
	for k := range late {
		todo = append(todo, k)
	}
	for len(todo) > 0 {
		k := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		for _, p := range up[k] {
			if !late[p] {
				late[p] = true
				todo = append(todo, p)
			}
		}
	}
	return late
}

// hasForeignKeys reports whether a synced table references a synced
// table.
func (n *Node) hasForeignKeys() bool {
	for _, pt := range n.tables {
		for _, fk := range pt.t.ForeignKeys {
			if n.byName[fk.RefTable] != nil {
				return true
			}
		}
	}
	return false
}

// childRef is a live row of this node referencing a deleted row.
type childRef struct {
	child, parent rowKey
}

// referencing finds this node's rows that reference the given rows, by
// their identities (the batch has not been written yet).
func (n *Node) referencing(ctx context.Context, tx bun.IDB, parents []rowKey) ([]childRef, error) {
	byCT := map[int64][]string{}
	for _, p := range parents {
		byCT[p.ct] = append(byCT[p.ct], p.id)
	}
	var out []childRef
	for ct, ids := range byCT {
		ppt := n.byCT[ct]
		if ppt == nil {
			continue
		}
		pident := IdentityColumn
		if ppt.keyIdentity {
			pident = ppt.t.PK.Name
		}
		for _, ref := range n.reg.Children(ppt.t.Name) {
			cpt := n.byName[ref.Table.Name]
			if cpt == nil {
				continue
			}
			cident := IdentityColumn
			if cpt.keyIdentity {
				cident = cpt.t.PK.Name
			}
			// A reference to a UUID or text key holds the identity: it finds the
			// children of a row this node does not hold too (a child that
			// arrived before its parent). Another reference holds the
			// parent's key on this node: through the local keys (the
			// children still waiting for it are in the apply's state).
			q := fmt.Sprintf("SELECT CAST(c.%s AS TEXT), CAST(c.%s AS TEXT) FROM %s c WHERE c.%s IN (?)",
				dialect.QuoteIdent(cident), dialect.QuoteIdent(ref.FK.Column), dialect.QuoteIdent(cpt.t.Name), dialect.QuoteIdent(ref.FK.Column))
			if !ppt.keyIdentity {
				q = fmt.Sprintf("SELECT CAST(c.%s AS TEXT), CAST(p.%s AS TEXT) FROM %s c JOIN %s p ON c.%s = p.%s WHERE p.%s IN (?)",
					dialect.QuoteIdent(cident), dialect.QuoteIdent(pident), dialect.QuoteIdent(cpt.t.Name), dialect.QuoteIdent(ppt.t.Name),
					dialect.QuoteIdent(ref.FK.Column), dialect.QuoteIdent(ppt.t.PK.Name), dialect.QuoteIdent(pident))
			}
			for start := 0; start < len(ids); start += store.Batch {
				rows, err := tx.QueryContext(ctx, q, bun.List(ids[start:min(start+store.Batch, len(ids))]))
				if err != nil {
					return nil, fmt.Errorf("rows referencing %s: %w", ppt.t.Name, err)
				}
				for rows.Next() {
					var c, p string
					if err := rows.Scan(&c, &p); err != nil {
						rows.Close()
						return nil, err
					}
					cid, err1 := cpt.identity(c)
					pid, err2 := ppt.identity(p)
					if err1 != nil || err2 != nil {
						continue
					}
					out = append(out, childRef{
						child:  rowKey{cpt.t.ContentTypeID, cid},
						parent: rowKey{ct, pid},
					})
				}
				rows.Close()
				if err := rows.Err(); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

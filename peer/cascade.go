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
// table with a UUID key.
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
	idx := make(map[rowKey]int, len(winners))
	for i, w := range winners {
		idx[rowKey{w.pt.t.ContentTypeID, w.ID}] = i
	}
	// References of the live winners (as identities: that is how they
	// travel), indexed by the row they reference, and the tombstones this
	// node holds for referenced rows the batch does not touch.
	var refs []parentRef
	byParent := map[rowKey][]int{}
	var ask []rowKey
	for i, w := range winners {
		if w.Deleted {
			continue
		}
		var row protocol.Row
		for _, fk := range w.pt.t.ForeignKeys {
			ppt := n.byName[fk.RefTable]
			if ppt == nil {
				continue
			}
			if row == nil {
				var err error
				if row, err = protocol.ParseRow(w.Row); err != nil {
					return nil, nil, fmt.Errorf("%w: row of %s %s: %w", dbsync.ErrBadRequest, w.Table, w.ID, err)
				}
			}
			k, ok := protocol.Key(row[fk.Column])
			if !ok {
				continue // NULL
			}
			id, err := uuid.Parse(k)
			if err != nil {
				continue // not an identity: the apply refuses it later
			}
			pk := rowKey{ppt.t.ContentTypeID, id.String()}
			byParent[pk] = append(byParent[pk], len(refs))
			refs = append(refs, parentRef{winner: i, parent: pk})
			if _, in := idx[pk]; !in {
				ask = append(ask, pk)
			}
		}
	}
	tombs := map[rowKey]versionOf{}
	if len(ask) > 0 {
		vs, err := n.versions(ctx, tx, ask)
		if err != nil {
			return nil, nil, err
		}
		for k, v := range vs {
			if v.deleted {
				tombs[k] = v
			}
		}
	}
	// deletedAs returns the tombstone of a row deleted by the batch or
	// before it.
	deletedAs := func(k rowKey) (versionOf, bool) {
		if i, ok := idx[k]; ok {
			return winners[i].ver, winners[i].Deleted
		}
		v, ok := tombs[k]
		return v, ok
	}
	kill := func(pt *ptable, id string, was, tomb versionOf) *incoming {
		v := versionOf{hlc: max(was.hlc, tomb.hlc) + 1, node: cascadeNode, deleted: true}
		return &incoming{Change: Change{Table: pt.t.Name, ID: id, HLC: v.hlc, Node: v.node, Deleted: true}, pt: pt, ver: v}
	}
	var late map[rowKey]bool
	// up: for a row the batch deletes, the rows deleted by the batch that
	// it references here (the database's ON DELETE actions can reach it
	// from them).
	up := map[rowKey][]rowKey{}
	var fresh []rowKey // rows deleted since their children were last looked for
	for _, w := range winners {
		if w.Deleted {
			fresh = append(fresh, rowKey{w.pt.t.ContentTypeID, w.ID})
		}
	}
	check := make([]int, len(refs)) // references to look at this round
	for i := range check {
		check[i] = i
	}
	for {
		// Live winners referencing deleted rows become deletes, after the
		// newest tombstone among the rows they reference.
		dead := map[int]versionOf{}
		for _, ri := range check {
			r := refs[ri]
			if winners[r.winner].Deleted {
				continue
			}
			if tomb, gone := deletedAs(r.parent); gone {
				if prev, seen := dead[r.winner]; !seen || newer(tomb, prev) {
					dead[r.winner] = tomb
				}
			}
		}
		for wi, tomb := range dead {
			w := winners[wi]
			winners[wi] = kill(w.pt, w.ID, w.ver, tomb)
			fresh = append(fresh, rowKey{w.pt.t.ContentTypeID, w.ID})
		}
		if len(fresh) == 0 {
			return winners, lateAncestors(late, up), nil
		}
		// This node's rows referencing the rows just deleted follow them.
		batch := fresh
		fresh = nil
		check = check[:0]
		for _, k := range batch {
			check = append(check, byParent[k]...)
		}
		children, err := n.referencing(ctx, tx, batch)
		if err != nil {
			return nil, nil, err
		}
		// Rows written by an earlier page whose reference waits for a row
		// just deleted are its children too.
		for _, k := range batch {
			for _, c := range st.waitingFor(k) {
				children = append(children, childRef{child: c, parent: k})
			}
		}
		newest := map[rowKey]versionOf{}
		var unknown []rowKey
		for _, c := range children {
			if i, in := idx[c.child]; in {
				if winners[i].Deleted {
					up[c.child] = append(up[c.child], c.parent)
				} else {
					// The batch writes it, so its own version decides
					// (above); the row it references here until then is
					// deleted after it is written.
					if late == nil {
						late = map[rowKey]bool{}
					}
					late[c.parent] = true
				}
				continue
			}
			up[c.child] = append(up[c.child], c.parent)
			tomb, _ := deletedAs(c.parent)
			if prev, seen := newest[c.child]; !seen {
				unknown = append(unknown, c.child)
				newest[c.child] = tomb
			} else if newer(tomb, prev) {
				newest[c.child] = tomb
			}
		}
		vs, err := n.versions(ctx, tx, unknown)
		if err != nil {
			return nil, nil, err
		}
		for _, ck := range unknown {
			was, ok := vs[ck]
			if !ok {
				was = local[ck]
			}
			idx[ck] = len(winners)
			winners = append(winners, kill(n.byCT[ck.ct], ck.id, was, newest[ck]))
			fresh = append(fresh, ck)
		}
	}
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
		if ppt.uuidKey {
			pident = ppt.t.PK.Name
		}
		for _, ref := range n.reg.Children(ppt.t.Name) {
			cpt := n.byName[ref.Table.Name]
			if cpt == nil {
				continue
			}
			cident := IdentityColumn
			if cpt.uuidKey {
				cident = cpt.t.PK.Name
			}
			// A reference to a UUID key holds the identity: it finds the
			// children of a row this node does not hold too (a child that
			// arrived before its parent). Another reference holds the
			// parent's key on this node: through the local keys (the
			// children still waiting for it are in the apply's state).
			q := fmt.Sprintf("SELECT CAST(c.%s AS TEXT), CAST(c.%s AS TEXT) FROM %s c WHERE c.%s IN (?)",
				dialect.QuoteIdent(cident), dialect.QuoteIdent(ref.FK.Column), dialect.QuoteIdent(cpt.t.Name), dialect.QuoteIdent(ref.FK.Column))
			if !ppt.uuidKey {
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
					cid, err1 := uuid.Parse(c)
					pid, err2 := uuid.Parse(p)
					if err1 != nil || err2 != nil {
						continue
					}
					out = append(out, childRef{
						child:  rowKey{cpt.t.ContentTypeID, cid.String()},
						parent: rowKey{ct, pid.String()},
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

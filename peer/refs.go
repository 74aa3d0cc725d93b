package peer

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/protocol"
)

// A reference to a table with an integer key holds a key local to
// each node. On the wire it holds the referenced row's identity instead:
// the sending node translates its keys to identities (refsToIdentities),
// the receiving node identities to its own keys (refsToLocal).

// refsToIdentities rewrites encoded rows of pt (ids: their identities), in
// place, so that their references to tables with an integer key carry
// identities. A reference to a row this node does not hold (the
// application wrote it with foreign keys off: SQLite's default on a
// connection) fails the read with orphanError, naming the rows: on the
// wire it would be null, which every receiver refuses (a NOT NULL column)
// or writes (a nullable one, while this node keeps its value).
func (n *Node) refsToIdentities(ctx context.Context, tx bun.IDB, pt *ptable, ids []string, raws []json.RawMessage) error {
	if len(pt.intRefs) == 0 || len(raws) == 0 {
		return nil
	}
	rows := make([]protocol.Row, len(raws))
	for i, raw := range raws {
		row, err := protocol.ParseRow(raw)
		if err != nil {
			return fmt.Errorf("encoded row of %s: %w", pt.t.Name, err)
		}
		rows[i] = row
	}
	var orphans []orphanRef
	for _, ref := range pt.intRefs {
		var keys []string
		for _, row := range rows {
			if k, ok := protocol.Key(row[ref.column]); ok {
				keys = append(keys, k)
			}
		}
		idOf, err := n.identitiesOf(ctx, tx, ref.parent, keys)
		if err != nil {
			return err
		}
		for i, row := range rows {
			k, ok := protocol.Key(row[ref.column])
			if !ok {
				continue
			}
			if id, found := idOf[k]; found {
				row[ref.column] = json.RawMessage(`"` + id + `"`)
			} else {
				orphans = append(orphans, orphanRef{id: ids[i], column: ref.column, parent: ref.parent, key: k})
			}
		}
	}
	if len(orphans) > 0 {
		return n.orphanError(ctx, tx, pt, orphans)
	}
	for i, row := range rows {
		raw, err := json.Marshal(row)
		if err != nil {
			return err
		}
		raws[i] = raw
	}
	return nil
}

var jsonNull = json.RawMessage("null")

// orphanRef is a reference of a row this node would send to a row it does
// not hold.
type orphanRef struct {
	id     string // the referencing row's identity
	column string
	parent *ptable
	key    string // the missing parent's key
}

// orphanError names (up to 5 of) the rows of pt that reference rows this
// node does not hold, by their keys here: ErrConstraint and
// dbsync.ErrForeignKey, as a receiver's refusal of such rows, saying which
// node holds them.
func (n *Node) orphanError(ctx context.Context, tx bun.IDB, pt *ptable, orphans []orphanRef) error {
	shown := orphans[:min(len(orphans), 5)]
	keyOf := map[string]string{}
	if !pt.keyIdentity {
		ids := make([]string, len(shown))
		for i, o := range shown {
			ids[i] = o.id
		}
		var err error
		if keyOf, err = n.localKeys(ctx, tx, pt, ids); err != nil {
			return err
		}
	}
	problems := make([]string, len(shown))
	for i, o := range shown {
		key, ok := keyOf[o.id]
		if !ok {
			key = o.id
		}
		problems[i] = fmt.Sprintf("%s %s references missing %s %s (column %s)", pt.t.Name, key, o.parent.t.Name, o.key, o.column)
	}
	more := ""
	if len(orphans) > len(shown) {
		more = fmt.Sprintf(" and %d more", len(orphans)-len(shown))
	}
	err := fmt.Errorf("%w: %w: node %s cannot send its rows: %s%s; they were written with foreign keys off: correct or delete them on that node",
		ErrConstraint, dbsync.ErrForeignKey, n.ID(), strings.Join(problems, "; "), more)
	n.log.ErrorContext(ctx, "peer: rows reference rows this node does not hold", slog.String("error", err.Error()))
	return err
}

// refsToLocal rewrites incoming live rows of pt, in place, so that their
// references to tables with an integer key carry this node's keys. A
// reference to a row this node does not hold (yet: a later page may bring
// it) holds a placeholder for now and is recorded in st; resolvePending
// sets it at the end of the apply. It returns those columns, by row
// identity.
func (n *Node) refsToLocal(ctx context.Context, tx bun.IDB, pt *ptable, ws []*incoming, st *applyState) (map[string][]string, error) {
	if len(pt.intRefs) == 0 || len(ws) == 0 {
		return nil, nil
	}
	rows := make([]protocol.Row, len(ws))
	for i, w := range ws {
		row, err := protocol.ParseRow(w.Row)
		if err != nil {
			return nil, fmt.Errorf("%w: row of %s %s: %w", dbsync.ErrBadRequest, pt.t.Name, w.ID, err)
		}
		rows[i] = row
	}
	var later map[string][]string
	for _, ref := range pt.intRefs {
		var ids []string
		for i, row := range rows {
			id, ok, err := refIdentity(row[ref.column])
			if err != nil {
				return nil, fmt.Errorf("%w: %s %s, column %s: %w", dbsync.ErrBadRequest, pt.t.Name, ws[i].ID, ref.column, err)
			}
			if ok {
				ids = append(ids, id)
			}
		}
		keys, err := n.localKeys(ctx, tx, ref.parent, ids)
		if err != nil {
			return nil, err
		}
		for i, row := range rows {
			pk := pendingKey{pt: pt, id: ws[i].ID, column: ref.column}
			st.drop(pk) // this version replaces an earlier one
			id, ok, _ := refIdentity(row[ref.column])
			if !ok {
				continue
			}
			if k, found := keys[id]; found {
				row[ref.column] = json.RawMessage(k)
				continue
			}
			st.wait(pk, pendingRef{parent: ref.parent, identity: id})
			ph, err := st.placeholder(ctx, tx, ref.parent, pt.t.Column(ref.column))
			if err != nil {
				return nil, err
			}
			row[ref.column] = ph
			if later == nil {
				later = map[string][]string{}
			}
			later[ws[i].ID] = append(later[ws[i].ID], ref.column)
		}
	}
	for i, row := range rows {
		raw, err := json.Marshal(row)
		if err != nil {
			return nil, err
		}
		ws[i].Row = raw
	}
	return later, nil
}

// pendingKey names a reference of a written row that still waits for the
// row it references: a later page of the apply brings it.
type pendingKey struct {
	pt     *ptable
	id     string // the referencing row's identity
	column string
}

type pendingRef struct {
	parent   *ptable
	identity string
}

// applyState is what an apply carries from page to page.
type applyState struct {
	// touched is what the page being applied touched, which settle hands
	// to settler once the page is written.
	touched *store.Touched
	settler store.Settler
	pending map[pendingKey]pendingRef
	// waiting indexes pending by the row they wait for.
	waiting map[rowKey]map[pendingKey]bool
	last    int64 // placeholders handed out
	// floor is, by parent table, the lowest key it held when its first
	// placeholder was handed out (0 when none is lower): signed
	// placeholders go below it.
	floor map[*ptable]int64
	// parked holds, by table, rows moved out of the way of a unique value
	// (applyState.park) whose rewrite has not come yet: local key → the
	// identity of a row that took the value.
	parked map[*dbsync.Table]map[string]string
	// from is the peer whose pages are applied, received how far this
	// node had applied that peer's feed when the apply started (its
	// cursor, 0 when none).
	from     string
	received int64
	// seen holds the keys of a resynchronization's state read so far
	// (nil: not one).
	seen *stateKeys
}

func newApplyState() *applyState {
	return &applyState{touched: &store.Touched{}, pending: map[pendingKey]pendingRef{}, waiting: map[rowKey]map[pendingKey]bool{},
		parked: map[*dbsync.Table]map[string]string{}, floor: map[*ptable]int64{}}
}

// settle settles the references of the page just written (settler) and
// starts the next page's touched rows: an apply keeps what is left to
// check, not every row it wrote.
func (st *applyState) settle(ctx context.Context, tx bun.IDB) error {
	if err := st.settler.Add(ctx, tx, st.touched); err != nil {
		return err
	}
	st.touched = &store.Touched{}
	return nil
}

// wait records a pending reference.
func (st *applyState) wait(k pendingKey, r pendingRef) {
	st.drop(k)
	st.pending[k] = r
	rk := rowKey{r.parent.t.ContentTypeID, r.identity}
	if st.waiting[rk] == nil {
		st.waiting[rk] = map[pendingKey]bool{}
	}
	st.waiting[rk][k] = true
}

// drop forgets a pending reference, if any.
func (st *applyState) drop(k pendingKey) {
	r, ok := st.pending[k]
	if !ok {
		return
	}
	delete(st.pending, k)
	rk := rowKey{r.parent.t.ContentTypeID, r.identity}
	delete(st.waiting[rk], k)
	if len(st.waiting[rk]) == 0 {
		delete(st.waiting, rk)
	}
}

// forget drops the pending references of deleted rows.
func (st *applyState) forget(pt *ptable, ids []string) {
	if len(st.pending) == 0 {
		return
	}
	for _, id := range ids {
		for _, ref := range pt.intRefs {
			st.drop(pendingKey{pt: pt, id: id, column: ref.column})
		}
	}
}

// waitingFor returns the rows (by table and identity) whose reference
// waits for the given row: the delete rule counts them as its children.
func (st *applyState) waitingFor(k rowKey) []rowKey {
	var out []rowKey
	for pk := range st.waiting[k] {
		out = append(out, rowKey{pk.pt.t.ContentTypeID, pk.id})
	}
	return out
}

// placeholder is the value a waiting reference to a row of parent
// (column c) holds until it is set: a key no row of parent has, distinct
// per waiting row, so that the waiting row is no child of a row of
// parent (which the delete rule, or the database's ON DELETE CASCADE,
// would delete with it) and two waiting rows never share a value a unique
// column would refuse (the foreign key is checked at commit, after
// resolvePending). For a signed integer field: below parent's lowest key
// and below 0 (-1, -2, … when its keys are positive; an application may
// give rows negative keys of its own, and before, a waiting row whose
// placeholder was such a key was deleted with that row); the rows this
// apply inserts into parent take the keys the database gives (above the
// highest on SQLite, from the key's sequence on PostgreSQL). For an
// unsigned one: the type's largest values. Else null.
func (st *applyState) placeholder(ctx context.Context, tx bun.IDB, parent *ptable, c *dbsync.Column) (json.RawMessage, error) {
	st.last++
	if c == nil {
		return jsonNull, nil
	}
	t := c.Field().IndirectType
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		floor, ok := st.floor[parent]
		if !ok {
			var low sql.NullInt64
			if err := tx.QueryRowContext(ctx, fmt.Sprintf("SELECT MIN(%s) FROM %s", dialect.QuoteIdent(parent.t.PK.Name), dialect.QuoteIdent(parent.t.Name))).Scan(&low); err != nil {
				return nil, fmt.Errorf("lowest key of %s: %w", parent.t.Name, err)
			}
			floor = min(low.Int64, 0)
			st.floor[parent] = floor
		}
		lowest := int64(-1) << (t.Bits() - 1)                           // the field's
		if floor >= lowest && uint64(floor-lowest) >= uint64(st.last) { // (as unsigned: up to 2^63)
			return json.RawMessage(strconv.FormatInt(floor-st.last, 10)), nil
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		top := uint64(math.MaxInt64) // what a database integer holds
		if t.Bits() < 64 {
			top = 1<<t.Bits() - 1
		}
		if uint64(st.last) < top {
			return json.RawMessage(strconv.FormatUint(top-uint64(st.last)+1, 10)), nil
		}
	}
	return jsonNull, nil
}

// resolvePending sets the references that held a placeholder while the
// rows they reference had not arrived. A row still missing at the end of the apply
// fails it with ErrConstraint.
func (n *Node) resolvePending(ctx context.Context, tx bun.IDB, st *applyState) error {
	if len(st.pending) == 0 {
		return nil
	}
	type group struct {
		pt, parent *ptable
		column     string
	}
	groups := map[group][]pendingKey{}
	for k, r := range st.pending {
		g := group{pt: k.pt, parent: r.parent, column: k.column}
		groups[g] = append(groups[g], k)
	}
	for g, ks := range groups {
		ids := make([]string, len(ks))
		for i, k := range ks {
			ids[i] = st.pending[k].identity
		}
		keys, err := n.localKeys(ctx, tx, g.parent, ids)
		if err != nil {
			return err
		}
		ident := IdentityColumn
		if g.pt.keyIdentity {
			ident = g.pt.t.PK.Name
		}
		q := fmt.Sprintf("UPDATE %s SET %s = ? WHERE %s = ?", dialect.QuoteIdent(g.pt.t.Name), dialect.QuoteIdent(g.column), dialect.QuoteIdent(ident))
		for i, k := range ks {
			lk, found := keys[ids[i]]
			if !found {
				return fmt.Errorf("%w: %s %s references %s %s, which this node does not hold",
					ErrConstraint, g.pt.t.Name, k.id, g.parent.t.Name, ids[i])
			}
			v, err := g.parent.t.ParseKey(lk)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, q, v, k.id); err != nil {
				return fmt.Errorf("set %s.%s: %w", g.pt.t.Name, g.column, err)
			}
		}
	}
	return nil
}

// refIdentity reads a reference on the wire: an identity, or null.
func refIdentity(v json.RawMessage) (string, bool, error) {
	k, ok := protocol.Key(v)
	if !ok {
		return "", false, nil
	}
	id, err := uuid.Parse(k)
	if err != nil {
		return "", false, fmt.Errorf("reference %s is not a row identity", v)
	}
	return id.String(), true, nil
}

// identitiesOf maps local keys of pt's rows to their identities.
func (n *Node) identitiesOf(ctx context.Context, tx bun.IDB, pt *ptable, keys []string) (map[string]string, error) {
	out := make(map[string]string, len(keys))
	q := fmt.Sprintf("SELECT CAST(%s AS TEXT), %s FROM %s WHERE %s IN (?)",
		dialect.QuoteIdent(pt.t.PK.Name), dialect.QuoteIdent(IdentityColumn), dialect.QuoteIdent(pt.t.Name), dialect.QuoteIdent(pt.t.PK.Name))
	for start := 0; start < len(keys); start += store.Batch {
		rows, err := tx.QueryContext(ctx, q, bun.List(keys[start:min(start+store.Batch, len(keys))]))
		if err != nil {
			return nil, fmt.Errorf("identities of %s: %w", pt.t.Name, err)
		}
		for rows.Next() {
			var k, id string
			if err := rows.Scan(&k, &id); err != nil {
				rows.Close()
				return nil, err
			}
			out[k] = id
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

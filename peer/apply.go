package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/schema"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/protocol"
)

type rowKey struct {
	ct int64
	id string
}

// Apply applies a peer's changes, page after page as next returns them
// (nil at the end), in one transaction that also records how far this node
// has applied that peer's feed. Of each row's versions the higher (HLC,
// node) wins. Foreign keys are checked at commit, so a page may hold
// children before their parents. It returns the number of versions that
// won.
//
// When the pages are a resynchronization (Batch.Full), the node then
// deletes the rows the peer's state lacks whose version is older than the
// peer's tombstone horizon: the peer deleted them and forgot.
func (n *Node) Apply(ctx context.Context, from uuid.UUID, next func() (*Batch, error)) (applied int, err error) {
	start := time.Now()
	defer func() {
		n.emit(ctx, dbsync.Event{Op: "apply", Peer: from, Operations: int64(applied), Err: err}, start)
	}()
	if from == n.id {
		// Its own versions, as a peer's: a copy of this database, or a
		// node syncing with itself.
		return 0, fmt.Errorf("%w (%s)", ErrSameNode, from)
	}
	st := newApplyState()
	var srcErr error // an error of next's: the source's, passed on as it is
	err = dialect.ApplyTx(ctx, n.db, func(ctx context.Context, tx bun.Tx) error {
		// The node row's lock serializes every writer of the feed.
		if _, _, err := n.tick(ctx, tx, 0, 0); err != nil {
			return err
		}
		var restores int64
		if err := tx.QueryRowContext(ctx, "SELECT restores FROM sync_lww_feed WHERE id = 1").Scan(&restores); err != nil {
			return err
		}
		st.from = from.String()
		if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(pulled_seq), 0) FROM sync_lww_peers WHERE peer = ?", st.from).Scan(&st.received); err != nil {
			return fmt.Errorf("read the cursor of %s: %w", from, err)
		}
		own := false // the pages hold this node's own versions too
		if err := dialect.Capture(ctx, tx, dialect.PeerSwitch, false); err != nil {
			return err
		}
		var last int64 = -1
		epoch := "" // the feed's epoch at last
		full := false
		var purged int64
		var seen *stateKeys // the keys of a resynchronization's state
		var received int64  // how far the peer applied this node's feed
		var held []Change   // deletes held back for the next page (holdBack)
		for {
			b, err := next()
			if err != nil {
				srcErr = err
				return err
			}
			if b == nil {
				if len(held) > 0 {
					k, err := n.applyBatch(ctx, tx, &Batch{Changes: held}, st)
					if err != nil {
						return err
					}
					if err := st.settle(ctx, tx); err != nil {
						return err
					}
					applied += k
				}
				break
			}
			own = own || b.Own || b.Full
			if b.Full {
				full, purged = true, b.PurgedHLC
				// The peer's cursor of this node's feed covers it up to
				// where it is valid: past a restore from a backup, this
				// node's versions at positions the lost feed had used
				// never reached the peer.
				if b.Received, err = n.validReceived(ctx, tx, b.Received, b.ReceivedEpoch); err != nil {
					return err
				}
				received = max(received, b.Received)
				// And this node's cursor of the peer's feed, past the
				// peer's restore, up to where the peer says it holds.
				if b.CursorEnd != nil {
					st.received = min(st.received, max(*b.CursorEnd, 0))
				}
				if seen == nil {
					if seen, err = newStateKeys(ctx, tx); err != nil {
						return err
					}
					st.seen = seen
				}
				if err := seen.add(ctx, n, b.Changes); err != nil {
					return err
				}
			}
			// Trailing deletes of tables whose key folds wait for the
			// next page, which may hold the write of their respelling.
			page := *b
			page.Changes, held = n.holdBack(slices.Concat(held, b.Changes))
			k, err := n.applyBatch(ctx, tx, &page, st)
			if err != nil {
				return err
			}
			if err := st.settle(ctx, tx); err != nil {
				return err
			}
			applied += k
			// The pages of one feed may carry different epochs: the feed's
			// node was opened anew (New) between two of them. The later
			// one's is right: a position is checked against its epoch's
			// end only, and the later epoch ends after every page read.
			if b.Last > last || b.Full {
				last, epoch = b.Last, b.Epoch
			}
		}
		if full {
			k, err := n.dropForgotten(ctx, tx, seen, purged, received, st)
			if err != nil {
				return err
			}
			applied += k
			if err := seen.drop(ctx); err != nil {
				return err
			}
		}
		if err := n.resolvePending(ctx, tx, st); err != nil {
			return err
		}
		if err := st.finishParks(); err != nil {
			return err
		}
		if err := st.settle(ctx, tx); err != nil {
			return err
		}
		// On SQLite, the ON DELETE actions of the untracked tables
		// referencing rows the apply deleted, which its enforcement,
		// switched off, did not run (PostgreSQL ran them at each delete).
		if err := store.RunDeleteActions(ctx, tx, n.reg, st.settler.DeletedTables()); err != nil {
			return err
		}
		if err := st.settler.Verify(ctx, tx, n.reg); err != nil {
			return err
		}
		if last >= 0 {
			// The cursor moves only forward (a resynchronization sets it),
			// its epoch with it; pages with this node's own versions record
			// the restores they answer (Cursor stops asking for them).
			reclaimed := int64(0)
			if own {
				reclaimed = restores
			}
			// (The epoch first: it moves with the cursor as it was.)
			if _, err := tx.ExecContext(ctx, `INSERT INTO sync_lww_cursor_epochs (peer, epoch, reclaimed) VALUES (?, ?, ?)
ON CONFLICT (peer) DO UPDATE SET
  epoch = CASE WHEN ? > COALESCE((SELECT pulled_seq FROM sync_lww_peers WHERE peer = EXCLUDED.peer), -1) OR ?
    THEN EXCLUDED.epoch ELSE sync_lww_cursor_epochs.epoch END,
  reclaimed = CASE WHEN EXCLUDED.reclaimed > sync_lww_cursor_epochs.reclaimed THEN EXCLUDED.reclaimed ELSE sync_lww_cursor_epochs.reclaimed END`,
				from.String(), epoch, reclaimed, last, full); err != nil {
				return fmt.Errorf("record cursor: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO sync_lww_peers (peer, pulled_seq, synced) VALUES (?, ?, ?)
ON CONFLICT (peer) DO UPDATE SET pulled_seq = CASE WHEN EXCLUDED.pulled_seq > sync_lww_peers.pulled_seq OR ? THEN EXCLUDED.pulled_seq ELSE sync_lww_peers.pulled_seq END,
  synced = EXCLUDED.synced`, from.String(), last, n.cfg.Now().UTC(), full); err != nil {
				return fmt.Errorf("record cursor: %w", err)
			}
		}
		return dialect.ResetCapture(ctx, tx, dialect.PeerSwitch)
	})
	if err != nil {
		if srcErr != nil && errors.Is(err, srcErr) {
			return 0, err
		}
		switch {
		case errors.Is(err, ErrConstraint):
		case errors.Is(err, dbsync.ErrForeignKey):
			// VerifyReferences named the rows from the registry.
			err = fmt.Errorf("%w: %w", ErrConstraint, err)
		case dialect.IsUniqueViolation(err) || dialect.IsForeignKeyViolation(err):
			// The database's own words stay in the log: the answer goes
			// to another node.
			n.log.WarnContext(ctx, "peer: apply refused by a constraint of the database", slog.String("peer", from.String()), slog.String("error", err.Error()))
			err = fmt.Errorf("%w: a constraint that is not between tracked tables", ErrConstraint)
		}
		return 0, err
	}
	return applied, nil
}

// writeError names the rows of a write the database refused for a unique
// value (ErrConstraint: table and identities, from the registry), and the
// table (and column, when the database names it) of a value it refused
// (dialect.RefusedValue: a *dbsync.ValueError, dbsync.ErrBadRequest); the
// database's own words go to the log only.
func (n *Node) writeError(ctx context.Context, t *dbsync.Table, ws []*incoming, err error) error {
	if dialect.IsCardinalityViolation(err) {
		// Two rows of the write whose keys the key column's collation
		// takes for one (PostgreSQL refuses to upsert a row twice).
		ids := make([]string, len(ws))
		for i, w := range ws {
			ids[i] = w.ID
		}
		return respelledError(t, ids, nil)
	}
	if r, ok := dialect.RefusedValue(err); ok {
		// A value this node's database cannot store: a text key too
		// large for PostgreSQL's indexes (about 2.7 kB), a text longer
		// than its column allows, a number out of its range. The
		// database's own words go to the log only.
		n.log.WarnContext(ctx, "peer: a value refused by the database", slog.String("table", t.Name), slog.String("error", err.Error()))
		ve := &dbsync.ValueError{Table: t.Name, Column: r.Column, Err: fmt.Errorf("%w: this node's database refuses %s", dbsync.ErrBadRequest, r.What)}
		if len(ws) == 1 {
			ve.Key = ws[0].ID
		}
		return ve
	}
	if err == nil || !dialect.IsUniqueViolation(err) {
		return err
	}
	n.log.WarnContext(ctx, "peer: a write broke a unique constraint", slog.String("table", t.Name), slog.String("error", err.Error()))
	ids := make([]string, 0, min(len(ws), 5))
	for _, w := range ws[:min(len(ws), 5)] {
		ids = append(ids, w.ID)
	}
	more := ""
	if len(ws) > len(ids) {
		more = fmt.Sprintf(" (of %d rows written together)", len(ws))
	}
	return fmt.Errorf("%w: a row of %s among %s%s takes a unique value another row of this node holds",
		ErrConstraint, t.Name, strings.Join(ids, ", "), more)
}

// respellings returns the keys respelled by winners: by the delete of a
// row of a table whose key the database does not compare byte for byte
// (ptable.keyFolds), the key of a live winner that names that row there
// ("FR" for the row "fr", deleted). Each is the delete of the old
// spelling and the write of the new on the node that respelled the key.
//
// In a resynchronization's pages (full), a live winner's key also
// respells the row this node holds under another spelling whose version
// the state's end would drop (dropForgotten: older than the peer's
// horizon, absent from the state so far, not this node's own version
// the peer never received): the peer purged the delete of that
// spelling. Refused (checkSpellings), the node failed every
// resynchronization, for ever.
func (n *Node) respellings(ctx context.Context, tx bun.IDB, winners []*incoming, b *Batch, st *applyState) (map[rowKey]string, error) {
	full := b.Full && b.PurgedHLC > 0 && st.seen != nil
	dels := map[*ptable]map[string]bool{}
	puts := map[*ptable][]string{}
	for _, w := range winners {
		switch {
		case !w.pt.keyFolds:
		case w.Deleted:
			if dels[w.pt] == nil {
				dels[w.pt] = map[string]bool{}
			}
			dels[w.pt][w.ID] = true
		default:
			puts[w.pt] = append(puts[w.pt], w.ID)
		}
	}
	var out map[rowKey]string
	for pt, ids := range puts {
		if len(dels[pt]) == 0 && !full {
			continue
		}
		held, err := store.HeldSpellings(ctx, tx, pt.t, ids)
		if err != nil {
			return nil, err
		}
		var forgotten map[string]bool
		if full && len(held) > 0 {
			if forgotten, err = n.forgottenSpellings(ctx, tx, pt, slices.Collect(maps.Values(held)), b, st); err != nil {
				return nil, err
			}
		}
		for id, h := range held {
			if dels[pt][h] || forgotten[h] {
				if out == nil {
					out = map[rowKey]string{}
				}
				out[rowKey{pt.t.ContentTypeID, h}] = id
			}
		}
	}
	return out, nil
}

// heldElsewhere returns the deletes among winners (of tables whose key
// folds, not respelled) of rows this node holds under another spelling
// of their key: they delete no row here, and the delete rule must not
// delete the rows referencing the row held (whose references the
// database takes for references to the deleted key).
func (n *Node) heldElsewhere(ctx context.Context, tx bun.IDB, winners []*incoming, respell map[rowKey]string) (map[rowKey]bool, error) {
	dels := map[*ptable][]string{}
	for _, w := range winners {
		if w.Deleted && w.pt.keyFolds {
			if _, ok := respell[rowKey{w.pt.t.ContentTypeID, w.ID}]; !ok {
				dels[w.pt] = append(dels[w.pt], w.ID)
			}
		}
	}
	var out map[rowKey]bool
	for pt, ids := range dels {
		held, err := store.HeldSpellings(ctx, tx, pt.t, ids)
		if err != nil {
			return nil, err
		}
		for id := range held {
			if out == nil {
				out = map[rowKey]bool{}
			}
			out[rowKey{pt.t.ContentTypeID, id}] = true
		}
	}
	return out, nil
}

// forgottenSpellings returns the keys of rows of pt (held) that the end
// of a resynchronization would drop as forgotten (dropForgotten): a live
// version older than the peer's horizon, absent from the state read so
// far, not this node's own version past what the peer received.
func (n *Node) forgottenSpellings(ctx context.Context, tx bun.IDB, pt *ptable, held []string, b *Batch, st *applyState) (map[string]bool, error) {
	var ids []string
	err := tx.NewRaw(`SELECT l.row_id FROM sync_lww AS l WHERE l.content_type_id = ? AND l.row_id IN (?)
AND l.deleted = ? AND l.hlc < ? AND NOT (l.node = ? AND l.seq > ?)
AND NOT EXISTS (SELECT 1 FROM `+st.seen.tmp+` AS s WHERE s.ct = l.content_type_id AND s.id = l.row_id)`,
		pt.t.ContentTypeID, bun.List(held), false, b.PurgedHLC, n.id.String(), b.Received).Scan(ctx, &ids)
	if err != nil {
		return nil, fmt.Errorf("versions of %s: %w", pt.t.Name, err)
	}
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

// dropDeadRespellings takes out of respell the respellings whose new
// spelling's write the delete rule turned into a delete (it references a
// row deleted here): the row held under the old spelling is deleted as
// the old spelling's delete says (writeRows), as the new spelling's row
// is on the node that respelled it. Respelled in place, the row stayed
// live here under the tombstones of both spellings.
func dropDeadRespellings(winners []*incoming, respell map[rowKey]string) {
	if len(respell) == 0 {
		return
	}
	live := make(map[rowKey]bool, len(respell))
	for _, w := range winners {
		if !w.Deleted {
			live[rowKey{w.pt.t.ContentTypeID, w.ID}] = true
		}
	}
	for k, id := range respell {
		if !live[rowKey{k.ct, id}] {
			delete(respell, k)
		}
	}
}

// withRespelled returns winners with each respelled delete (of the old
// spelling) put just before the write of its new spelling, as the node
// that respelled the key recorded them: this node's feed records them in
// that order, so that the pages it serves keep the two together (see
// holdBack). A delete whose write the delete rule turned into a delete
// comes first.
func withRespelled(winners, respelled []*incoming, respell map[rowKey]string) []*incoming {
	if len(respelled) == 0 {
		return winners
	}
	before := make(map[rowKey]*incoming, len(respelled))
	for _, d := range respelled {
		k := rowKey{d.pt.t.ContentTypeID, d.ID}
		before[rowKey{k.ct, respell[k]}] = d
	}
	out := make([]*incoming, 0, len(winners)+len(respelled))
	for _, w := range winners {
		k := rowKey{w.pt.t.ContentTypeID, w.ID}
		if d := before[k]; d != nil && !w.Deleted {
			out = append(out, d)
			delete(before, k)
		}
		out = append(out, w)
	}
	var rest []*incoming
	for _, d := range respelled {
		k := rowKey{d.pt.t.ContentTypeID, d.ID}
		if before[rowKey{k.ct, respell[k]}] == d {
			rest = append(rest, d)
		}
	}
	return append(rest, out...)
}

// holdBack splits the changes of a page that more pages follow: the
// trailing deletes of tables whose key folds (ptable.keyFolds) are held
// back for the next page. A case-only edit of such a key is the delete of
// the old spelling and the write of the new, adjacent in the feed; a
// page ending between them lost the respelling (respellings), and the
// delete rule deleted the rows referencing the row on every node.
func (n *Node) holdBack(changes []Change) (apply, held []Change) {
	i := len(changes)
	for i > 0 {
		c := changes[i-1]
		if pt := n.byName[c.Table]; !c.Deleted || pt == nil || !pt.keyFolds {
			break
		}
		i--
	}
	return changes[:i], changes[i:]
}

// checkSpellings refuses (ErrConstraint) rows of pt, by their keys ids,
// that the node's database holds under another spelling of their key
// ("abc" for "ABC" under NOCASE, citext or a nondeterministic ICU
// collation): identities compare byte for byte, and two nodes may hold
// "abc" and "ABC" as two rows, which this node's table cannot. Written,
// one would take the other's values and keep its key, and the nodes
// would differ for ever while Sync reported success. Checked before the
// write; two rows of the write itself, after it (checkDistinct). Only
// such tables pay for the checks.
func checkSpellings(ctx context.Context, tx bun.IDB, pt *ptable, ids []string) error {
	if !pt.keyFolds {
		return nil
	}
	held, err := store.HeldSpellings(ctx, tx, pt.t, ids)
	if err != nil || len(held) == 0 {
		return err
	}
	return respelledError(pt.t, slices.Sorted(maps.Keys(held)), held)
}

// checkDistinct refuses (ErrConstraint), after their write, rows of pt
// (by their distinct keys ids) written as fewer rows: keys the
// collation takes for one, which SQLite's upsert writes as one row (the
// second's values under the first's key). PostgreSQL refuses such a
// write (writeError).
func checkDistinct(ctx context.Context, tx bun.IDB, pt *ptable, ids []string) error {
	if !pt.keyFolds {
		return nil
	}
	k, err := store.CountRows(ctx, tx, pt.t, ids)
	if err != nil || k == len(ids) {
		return err
	}
	return respelledError(pt.t, ids, nil)
}

// respelledError is the error of checkSpellings and checkDistinct for the
// keys ids of t, held as held[id] (nil: two of ids, written together,
// name one row).
func respelledError(t *dbsync.Table, ids []string, held map[string]string) error {
	var names []string
	for _, id := range ids[:min(len(ids), 5)] {
		if h, ok := held[id]; ok {
			names = append(names, fmt.Sprintf("%q (held here as %q)", id, h))
		} else {
			names = append(names, fmt.Sprintf("%q", id))
		}
	}
	more := ""
	if len(ids) > len(names) {
		more = fmt.Sprintf(" (of %d rows)", len(ids))
	}
	if held == nil {
		return fmt.Errorf("%w: %s %s%s: the key column's collation takes some of these keys for one row, which other nodes hold as two: delete or rename one of them",
			ErrConstraint, t.Name, strings.Join(names, ", "), more)
	}
	return fmt.Errorf("%w: %s %s%s: the key column's collation takes the key for that of another row, which other nodes hold as two rows: delete or rename one of them",
		ErrConstraint, t.Name, strings.Join(names, ", "), more)
}

// incoming is a change validated and decoded.
type incoming struct {
	Change
	pt  *ptable
	ver versionOf
}

func (n *Node) applyBatch(ctx context.Context, tx bun.Tx, b *Batch, st *applyState) (int, error) {
	limit := hlcAt(n.cfg.Now().Add(n.cfg.MaxSkew))
	// Validate, and keep the newest version of each row within the batch.
	latest := map[rowKey]*incoming{}
	var order []rowKey
	var maxHLC HLC
	if b.Full && HLC(b.PurgedHLC) > limit {
		// The horizon tombstones every row older than it the batch lacks:
		// it is held to the bound of the changes' clocks.
		return 0, fmt.Errorf("%w: purge horizon %s is more than %s ahead", ErrClockSkew, HLC(b.PurgedHLC).Time(), n.cfg.MaxSkew)
	}
	for _, c := range b.Changes {
		pt := n.byName[c.Table]
		if pt == nil {
			return 0, fmt.Errorf("%w: %q", dbsync.ErrUnknownTable, c.Table)
		}
		id, err := pt.identity(c.ID)
		if err != nil {
			return 0, err
		}
		node, err := uuid.Parse(c.Node)
		if err != nil {
			return 0, fmt.Errorf("%w: node %q is not a UUID", dbsync.ErrBadRequest, c.Node)
		}
		if c.HLC <= 0 {
			return 0, fmt.Errorf("%w: %s %s has clock %d, not a time", dbsync.ErrBadRequest, c.Table, c.ID, c.HLC)
		}
		if HLC(c.HLC) > limit {
			return 0, fmt.Errorf("%w: %s %s was written at %s, more than %s ahead", ErrClockSkew, c.Table, c.ID, HLC(c.HLC).Time(), n.cfg.MaxSkew)
		}
		if !c.Deleted && len(c.Row) == 0 {
			return 0, fmt.Errorf("%w: live version of %s %s without a row", dbsync.ErrBadRequest, c.Table, c.ID)
		}
		in := &incoming{Change: c, pt: pt, ver: versionOf{hlc: c.HLC, node: node.String(), deleted: c.Deleted}}
		in.ID = id
		k := rowKey{pt.t.ContentTypeID, in.ID}
		if prev, ok := latest[k]; !ok {
			order = append(order, k)
			latest[k] = in
		} else if newer(in.ver, prev.ver) {
			latest[k] = in
		}
		maxHLC = max(maxHLC, HLC(c.HLC))
	}
	if len(order) == 0 {
		return 0, nil
	}
	local, err := n.versions(ctx, tx, order)
	if err != nil {
		return 0, err
	}
	var purgedHLC int64
	if err := tx.QueryRowContext(ctx, "SELECT purged_hlc FROM sync_lww_node WHERE id = 1").Scan(&purgedHLC); err != nil {
		return 0, err
	}
	var winners []*incoming
	for _, k := range order {
		in := latest[k]
		have, ok := local[k]
		if ok && !newer(in.ver, have) {
			continue
		}
		// A live version older than this node's tombstone horizon, of a
		// row it holds no version of, relayed by a node that did not write
		// it, or written by the sender and read from its feed before
		// (within this node's cursor of it): every version that old
		// reached this node (or was written on a node out of reach for
		// longer than the horizon), so the row was deleted here and its
		// tombstone purged. Taking it would bring the row back to life;
		// ignoring it would leave it on the sender. It becomes a
		// tombstone at the horizon, which reaches the sender and deletes
		// the row there too.
		//
		// The sender's own version past this node's cursor of it never
		// reached this node from its writer: a write made offline, whose
		// clock may have been far behind (a device whose clock reset), or
		// which reached this node only through others. It is taken as
		// the write it is: made a tombstone, it was lost on every node
		// (a node whose clock runs behind stamps its first writes that
		// far back, until it sees a peer's clock).
		if !ok && !in.Deleted && in.HLC < purgedHLC && (in.ver.node != st.from || in.Seq <= st.received) {
			v := versionOf{hlc: purgedHLC, node: cascadeNode, deleted: true}
			in = &incoming{Change: Change{Table: in.Table, ID: in.ID, HLC: v.hlc, Node: v.node, Deleted: true}, pt: in.pt, ver: v}
		}
		winners = append(winners, in)
	}
	// A key respelled on its node (a case-only edit under a collation
	// that ignores case) comes as the delete of the old spelling and the
	// write of the new: the row is respelled in place (writeRows), its
	// delete kept out of the delete rule, which would delete the rows
	// referencing it, as the database's ON DELETE actions would.
	respell, err := n.respellings(ctx, tx, winners, b, st)
	if err != nil {
		return 0, err
	}
	// A delete of a row this node holds under another spelling deletes
	// nothing here (deleteRows): nor do the rows referencing it go.
	elsewhere, err := n.heldElsewhere(ctx, tx, winners, respell)
	if err != nil {
		return 0, err
	}
	var respelled []*incoming
	if len(respell) > 0 || len(elsewhere) > 0 {
		winners = slices.DeleteFunc(winners, func(w *incoming) bool {
			k := rowKey{w.pt.t.ContentTypeID, w.ID}
			if _, ok := respell[k]; ok || elsewhere[k] {
				respelled = append(respelled, w)
				return true
			}
			return false
		})
	}
	// A delete wins over the rows that reference the deleted row.
	winners, late, err := n.cascade(ctx, tx, winners, local, st)
	if err != nil {
		return 0, err
	}
	dropDeadRespellings(winners, respell)
	winners = withRespelled(winners, respelled, respell)
	for _, w := range winners {
		maxHLC = max(maxHLC, HLC(w.HLC))
	}
	// Even when nothing wins, the node's clock moves past what it saw.
	_, seq, err := n.tick(ctx, tx, int64(len(winners)), maxHLC)
	if err != nil {
		return 0, err
	}
	if len(winners) == 0 {
		return 0, nil
	}
	if err := n.writeRows(ctx, tx, winners, late, respell, st); err != nil {
		return 0, err
	}
	// Record the versions, with this node's new sequence numbers in the
	// order they arrived.
	first := seq - int64(len(winners)) + 1
	var sb strings.Builder
	args := make([]any, 0, len(winners)*6)
	var long []int
	flush := func() error {
		if len(args) == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, recordVersions+sb.String()+recordVersionsConflict, args...); err != nil {
			return fmt.Errorf("record versions: %w", err)
		}
		sb.Reset()
		args = args[:0]
		return nil
	}
	for i, w := range winners {
		if n.kind == dialect.Postgres && w.Deleted && len(w.ID) > longIdentity {
			long = append(long, i)
			continue
		}
		if sb.Len() > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("(?, ?, ?, ?, ?, ?)")
		args = append(args, w.pt.t.ContentTypeID, w.ID, w.HLC, w.ver.node, w.Deleted, first+int64(i))
		if len(args) >= 6*500 {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	for _, i := range long {
		if err := n.recordLongTombstone(ctx, tx, winners[i], first+int64(i)); err != nil {
			return 0, err
		}
	}
	return len(winners), nil
}

const (
	recordVersions         = `INSERT INTO sync_lww (content_type_id, row_id, hlc, node, deleted, seq) VALUES `
	recordVersionsConflict = `
ON CONFLICT (content_type_id, row_id) DO UPDATE SET hlc = EXCLUDED.hlc, node = EXCLUDED.node, deleted = EXCLUDED.deleted, seq = EXCLUDED.seq`
)

// longIdentity is the length (bytes) of an identity past which a
// PostgreSQL node records a tombstone apart (recordLongTombstone): a
// btree entry holds about 2.7 kB, less than a text key SQLite stores.
const longIdentity = 2000

// recordLongTombstone records the tombstone w of a long identity, in a
// savepoint. A key too large for the indexes of this node's database
// (dialect.RefusedValue) names no row it can hold: the tombstone is not
// recorded (nor relayed), as the row's write was refused (a
// *dbsync.ValueError, writeError). Recorded, it failed every apply of the
// peer's feed, which holds it until its purge: the delete of the row
// that failed, the application's way out of that refusal, could never
// reach this node.
func (n *Node) recordLongTombstone(ctx context.Context, tx bun.Tx, w *incoming, seq int64) error {
	if _, err := tx.ExecContext(ctx, "SAVEPOINT dbsync_long_identity"); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, recordVersions+"(?, ?, ?, ?, ?, ?)"+recordVersionsConflict,
		w.pt.t.ContentTypeID, w.ID, w.HLC, w.ver.node, w.Deleted, seq)
	if _, refused := dialect.RefusedValue(err); refused {
		n.log.InfoContext(ctx, "peer: a tombstone of a key too large for this node's indexes not recorded", slog.String("table", w.Table), slog.Int("bytes", len(w.ID)))
		_, err = tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT dbsync_long_identity")
		return err
	}
	if err != nil {
		return fmt.Errorf("record versions: %w", err)
	}
	_, err = tx.ExecContext(ctx, "RELEASE SAVEPOINT dbsync_long_identity")
	return err
}

// versions reads the local versions of rows.
func (n *Node) versions(ctx context.Context, tx bun.IDB, keys []rowKey) (map[rowKey]versionOf, error) {
	byCT := map[int64][]string{}
	for _, k := range keys {
		byCT[k.ct] = append(byCT[k.ct], k.id)
	}
	out := make(map[rowKey]versionOf, len(keys))
	for ct, ids := range byCT {
		for start := 0; start < len(ids); start += store.Batch {
			rows, err := tx.QueryContext(ctx, "SELECT row_id, hlc, node, deleted FROM sync_lww WHERE content_type_id = ? AND row_id IN (?)",
				ct, bun.List(ids[start:min(start+store.Batch, len(ids))]))
			if err != nil {
				return nil, err
			}
			for rows.Next() {
				var id string
				var v versionOf
				if err := rows.Scan(&id, &v.hlc, &v.node, &v.deleted); err != nil {
					rows.Close()
					return nil, err
				}
				out[rowKey{ct, id}] = v
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// writeRows writes the winning versions into the application's tables:
// deletes first (children before parents, the deepest first within a
// table), then rows (parents first). The deletes of rows that a written
// row references now, here, come last (late): deleting them first would
// let the database's own ON DELETE actions reach that row, which moves
// away from them in this batch.
func (n *Node) writeRows(ctx context.Context, tx bun.Tx, winners []*incoming, late map[rowKey]bool, respell map[rowKey]string, st *applyState) error {
	dels := map[*ptable][]string{}
	lateDels := map[*ptable][]string{}
	puts := map[*ptable][]*incoming{}
	for _, w := range winners {
		_, respelled := respell[rowKey{w.pt.t.ContentTypeID, w.ID}]
		switch {
		case respelled:
		case !w.Deleted:
			puts[w.pt] = append(puts[w.pt], w)
		case late[rowKey{w.pt.t.ContentTypeID, w.ID}]:
			lateDels[w.pt] = append(lateDels[w.pt], w.ID)
		default:
			dels[w.pt] = append(dels[w.pt], w.ID)
		}
	}
	if err := n.deleteRows(ctx, tx, dels, st); err != nil {
		return err
	}
	for k, id := range respell {
		pt := n.byCT[k.ct]
		args, err := store.KeyArgs(pt.t, []string{id, k.id})
		if err != nil {
			return err
		}
		pk := dialect.QuoteIdent(pt.t.PK.Name)
		if _, err := tx.ExecContext(ctx, "UPDATE "+string(pt.t.Schema().SQLName)+" SET "+pk+" = ? WHERE "+pk+" = ?", args...); err != nil {
			return fmt.Errorf("respell a key of %s: %w", pt.t.Name, err)
		}
	}
	for _, pt := range n.tables {
		if ws := puts[pt]; len(ws) > 0 {
			if err := n.putRows(ctx, tx, pt, ws, st); err != nil {
				return err
			}
		}
	}
	return n.deleteRows(ctx, tx, lateDels, st)
}

// deleteRows deletes rows by identity, children's tables first, and in
// each table in the reverse of the order given (cascaded rows come after
// their parents: the deepest go first).
func (n *Node) deleteRows(ctx context.Context, tx bun.Tx, dels map[*ptable][]string, st *applyState) error {
	for i := len(n.tables) - 1; i >= 0; i-- {
		pt := n.tables[i]
		ids := slices.Clone(dels[pt])
		if len(ids) == 0 {
			continue
		}
		slices.Reverse(ids)
		if pt.keyFolds {
			// A delete of "ABC" is not one of the row "abc" this node
			// holds (another identity), which the database would find.
			held, err := store.HeldSpellings(ctx, tx, pt.t, ids)
			if err != nil {
				return err
			}
			ids = slices.DeleteFunc(ids, func(id string) bool { _, other := held[id]; return other })
			if len(ids) == 0 {
				continue
			}
		}
		if pt.keyIdentity {
			if err := store.Delete(ctx, tx, pt.t, ids); err != nil {
				return err
			}
			st.touched.Deleted(pt.t, ids...)
			st.unparked(pt.t, ids)
			st.forget(pt, ids)
			continue
		}
		st.forget(pt, ids)
		// The local keys of the deleted rows, for the reference check.
		q := fmt.Sprintf("DELETE FROM %s WHERE %s IN (?) RETURNING CAST(%s AS TEXT)",
			dialect.QuoteIdent(pt.t.Name), dialect.QuoteIdent(IdentityColumn), dialect.QuoteIdent(pt.t.PK.Name))
		for start := 0; start < len(ids); start += store.Batch {
			var keys []string
			if err := tx.NewRaw(q, bun.List(ids[start:min(start+store.Batch, len(ids))])).Scan(ctx, &keys); err != nil {
				return fmt.Errorf("delete from %s: %w", pt.t.Name, err)
			}
			st.touched.Deleted(pt.t, keys...)
			st.unparked(pt.t, keys)
		}
	}
	return nil
}

func (n *Node) putRows(ctx context.Context, tx bun.Tx, pt *ptable, ws []*incoming, st *applyState) error {
	layers, err := selfLayers(pt, ws)
	if err != nil {
		return err
	}
	for _, l := range layers {
		if err := n.putLayer(ctx, tx, pt, l, st); err != nil {
			return err
		}
	}
	return nil
}

// selfLayers orders the rows of a table that references itself through a
// local (integer) key: such a reference travels as an identity, which
// resolves to a local key only once the referenced row is written, so a
// row comes in a layer after the rows of the batch it references. Other
// tables' rows come in one layer. In a cycle, one reference waits for the
// end of the apply (see refsToLocal).
func selfLayers(pt *ptable, ws []*incoming) ([][]*incoming, error) {
	var cols []string
	for _, r := range pt.intRefs {
		if r.parent == pt {
			cols = append(cols, r.column)
		}
	}
	if len(cols) == 0 || len(ws) < 2 {
		return [][]*incoming{ws}, nil
	}
	at := make(map[string]int, len(ws))
	for i, w := range ws {
		at[w.ID] = i
	}
	deps := make([][]int, len(ws))
	for i, w := range ws {
		row, err := protocol.ParseRow(w.Row)
		if err != nil {
			return nil, fmt.Errorf("%w: row of %s %s: %w", dbsync.ErrBadRequest, pt.t.Name, w.ID, err)
		}
		for _, c := range cols {
			id, ok, err := refIdentity(row[c])
			if err != nil {
				return nil, fmt.Errorf("%w: %s %s, column %s: %w", dbsync.ErrBadRequest, pt.t.Name, w.ID, c, err)
			}
			if j, in := at[id]; ok && in {
				deps[i] = append(deps[i], j)
			}
		}
	}
	// depth[i]: 0 unknown, -1 being computed, d > 0 the row's layer + 1.
	// An explicit stack: chains can be as long as the batch.
	depth := make([]int, len(ws))
	layers := [][]*incoming{}
	for i := range ws {
		if depth[i] != 0 {
			continue
		}
		stack := []int{i}
		for len(stack) > 0 {
			top := stack[len(stack)-1]
			if depth[top] > 0 { // pushed twice, done since
				stack = stack[:len(stack)-1]
				continue
			}
			depth[top] = -1
			d, pending := 1, false
			for _, j := range deps[top] {
				switch {
				case depth[j] == -1:
					// A cycle: this reference waits for the end of the
					// apply (resolvePending).
				case depth[j] == 0:
					stack, pending = append(stack, j), true
				default:
					d = max(d, depth[j]+1)
				}
			}
			if pending {
				continue
			}
			depth[top] = d
			stack = stack[:len(stack)-1]
			for len(layers) < d {
				layers = append(layers, nil)
			}
			layers[d-1] = append(layers[d-1], ws[top])
		}
	}
	return layers, nil
}

func (n *Node) putLayer(ctx context.Context, tx bun.Tx, pt *ptable, ws []*incoming, st *applyState) error {
	t := pt.t
	later, err := n.refsToLocal(ctx, tx, pt, ws, st)
	if err != nil {
		return err
	}
	if pt.keyIdentity {
		rows := make([]reflect.Value, len(ws))
		for i, w := range ws {
			ptr, err := t.Codec().DecodeRaw(w.Row)
			if err != nil {
				return err
			}
			if k := t.Codec().KeyOf(ptr.Elem()); k != w.ID {
				return fmt.Errorf("%w: row of %s %s carries key %s", dbsync.ErrBadRequest, t.Name, w.ID, k)
			}
			if err := checkRow(t, ptr.Elem(), w.ID); err != nil {
				return err
			}
			rows[i] = ptr.Elem()
			st.touched.WroteRowExcept(n.reg, t, rows[i], later[w.ID])
		}
		ids := make([]string, len(ws))
		for i, w := range ws {
			ids[i] = w.ID
		}
		if err := st.park(ctx, tx, t, rows, rows, ids); err != nil {
			return err
		}
		if err := checkSpellings(ctx, tx, pt, ids); err != nil {
			return err
		}
		if err := n.writeError(ctx, t, ws, store.Write(ctx, tx, t, rows, true)); err != nil {
			return err
		}
		// Two rows of the write under keys the collation takes for one
		// (SQLite's upsert writes the one row twice).
		return checkDistinct(ctx, tx, pt, ids)
	}
	ids := make([]string, len(ws))
	for i, w := range ws {
		ids[i] = w.ID
	}
	keys, err := n.localKeys(ctx, tx, pt, ids)
	if err != nil {
		return err
	}
	var existing []reflect.Value
	var existingIDs []string
	var fresh []reflect.Value
	var freshIDs []string
	for _, w := range ws {
		ptr, err := t.Codec().DecodeRawWithout(w.Row, t.PK.Name)
		if err != nil {
			return err
		}
		if err := checkRow(t, ptr.Elem(), w.ID); err != nil {
			return err
		}
		if k, ok := keys[w.ID]; ok {
			v, err := t.ParseKey(k)
			if err != nil {
				return err
			}
			t.PK.Field().Value(ptr.Elem()).Set(reflect.ValueOf(v).Convert(t.PK.Field().Value(ptr.Elem()).Type()))
			existing = append(existing, ptr.Elem())
			existingIDs = append(existingIDs, w.ID)
			st.touched.WroteRowExcept(n.reg, t, ptr.Elem(), later[w.ID])
		} else {
			st.touched.ReferencesExcept(n.reg, t, ptr.Elem(), later[w.ID])
			fresh = append(fresh, ptr.Elem())
			freshIDs = append(freshIDs, w.ID)
		}
	}
	if err := st.park(ctx, tx, t, existing, append(slices.Clone(existing), fresh...), append(slices.Clone(existingIDs), freshIDs...)); err != nil {
		return err
	}
	if err := store.Write(ctx, tx, t, existing, true); err != nil {
		return n.writeError(ctx, t, ws, err)
	}
	return n.writeError(ctx, t, ws, insertWithIdentity(ctx, tx, t, fresh, freshIDs))
}

// checkRow refuses a row from a peer that the databases cannot store and
// read back as it came (store.CheckRow: a time outside UTC years 1-9999,
// text with a NUL, JSON holding \u0000): stored, it would break the
// node's own feed, or differ from the sender's copy. The error, a
// *dbsync.ValueError wrapping dbsync.ErrBadRequest, names the row by its
// identity.
func checkRow(t *dbsync.Table, strct reflect.Value, id string) error {
	err := store.CheckRow(t, strct)
	if ve := (*dbsync.ValueError)(nil); errors.As(err, &ve) {
		ve.Key = id
	}
	return err
}

// insertWithIdentity inserts new rows of a table with an integer key: the
// local primary key is assigned by the database, the identity given.
func insertWithIdentity(ctx context.Context, tx bun.IDB, t *dbsync.Table, rows []reflect.Value, ids []string) error {
	if len(rows) == 0 {
		return nil
	}
	gen := schema.NewQueryGen(tx.Dialect())
	var head strings.Builder
	fmt.Fprintf(&head, "INSERT INTO %s (", dialect.QuoteIdent(t.Name))
	for _, c := range t.Columns {
		if c != t.PK {
			head.WriteString(string(c.Field().SQLName))
			head.WriteString(", ")
		}
	}
	head.WriteString(dialect.QuoteIdent(IdentityColumn))
	head.WriteString(") VALUES ")
	var b []byte
	for start := 0; start < len(rows); start += store.Batch {
		b = append(b[:0], head.String()...)
		for i := start; i < min(start+store.Batch, len(rows)); i++ {
			if i > start {
				b = append(b, ", "...)
			}
			b = append(b, '(')
			for _, c := range t.Columns {
				if c != t.PK {
					b = store.AppendValue(gen, b, c.Field(), rows[i])
					b = append(b, ", "...)
				}
			}
			b = gen.Dialect().AppendString(b, ids[i])
			b = append(b, ')')
		}
		if _, err := tx.ExecContext(ctx, string(b)); err != nil {
			return fmt.Errorf("insert into %s: %w", t.Name, err)
		}
	}
	return nil
}

// dropForgotten ends a resynchronization: local rows the peer's full state
// lacks, whose version is older than the peer's tombstone horizon, were
// deleted there and their tombstones purged. They are found by the
// database (an anti-join on the state's keys) and deleted a page at a
// time, in the order of the log's key. This node's own versions past
// received (how far the peer had applied this node's feed) are kept: the
// peer lacks them because they never reached it (a write made offline,
// with a clock that may have been far behind), and the push sends them.
func (n *Node) dropForgotten(ctx context.Context, tx bun.Tx, seen *stateKeys, purged, received int64, st *applyState) (int, error) {
	if purged <= 0 || seen == nil {
		return 0, nil
	}
	applied := 0
	var afterCT int64
	afterID, first := "", true
	for {
		// A row value compared with the log's key: each page starts where
		// the last ended in its index.
		after, args := "", []any{false, purged, n.id.String(), received}
		if !first {
			after, args = " AND (l.content_type_id, l.row_id) > (?, ?)", append(args, afterCT, afterID)
		}
		rows, err := tx.QueryContext(ctx, `SELECT l.content_type_id, l.row_id, l.hlc, l.node FROM sync_lww AS l
WHERE l.deleted = ? AND l.hlc < ? AND NOT (l.node = ? AND l.seq > ?)`+after+`
AND NOT EXISTS (SELECT 1 FROM `+seen.tmp+` AS s WHERE s.ct = l.content_type_id AND s.id = l.row_id)
ORDER BY l.content_type_id, l.row_id LIMIT ?`, append(args, forgottenPage)...)
		if err != nil {
			return 0, fmt.Errorf("find the rows the peer's state lacks: %w", err)
		}
		// Tombstones at the peer's horizon: lower than anything live
		// there. Of the nil node, as the delete rule's and the horizon's:
		// kept as the writer's, this node's feed would leave it out of
		// what it sends the writer (Changes' except), and the writer kept
		// the row for ever.
		b := &Batch{}
		read := 0
		for rows.Next() {
			var ct int64
			var c Change
			if err := rows.Scan(&ct, &c.ID, &c.HLC, &c.Node); err != nil {
				rows.Close()
				return 0, err
			}
			read++
			afterCT, afterID, first = ct, c.ID, false
			pt := n.byCT[ct]
			if pt == nil {
				continue
			}
			c.Table = pt.t.Name
			c.Deleted, c.HLC, c.Node = true, purged, cascadeNode
			b.Changes = append(b.Changes, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, err
		}
		if len(b.Changes) > 0 {
			k, err := n.applyBatch(ctx, tx, b, st)
			if err != nil {
				return 0, err
			}
			if err := st.settle(ctx, tx); err != nil {
				return 0, err
			}
			applied += k
		}
		if read < forgottenPage {
			return applied, nil
		}
	}
}

// forgottenPage is how many rows dropForgotten deletes at a time.
const forgottenPage = 1000

// stateKeysTable holds, while a resynchronization's apply runs, the keys
// of the rows of the peer's state (by content type and identity): a
// temporary table of the apply's transaction, so that its memory does not
// grow with the state.
const stateKeysTable = "sync_lww_state_keys"

// stateKeys is stateKeysTable in the transaction of one apply.
type stateKeys struct {
	tx  bun.Tx
	tmp string // qualified name
}

func newStateKeys(ctx context.Context, tx bun.Tx) (*stateKeys, error) {
	tmp, err := dialect.TempTable(ctx, tx, stateKeysTable, "ct BIGINT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (ct, id)")
	if err != nil {
		return nil, fmt.Errorf("stage the peer's state: %w", err)
	}
	return &stateKeys{tx: tx, tmp: tmp}, nil
}

// drop removes the table before the transaction ends (SQLite keeps a
// temporary table for the connection's life).
func (s *stateKeys) drop(ctx context.Context) error {
	if s == nil {
		return nil
	}
	if _, err := s.tx.ExecContext(ctx, "DROP TABLE IF EXISTS "+s.tmp); err != nil {
		return fmt.Errorf("drop %s: %w", stateKeysTable, err)
	}
	return nil
}

// add records the keys of changes (of tracked tables) as the state's,
// by identity in canonical form (pt.identity), as applyBatch writes and
// records the rows and dropForgotten compares them: a UUID sent in
// another spelling (upper case) kept as sent would name no row of the
// log, and the row just written would be dropped as forgotten. An
// identity that is none is refused (dbsync.ErrBadRequest).
func (s *stateKeys) add(ctx context.Context, n *Node, changes []Change) error {
	var b strings.Builder
	args := make([]any, 0, 2*min(len(changes), store.Batch))
	flush := func() error {
		if len(args) == 0 {
			return nil
		}
		if _, err := s.tx.ExecContext(ctx, b.String()+" ON CONFLICT DO NOTHING", args...); err != nil {
			return fmt.Errorf("stage the peer's state: %w", err)
		}
		b.Reset()
		args = args[:0]
		return nil
	}
	for _, c := range changes {
		pt := n.byName[c.Table]
		if pt == nil {
			continue
		}
		id, err := pt.identity(c.ID)
		if err != nil {
			return err
		}
		if len(args) == 0 {
			b.WriteString("INSERT INTO " + s.tmp + " (ct, id) VALUES (?, ?)")
		} else {
			b.WriteString(", (?, ?)")
		}
		args = append(args, pt.t.ContentTypeID, id)
		if len(args) == 2*store.Batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// Purge removes the tombstones written before olderThan ago and raises the
// node's purge point: a peer whose cursor is older must resynchronize
// (ErrResync). Choose olderThan longer than any write takes to reach every
// node, over the longest path of the mesh, not only longer than any node
// stays offline (see the package documentation, Tombstones).
func (n *Node) Purge(ctx context.Context, olderThan time.Duration) (int, error) {
	horizon := hlcAt(n.cfg.Now().Add(-olderThan))
	var purged int
	err := n.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, _, err := n.tick(ctx, tx, 0, 0); err != nil {
			return err
		}
		var maxSeq *int64
		if err := tx.NewRaw("SELECT MAX(seq) FROM sync_lww WHERE deleted = ? AND hlc < ?", true, int64(horizon)).Scan(ctx, &maxSeq); err != nil {
			return err
		}
		if maxSeq == nil {
			return nil
		}
		res, err := tx.ExecContext(ctx, "DELETE FROM sync_lww WHERE deleted = ? AND hlc < ?", true, int64(horizon))
		if err != nil {
			return err
		}
		k, _ := res.RowsAffected()
		purged = int(k)
		_, err = tx.ExecContext(ctx, `UPDATE sync_lww_node SET purged_seq = CASE WHEN purged_seq > ? THEN purged_seq ELSE ? END,
  purged_hlc = CASE WHEN purged_hlc > ? THEN purged_hlc ELSE ? END WHERE id = 1`, *maxSeq, *maxSeq, int64(horizon), int64(horizon))
		return err
	})
	return purged, err
}

// park moves out of the way, in place, the rows of t that hold a unique
// value a row of writes (identities ids) takes, before writes are
// written: a swap of values the sending peer wrote in one transaction,
// whose rows would else collide one at a time (store.Park, as the server
// parks a push's swaps, merge.md V5). stored are the rows of writes t
// holds already. A holder written in this layer is rewritten at once;
// one outside it must be rewritten or deleted by a later page or layer of
// this apply (finish checks it), else the value is taken: ErrConstraint.
func (st *applyState) park(ctx context.Context, tx bun.Tx, t *dbsync.Table, stored, writes []reflect.Value, ids []string) error {
	if len(t.Uniques) == 0 {
		return nil
	}
	inLayer := make(map[string]bool, len(stored))
	for _, r := range stored {
		k := t.Codec().KeyOf(r)
		inLayer[k] = true
		delete(st.parked[t], k) // its rewrite came
	}
	park := map[string]bool{}
	for _, cols := range t.Uniques {
		holders, err := store.UniqueHolders(ctx, tx, t, cols, writes)
		if err != nil {
			return err
		}
		for i, h := range holders {
			if h == t.Codec().KeyOf(writes[i]) {
				continue
			}
			park[h] = true
			if !inLayer[h] {
				if st.parked[t] == nil {
					st.parked[t] = map[string]string{}
				}
				st.parked[t][h] = ids[i]
			}
		}
	}
	if len(park) == 0 {
		return nil
	}
	return store.Park(ctx, tx, t, slices.Sorted(maps.Keys(park)), writes)
}

// unparked forgets parked rows deleted by this apply (keys: local keys).
func (st *applyState) unparked(t *dbsync.Table, keys []string) {
	for _, k := range keys {
		delete(st.parked[t], k)
	}
}

// finishParks refuses the apply (ErrConstraint) when a row park moved
// out of the way was neither rewritten nor deleted: the value it held is
// taken by another row, a collision between nodes, not a swap.
func (st *applyState) finishParks() error {
	for t, held := range st.parked {
		if len(held) == 0 {
			continue
		}
		takers := slices.Sorted(maps.Values(held))
		more := ""
		if len(takers) > 5 {
			takers, more = takers[:5], fmt.Sprintf(" (of %d)", len(held))
		}
		return fmt.Errorf("%w: a row of %s among %s%s takes a unique value another row of this node holds",
			ErrConstraint, t.Name, strings.Join(takers, ", "), more)
	}
	return nil
}

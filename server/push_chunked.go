package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/protocol"
)

// stagedChunk is one chunk of a chunked push the server holds until its
// commit (sync_push_chunks, migration 0004).
type stagedChunk struct {
	bun.BaseModel `bun:"table:sync_push_chunks"`

	NodeID     int64     `bun:"node_id,pk"`
	PushID     string    `bun:"push_id,pk"`
	Seq        int       `bun:"seq,pk"`
	Digest     string    `bun:"digest,notnull"`
	Size       int64     `bun:"size,notnull"`
	Operations int       `bun:"operations,notnull"`
	Body       []byte    `bun:"body,notnull"`
	Created    time.Time `bun:"created,notnull"`
}

// StagePushChunk stages one chunk of a chunked push: body is the JSON of a
// protocol.PushChunk, kept as it is. The chunk is validated on its own as
// a push is (shape, push id, tables, keys, rows, and a row for each of its
// inserts and updates); a refusal writes nothing. A chunk resent with the
// same seq replaces the copy held. A node stages one push at a time: a
// chunk of a new push id deletes the node's chunks of other push ids.
//
// A chunk of a push id already applied is not staged: the answer carries
// the version it created. A push id the node gave up on is refused with
// dbsync.ErrPushAbandoned. A chunk that would take the node's staged bytes
// beyond Config.MaxStagedBytes is refused with dbsync.ErrTooLarge.
func (s *Server) StagePushChunk(ctx context.Context, node int64, body []byte) (*protocol.PushChunkResponse, error) {
	s.noteSeen(ctx, node)
	c, err := protocol.DecodePushChunk(body)
	if err != nil {
		return nil, err
	}
	if _, err := s.checkPush(c.Request()); err != nil {
		return nil, err
	}
	resp := &protocol.PushChunkResponse{PushID: c.PushID, Seq: c.Seq, Digest: protocol.ChunkDigest(body)}
	p, err := s.lookupPush(ctx, node, c.PushID)
	switch {
	case err != nil:
		return nil, err
	case p != nil && p.VersionID == nil:
		return nil, fmt.Errorf("%w: push %s", dbsync.ErrPushAbandoned, c.PushID)
	case p != nil:
		resp.VersionID = p.VersionID
		return resp, nil
	}
	now := s.cfg.Now().UTC()
	if c.Seq == 0 {
		s.sweepChunks(ctx, now)
	}
	row := &stagedChunk{NodeID: node, PushID: c.PushID, Seq: c.Seq, Digest: resp.Digest, Size: int64(len(body)),
		Operations: len(c.Operations), Body: body, Created: now}
	err = dialect.RunInTx(ctx, s.db, nil, func(ctx context.Context, tx bun.Tx) error {
		// Concurrent chunks of a node (PostgreSQL runs them at once)
		// must see each other: one push id per node, MaxStagedBytes.
		if err := dialect.LockStaging(ctx, tx, node); err != nil {
			return fmt.Errorf("lock staging: %w", err)
		}
		res, err := tx.NewDelete().Model((*stagedChunk)(nil)).Where("node_id = ? AND push_id <> ?", node, c.PushID).Exec(ctx)
		if err != nil {
			return fmt.Errorf("drop older chunks: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("drop older chunks: %w", err)
		} else if n > 0 {
			// Their keys too (only then: the query reads all the node's).
			if err := dropKeys(ctx, tx, node, c.PushID, true); err != nil {
				return err
			}
		}
		var held int64
		if err := tx.NewSelect().Model((*stagedChunk)(nil)).ColumnExpr("COALESCE(SUM(size), 0)").
			Where("node_id = ? AND push_id = ? AND seq <> ?", node, c.PushID, c.Seq).Scan(ctx, &held); err != nil {
			return fmt.Errorf("size staged chunks: %w", err)
		}
		if held+row.Size > s.cfg.MaxStagedBytes {
			return fmt.Errorf("%w: push %s would stage more than %d bytes (Config.MaxStagedBytes)", dbsync.ErrTooLarge, c.PushID, s.cfg.MaxStagedBytes)
		}
		// The body is bound, not written into the statement as a literal
		// (bun's hex): the database parses a short statement instead of
		// twice the body's size, and on PostgreSQL it travels in binary.
		q := tx.NewInsert().Model(row).Value("body", "$1").
			On("CONFLICT (node_id, push_id, seq) DO UPDATE").
			Set("digest = EXCLUDED.digest, size = EXCLUDED.size, operations = EXCLUDED.operations, body = EXCLUDED.body, created = EXCLUDED.created").
			Returning("NULL") // bun would return the body, set by Value
		if _, err = tx.Tx.ExecContext(ctx, q.String(), dialect.BinaryArgs(tx, body)...); err != nil {
			return fmt.Errorf("stage chunk: %w", err)
		}
		return stageKeys(ctx, tx, s.reg, node, c, s.scopes != nil)
	})
	if err != nil {
		return nil, s.refusedKey(ctx, err, func(yield func(table, key string) bool) {
			for _, op := range c.Operations {
				if !yield(op.Table, op.RowID) {
					return
				}
			}
		})
	}
	return resp, nil
}

// ChunkStatus tells a node what the server holds of a chunked push: the
// version it created if it was applied, else the chunks staged (seq and
// digest), so that a node resuming after a cut sends only the others. A
// push id the node gave up on is refused with dbsync.ErrPushAbandoned.
func (s *Server) ChunkStatus(ctx context.Context, node int64, pushID string) (*protocol.PushChunkStatus, error) {
	s.noteSeen(ctx, node)
	if err := checkPushID(pushID); err != nil {
		return nil, err
	}
	p, err := s.lookupPush(ctx, node, pushID)
	switch {
	case err != nil:
		return nil, err
	case p != nil && p.VersionID == nil:
		return nil, fmt.Errorf("%w: push %s", dbsync.ErrPushAbandoned, pushID)
	case p != nil:
		token, err := versionToken(ctx, s.db, *p.VersionID)
		if err != nil {
			return nil, err
		}
		return &protocol.PushChunkStatus{PushID: pushID, VersionID: p.VersionID, VersionToken: token, Chunks: []protocol.StagedChunk{}}, nil
	}
	held, err := s.stagedDigests(ctx, s.db, node, pushID, protocol.MaxPushChunks)
	if err != nil {
		return nil, err
	}
	return &protocol.PushChunkStatus{PushID: pushID, Chunks: held}, nil
}

// CommitPush applies the staged chunks of a chunked push as one push,
// exactly as Push applies a push of one request (same checks, same
// answer), in one transaction, a chunk at a time: the server never holds
// the whole push. The chunks 0 to req.Chunks-1 must all be staged and
// their digests give req.Digest (protocol.CommitDigest), else
// dbsync.ErrPushIncomplete and nothing is applied. The checks across
// chunks (rows left referencing deleted rows, unique values moved between
// rows, and on a server with Config.Scopes every row in the node's scope:
// stagedScope) query the keys staged with the chunks (sync_push_keys,
// keyed; a scoped server stages every key, and restages them at the
// commit if a server without scopes staged the chunks); a row named twice is found on
// the version's log. The staged chunks are deleted with the push, or when
// it is refused for good (ErrPushRejected, a unique conflict, a row out
// of scope). A push id already applied answers as Push does, whatever is
// staged.
func (s *Server) CommitPush(ctx context.Context, node int64, req *protocol.PushCommit) (resp *protocol.PushResponse, err error) {
	start := time.Now()
	ev := dbsync.Event{Op: "push", NodeID: node}
	defer func() {
		ev.Err = err
		if resp != nil {
			ev.VersionID = resp.NewVersionID
		}
		s.emit(ctx, ev, start)
	}()
	if req == nil {
		return nil, fmt.Errorf("%w: empty commit", dbsync.ErrBadRequest)
	}
	if err := checkPushID(req.PushID); err != nil {
		return nil, err
	}
	if req.Chunks < 1 || req.Chunks > protocol.MaxPushChunks {
		return nil, fmt.Errorf("%w: chunks %d is outside 1-%d", dbsync.ErrBadRequest, req.Chunks, protocol.MaxPushChunks)
	}
	if len(req.Digest) != 64 || !protocol.ValidNonce(req.Digest) {
		// Malformed, not push_incomplete: that answer has the node send
		// the chunks and commit again, refused the same way for ever.
		return nil, fmt.Errorf("%w: the commit's digest is not 64 lowercase hex digits", dbsync.ErrBadRequest)
	}
	if err := checkPushBase(req.LatestVersionID); err != nil {
		return nil, err
	}
	if err := checkVersionToken(req.LatestVersionToken); err != nil {
		return nil, err
	}
	head := &protocol.PushRequest{PushID: req.PushID, LatestVersionID: req.LatestVersionID, LatestVersionToken: req.LatestVersionToken, OwnVersionID: req.OwnVersionID}
	p, err := s.lookupPush(ctx, node, req.PushID)
	switch {
	case err != nil:
		return nil, err
	case p != nil && p.VersionID == nil:
		return nil, fmt.Errorf("%w: push %s", dbsync.ErrPushAbandoned, req.PushID)
	case p != nil:
		// Applied: applyPush answers duplicate (and drops what is staged).
		return s.applyPush(ctx, node, head, nil, 0, nil)
	}
	push, err := s.stagedPush(ctx, node, req)
	if err != nil {
		return nil, err
	}
	ops, err := push.operations(ctx, s.db)
	if err != nil {
		return nil, err
	}
	ev.Operations, ev.Rows = int64(ops), int64(ops)
	return s.applyPush(ctx, node, head, nil, ops, func(ctx context.Context, tx bun.Tx, version, rebasedFrom int64, bumps keyBumps) error {
		return s.applyStaged(ctx, tx, push, version, node, rebasedFrom, bumps)
	})
}

// stagedPush checks that the chunks a commit names are staged, with the
// digests it names.
func (s *Server) stagedPush(ctx context.Context, node int64, req *protocol.PushCommit) (*stagedPush, error) {
	held, err := s.stagedDigests(ctx, s.db, node, req.PushID, req.Chunks)
	if err != nil {
		return nil, err
	}
	digests := make([]string, 0, req.Chunks)
	for i, c := range held {
		if c.Seq != i {
			break
		}
		digests = append(digests, c.Digest)
	}
	if len(digests) < req.Chunks {
		held := "none of them"
		if len(digests) > 0 {
			held = fmt.Sprintf("chunks 0-%d of them", len(digests)-1)
		}
		return nil, fmt.Errorf("%w: push %s has %d chunks, the server holds %s",
			dbsync.ErrPushIncomplete, req.PushID, req.Chunks, held)
	}
	if protocol.CommitDigest(digests) != req.Digest {
		return nil, fmt.Errorf("%w: the chunks of push %s the server holds are not those of the commit (digest differs)",
			dbsync.ErrPushIncomplete, req.PushID)
	}
	return &stagedPush{node: node, pushID: req.PushID, digests: digests}, nil
}

// applyStaged writes a chunked push in version, inside its transaction:
// the deletes of every chunk first (checked for rows they would leave
// referencing them, children first), then each chunk's rows and their
// log, a chunk at a time, then that no row was named twice, then the
// references. Memory holds two chunks (the one written and the next,
// decoded meanwhile: planAhead) and the references to rows not written
// yet.
//
// A push rebased from version rebasedFrom (-1: not rebased) is refused
// with dbsync.ErrPullNeeded when another node changed one of its rows
// after that version, checked chunk by chunk.
func (s *Server) applyStaged(ctx context.Context, tx bun.Tx, push *stagedPush, version, node, rebasedFrom int64, bumps keyBumps) (err error) {
	// No chunk of the push (nor its keys) may change while it is applied:
	// the checks read the keys, the writes the chunks (each checked
	// against its digest). SQLite's writers wait for this transaction
	// already.
	if dialect.MustOf(tx) == dialect.Postgres {
		if _, err := push.filter(tx.NewSelect().Model((*stagedChunk)(nil)).Column("seq")).For("UPDATE").Exec(ctx); err != nil {
			return fmt.Errorf("lock staged chunks: %w", err)
		}
	}
	floor, err := lastOrder(ctx, tx)
	if err != nil {
		return err
	}
	if s.scopes != nil {
		if err := push.restage(ctx, tx, s.reg); err != nil {
			return err
		}
	}
	// A refusal before the writes lets them and the checks after them run
	// on (the transaction rolls back), so that it names the rows of all
	// the checks (applyPush does the same).
	scope, err := s.guardStaged(ctx, tx, push)
	var refused *dbsync.ScopeError
	if err != nil && !errors.As(err, &refused) {
		return err
	}
	if refused != nil {
		defer func() { err = withRefusal(refused, err) }()
	}
	deleting, err := push.deleteTables(ctx, tx, s.reg)
	if err != nil {
		return err
	}
	loose := func(t *dbsync.Table) bool { return s.keyEq[t.Name] != "" && t.KeyKind == protocol.KeyText }
	if err := push.stageChildren(ctx, tx, s.reg, deleting, loose); err != nil {
		return err
	}
	// On PostgreSQL the rows it deletes that other rows may reference are
	// locked before the orphan checks, as lockRows does for a push in one
	// request: a direct insert of a child committed since the seal is
	// seen by the checks, a later one waits for the push (and fails).
	// Unlocked, a child inserted between the check and the delete was
	// deleted by its foreign key's ON DELETE CASCADE, with capture off:
	// lost, its insert sealed after the push.
	if s.kind == dialect.Postgres {
		for _, t := range deleting {
			if len(s.full.Children(t.Name)) == 0 {
				continue
			}
			if err := push.deletes(ctx, tx, t, func(keys []string) error {
				return lockKeys(ctx, tx, t, keys, "FOR UPDATE")
			}); err != nil {
				return err
			}
		}
	}
	covered := func(child *dbsync.Table, keys []string, rewrites bool) (map[string]bool, error) {
		return push.covered(ctx, tx, child, keys, rewrites)
	}
	// Rows the push deletes that rows it rewrites reference are deleted
	// after the writes (deleteLate, as apply does), so that no ON DELETE
	// action deletes the rewritten rows first.
	late := map[string]map[string]bool{} // by table name, as checkOrphans reads it
	for _, t := range deleting {
		// In a table referencing itself a page's row may be the parent
		// of a late row of a later page: the pages are read again until
		// no row becomes late (once, in most pushes).
		self := slices.ContainsFunc(s.full.Children(t.Name), func(ch dbsync.ChildRef) bool { return ch.Table.Name == t.Name })
		for {
			before := len(late[t.Name])
			if err := push.deletes(ctx, tx, t, func(keys []string) error {
				lateKeys, err := s.checkOrphans(ctx, tx, t, keys, covered, late)
				if err != nil {
					// The written keys of t are staged when its key ignores
					// case, or it has unique columns (stageChildren).
					err = noteRespelled(err, func(fn func(keys []string) error) error { return push.keys(ctx, tx, t, writes, fn) })
				}
				for _, k := range lateKeys {
					if late[t.Name] == nil {
						late[t.Name] = map[string]bool{}
					}
					late[t.Name][k] = true
				}
				return err
			}); err != nil {
				return err
			}
			if !self || len(late[t.Name]) == before {
				break
			}
		}
	}
	spelled := map[string]map[string]string{} // by table name: deleteSpellings
	for _, t := range deleting {
		if err := push.deletes(ctx, tx, t, func(keys []string) error {
			held, err := s.deleteSpellings(ctx, tx, t, keys)
			if len(held) > 0 {
				if spelled[t.Name] == nil {
					spelled[t.Name] = map[string]string{}
				}
				maps.Copy(spelled[t.Name], held)
			}
			return err
		}); err != nil {
			return err
		}
	}
	// Rows deleted and written again under another spelling of their key
	// are respelled in place (respellInPlace), by table name.
	inPlace, kept := map[string]map[string]string{}, map[string]map[string]bool{}
	for _, t := range deleting {
		moved, keep, err := s.respellInPlace(ctx, tx, t,
			func(fn func(keys []string) error) error { return push.keys(ctx, tx, t, writes, fn) },
			func(fn func(keys []string) error) error { return push.deletes(ctx, tx, t, fn) })
		if err != nil {
			return err
		}
		if len(keep) > 0 {
			inPlace[t.Name], kept[t.Name] = moved, keep
			for k := range keep {
				delete(late[t.Name], k)
			}
		}
	}
	for _, t := range deleting {
		if err := push.deletes(ctx, tx, t, func(keys []string) error {
			if len(late[t.Name]) > 0 || len(kept[t.Name]) > 0 {
				keys = slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return late[t.Name][k] || kept[t.Name][k] })
			}
			return store.Delete(ctx, tx, t, keys)
		}); err != nil {
			return err
		}
	}
	refs := &store.Settler{}
	var respelt *respelling // rows written under another spelling of their keys
	plans := s.stagedPlans(ctx, tx, push)
	for seq := range push.digests {
		plan, err := plans.next()
		if err != nil {
			return err
		}
		if rebasedFrom >= 0 {
			if err := s.rebaseConflicts(ctx, tx, node, rebasedFrom, rebasedFrom, version-1, plan); err != nil {
				return err
			}
		}
		for _, tp := range plan.tables {
			tp.late, tp.spelled = late[tp.table.Name], spelled[tp.table.Name]
			tp.respelt, tp.kept = inPlace[tp.table.Name], kept[tp.table.Name]
		}
		swaps, err := uniqueChecks(ctx, tx, plan, &otherParts{push: push, seq: seq})
		if err != nil {
			return err
		}
		owners, err := scope.owners(ctx, tx, plan)
		if err != nil {
			return err
		}
		if err := s.writePlan(ctx, tx, plan, swaps, bumps); err != nil {
			return err
		}
		if err := scope.changedOwners(ctx, tx, owners); err != nil {
			return err
		}
		// The deletes ran before the first chunk's writes: the chunk's
		// rows are checked as it leaves them (a later chunk writing one
		// of them under another spelling is caught by its own check).
		if respelt, err = s.respelledWrites(ctx, tx, plan, respelt); err != nil {
			return err
		}
		if err := s.logPlan(ctx, tx, plan, version); err != nil {
			return err
		}
		tc := &store.Touched{}
		for _, tp := range plan.tables {
			for _, strct := range tp.upserts {
				tc.WroteRow(s.reg, tp.table, strct)
			}
		}
		// Untracked tables do not change during the push: each chunk's
		// rows are checked against them at once.
		if err := store.CheckUntrackedReferences(ctx, tx, s.reg, tc); err != nil {
			return err
		}
		// References to rows neither this chunk wrote nor the database
		// holds may be to rows of a later chunk: checked at the end.
		if err := refs.Add(ctx, tx, tc); err != nil {
			return err
		}
	}
	for _, t := range deleting { // children first
		if err := s.deleteLate(ctx, tx, t, setKeys(late[t.Name])); err != nil {
			return err
		}
	}
	if err := checkDistinct(ctx, tx, s.reg, floor, version); err != nil {
		return err
	}
	if err := refs.Verify(ctx, tx, s.reg); err != nil {
		return err
	}
	for _, t := range deleting {
		if err := push.deletes(ctx, tx, t, func(keys []string) error {
			if len(kept[t.Name]) > 0 {
				keys = slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return kept[t.Name][k] })
			}
			tc := &store.Touched{}
			tc.Deleted(t, keys...)
			if err := store.VerifyReferences(ctx, tx, s.reg, tc); err != nil {
				return err
			}
			return store.CheckRestrictedDeletes(ctx, tx, s.reg, tc)
		}); err != nil {
			return err
		}
	}
	names := make([]string, len(deleting))
	for i, t := range deleting {
		names[i] = t.Name
	}
	if err := store.RunDeleteActionsRestricted(ctx, tx, s.reg, names); err != nil {
		return err
	}
	if err := scope.after(ctx, tx); err != nil {
		return err
	}
	return respelt.refusal(ctx, tx)
}

// restage stages every key of the push, inside the commit's transaction,
// when its chunks staged fewer keys than it has operations: chunks staged
// by a server without scopes (keyed), committed on one with scopes (a
// restart with Config.Scopes between the uploads and the commit), whose
// checks (stagedScope) ask of every row.
func (p *stagedPush) restage(ctx context.Context, tx bun.Tx, reg *dbsync.Registry) error {
	if all, err := p.allStaged(ctx, tx); err != nil || all {
		return err
	}
	for seq := range p.digests {
		c, err := readChunk(ctx, tx, p, seq)
		if err != nil {
			return err
		}
		if err := stageKeys(ctx, tx, reg, p.node, c, true); err != nil {
			return err
		}
	}
	return nil
}

// planAhead reads the staged chunks of a push being committed in order
// and hands out what each writes (stagedPlans): while the caller writes
// one chunk, the next one is decoded and validated on another goroutine.
// Only the caller's goroutine uses the transaction. Memory holds two
// chunks.
type planAhead struct {
	s       *Server
	ctx     context.Context
	tx      bun.Tx
	push    *stagedPush
	seq     int               // the next chunk next returns
	pending chan plannedChunk // its plan, being made
}

type plannedChunk struct {
	plan *pushPlan
	err  error
}

// stagedPlans starts planning the first chunk of push.
func (s *Server) stagedPlans(ctx context.Context, tx bun.Tx, push *stagedPush) *planAhead {
	p := &planAhead{s: s, ctx: ctx, tx: tx, push: push}
	p.start(0)
	return p
}

// start reads chunk seq and plans it on another goroutine.
func (p *planAhead) start(seq int) {
	ch := make(chan plannedChunk, 1) // the goroutine never waits
	p.pending = ch
	body, err := readChunkBody(p.ctx, p.tx, p.push, seq)
	if err != nil {
		ch <- plannedChunk{err: err}
		return
	}
	go func() {
		c, err := decodeChunk(body, p.push, seq)
		if err != nil {
			ch <- plannedChunk{err: err}
			return
		}
		plan, err := p.s.planPush(c.Request())
		ch <- plannedChunk{plan: plan, err: err}
	}()
}

// next returns the plan of the next chunk, validated (checkPush), after
// starting the one after it.
func (p *planAhead) next() (*pushPlan, error) {
	r := <-p.pending
	p.pending = nil
	if r.err != nil {
		return nil, r.err
	}
	if p.seq++; p.seq < len(p.push.digests) {
		p.start(p.seq)
	}
	return r.plan, nil
}

// readChunk reads one staged chunk of a push being committed and checks it
// is the one the commit names.
func readChunk(ctx context.Context, tx bun.Tx, push *stagedPush, seq int) (*protocol.PushChunk, error) {
	body, err := readChunkBody(ctx, tx, push, seq)
	if err != nil {
		return nil, err
	}
	return decodeChunk(body, push, seq)
}

// readChunkBody reads the body of one staged chunk of a push being
// committed and checks its digest is the one the commit names.
func readChunkBody(ctx context.Context, tx bun.Tx, push *stagedPush, seq int) ([]byte, error) {
	// Read past bun, for PostgreSQL to send the body in binary.
	q := tx.NewSelect().Model((*stagedChunk)(nil)).Column("body").
		Where("node_id = ? AND push_id = ? AND seq = ?", push.node, push.pushID, seq).String()
	var body []byte
	if err := tx.Tx.QueryRowContext(ctx, q, dialect.BinaryArgs(tx)...).Scan(&body); err != nil {
		if isNoRows(err) {
			return nil, fmt.Errorf("%w: chunk %d of push %s is gone", dbsync.ErrPushIncomplete, seq, push.pushID)
		}
		return nil, fmt.Errorf("read chunk %d: %w", seq, err)
	}
	if protocol.ChunkDigest(body) != push.digests[seq] {
		// Replaced by a resend since the digests were read.
		return nil, fmt.Errorf("%w: chunk %d of push %s changed during the commit", dbsync.ErrPushIncomplete, seq, push.pushID)
	}
	return body, nil
}

// decodeChunk decodes the body of chunk seq of push, read by
// readChunkBody.
func decodeChunk(body []byte, push *stagedPush, seq int) (*protocol.PushChunk, error) {
	c, err := protocol.DecodePushChunk(body)
	if err != nil {
		return nil, fmt.Errorf("decode staged chunk %d: %w", seq, err)
	}
	if c.PushID != push.pushID || c.Seq != seq {
		return nil, fmt.Errorf("%w: staged chunk %d names push %s seq %d", dbsync.ErrPushIncomplete, seq, c.PushID, c.Seq)
	}
	return c, nil
}

// stagedDigests lists the seq and digest of the first limit chunks staged
// for a push, by seq.
func (s *Server) stagedDigests(ctx context.Context, db bun.IDB, node int64, pushID string, limit int) ([]protocol.StagedChunk, error) {
	var rows []stagedChunk
	if err := db.NewSelect().Model(&rows).Column("seq", "digest").
		Where("node_id = ? AND push_id = ?", node, pushID).OrderExpr("seq ASC").Limit(int64(limit)).Scan(ctx); err != nil {
		return nil, fmt.Errorf("read staged chunks: %w", err)
	}
	out := make([]protocol.StagedChunk, len(rows))
	for i, r := range rows {
		out[i] = protocol.StagedChunk{Seq: r.Seq, Digest: r.Digest}
	}
	return out, nil
}

// dropChunks deletes the chunks staged for a push, and their keys.
func dropChunks(ctx context.Context, db bun.IDB, node int64, pushID string) error {
	if _, err := db.NewDelete().Model((*stagedChunk)(nil)).Where("node_id = ? AND push_id = ?", node, pushID).Exec(ctx); err != nil {
		return fmt.Errorf("drop staged chunks: %w", err)
	}
	return dropKeys(ctx, db, node, pushID, false)
}

// sweepChunks deletes the chunks staged longer ago than
// Config.StagedChunkTTL: pushes their nodes never committed nor gave up
// on. It runs when a push's first chunk arrives, and in Trim.
//
// The chunks go first, then the keys of those it deleted: a chunk staged
// again meanwhile (its created renewed) is not deleted and keeps the keys
// staged with it, whose deletes its commit applies. (Listing the expired
// chunks first and deleting their keys, on PostgreSQL a chunk staged
// again in between kept its body and lost its keys: its commit logged
// its deletes without applying them.)
func (s *Server) sweepChunks(ctx context.Context, now time.Time) {
	err := dialect.RunInTx(ctx, s.db, nil, func(ctx context.Context, tx bun.Tx) error {
		if s.chunksSweeping != nil {
			s.chunksSweeping()
		}
		var gone []stagedChunk
		if err := tx.NewRaw("DELETE FROM sync_push_chunks WHERE created < ? RETURNING node_id, push_id, seq",
			now.Add(-s.cfg.StagedChunkTTL)).Scan(ctx, &gone); err != nil && !isNoRows(err) {
			return err
		}
		for _, c := range gone {
			if _, err := tx.NewDelete().Model((*stagedKey)(nil)).
				Where("node_id = ? AND push_id = ? AND seq = ?", c.NodeID, c.PushID, c.Seq).Exec(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.log.WarnContext(ctx, "server: sweeping staged push chunks failed", slog.String("error", err.Error()))
	}
}

package server

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
	"github.com/go-dbsync/dbsync/protocol"
)

// Emit receives the lines of a streamed response (pull, repair) one at a
// time. An error stops the stream. A message may be passed to the Emit of
// several pulls (shared answers, see Pull): Emit must not change it.
type Emit func(*protocol.Message) error

// Pull streams to a node everything after its latest version: a header
// (the server's latest version, the fate of the push the node asked about,
// the greatest integer keys), the versions, then chunks of compressed
// operations (at most one per row, python-sync-db's rules R1–R8) with the
// rows they need — the rows of inserts and updates and the rows those
// reference — and an end line with totals.
//
// Everything is read in one snapshot, in bounded memory: the operations come
// through a cursor, ChunkSize at a time, and their rows are read a line at
// a time, a line's rows and parents within the line budget (half of
// protocol.MaxLineBytes; a row with its parents larger alone, up to
// MaxLineBytes, beyond which it is dbsync.ErrTooLarge): a chunk of large rows goes
// in several lines, and the server holds about one line's rows, not the
// chunk's (lineReader.lines).
//
// When req.PushID names a push the node never heard back about, Pull
// reports whether it was applied; if it was not, it never will be (the id is
// marked abandoned). The operations of the node's own versions are left
// out, that push's included: the node has them already. (A node whose push
// was rebased holds its own version above versions it has not pulled yet;
// it pulls from the version below them.)
//
// Identical pulls share one answer: when many nodes pull from the same
// version at once, as the nodes the change feed wakes do, the answer is
// computed once and replayed to each (pull_share.go; Event.Shared). A pull
// shares only when it asks nothing of its own (no scopes on the server,
// no unanswered push, no deleted rows, no backfill) and its node has no version after
// its own; each gets what a pull of its own would have got.
func (s *Server) Pull(ctx context.Context, node int64, req *protocol.PullRequest, emit Emit) (err error) {
	start := time.Now()
	ev := dbsync.Event{Op: "pull", NodeID: node}
	defer func() { ev.Err = err; s.emit(ctx, ev, start) }()
	if req == nil {
		req = &protocol.PullRequest{}
	}
	return s.pull(ctx, node, req, emit, &ev, true)
}

// pull is Pull; share false keeps it from shared answers.
func (s *Server) pull(ctx context.Context, node int64, req *protocol.PullRequest, emit Emit, ev *dbsync.Event, share bool) (err error) {
	chunk := req.ChunkSize
	if chunk <= 0 {
		chunk = s.cfg.ChunkSize
	}
	chunk = min(chunk, MaxChunkSize)
	var claimed int64
	if req.LatestVersionID != nil {
		claimed = *req.LatestVersionID
	}
	if claimed < 0 {
		// Not a version a node can hold: below the floor, it would be
		// answered reset_required, and the node would reset for a
		// malformed request.
		return fmt.Errorf("%w: latest_version_id %d is negative", dbsync.ErrBadRequest, claimed)
	}
	if err := checkVersionToken(req.LatestVersionToken); err != nil {
		return err
	}
	// Checked before anything is written (the push id marked abandoned
	// below, the node's activity): a refused pull writes nothing.
	if req.PushID != "" {
		if err := checkPushID(req.PushID); err != nil {
			return err
		}
	}
	backfill, err := s.backfillTables(req.Backfill)
	if err != nil {
		return err
	}
	scope, err := s.newPullScope(req, chunk)
	if err != nil {
		return err
	}
	// Below the log floor (trim.go), before the push id is looked at (its
	// record may be gone) and before a shared answer.
	if err := checkFloor(ctx, s.db, claimed); err != nil {
		return err
	}
	// pullFrom refuses a node ahead of the server too (in its snapshot),
	// but only after the node's activity is noted and its unanswered push
	// marked abandoned: the refusal comes first here.
	latest, stored, err := latestAndToken(ctx, s.db, claimed, req.LatestVersionToken)
	if err != nil {
		return err
	}
	if claimed > latest {
		return aheadOfServer(claimed, latest, true)
	}
	// A version the server lost and numbered anew (version identity).
	if err := sameVersion(claimed, req.LatestVersionToken, stored, true); err != nil {
		return err
	}
	// The push id's record is read, and the id refused (another node's,
	// one unknown id too many), before the node's activity is noted. A
	// pull asking about a push never shares: it seals first here, since a
	// new version forgets the abandoned marks counted.
	var pushed *models.Push
	if req.PushID != "" {
		if _, err := s.Seal(ctx); err != nil {
			return err
		}
		if pushed, err = s.pushRecord(ctx, node, req.PushID); err != nil {
			return err
		}
	}
	s.noteHeld(ctx, node, claimed)
	if share && s.shareable(req) {
		if shared, err := s.sharedPull(ctx, node, req, claimed, chunk, emit, ev); shared || err != nil {
			return err
		}
	}
	if req.PushID == "" { // sealed above otherwise
		if _, err := s.Seal(ctx); err != nil {
			return err
		}
	}
	var status *protocol.PushStatus
	if req.PushID != "" {
		status, err = s.pushStatus(ctx, node, req.PushID, pushed)
		if err != nil {
			return err
		}
	}
	return s.pullFrom(ctx, node, req, claimed, chunk, status, backfill, scope, emit, ev, nil)
}

// aheadOfServer is the error of a node that claims a version the server
// does not have (its database was replaced or restored): it must repair.
// It is dbsync.ErrRepairNeeded, which wraps dbsync.ErrPushRejected (the
// client drops a push refused for good); a pull's text does not say a
// push was rejected (repairNeededError).
func aheadOfServer(claimed, latest int64, pull bool) error {
	why := fmt.Sprintf("the node holds version %d, the server only %d", claimed, latest)
	if pull {
		return &repairNeededError{msg: "dbsync: repair needed: " + why}
	}
	return fmt.Errorf("%w: %s", dbsync.ErrRepairNeeded, why)
}

// restoredNode is the error of a node whose push says it knows of no
// version of its own after known, when the server holds version unknown
// of that node's: the node's database is older than its own pushes
// (restored from a backup, or a copy), so that it would push again what
// it had pushed. It is dbsync.ErrRepairNeeded. (A pull's answer names
// the node's version in its header, Message.NodeVersionID, and the node
// checks it.)
func restoredNode(unknown, known int64) error {
	return fmt.Errorf("%w: the server holds version %d of this node's own pushes, the node knows none after %d: its database is older than its pushes (restored from a backup, or a copy); repair it, or register a copy as a node of its own",
		dbsync.ErrRepairNeeded, unknown, known)
}

// repairNeededError is dbsync.ErrRepairNeeded with a text of its own.
type repairNeededError struct{ msg string }

func (e *repairNeededError) Error() string { return e.msg }
func (e *repairNeededError) Unwrap() error { return dbsync.ErrRepairNeeded }

// pullFrom streams a pull's answer from one snapshot: the versions after
// claimed and their compressed operations, those of node's own versions
// left out, then the backfill asked for. With share (a pull other nodes
// wait for, pull_share.go), it also records what it emits there, and
// leaves no version out unless node has one of its own after claimed
// (then share is marked unusable). scope (newPullScope; nil without
// scopes) is loaded in the snapshot.
func (s *Server) pullFrom(ctx context.Context, node int64, req *protocol.PullRequest, claimed int64, chunk int,
	status *protocol.PushStatus, backfill *dbsync.Registry, scope *pullScope, emit Emit, ev *dbsync.Event, share *sharedPull) error {
	if s.pullSealed != nil {
		s.pullSealed()
	}
	for try := 1; ; try++ {
		err := s.pullSnapshot(ctx, node, req, claimed, chunk, status, backfill, scope, emit, ev, share, try == pullSealTries)
		if !errors.Is(err, errUnsealed) {
			return err
		}
		if _, err := s.Seal(ctx); err != nil {
			return err
		}
	}
}

// pullSealTries bounds the snapshots a pull takes while direct writes
// commit between its seal and its snapshot (errUnsealed); the last one
// is answered as it is.
const pullSealTries = 4

// errUnsealed: a pull's snapshot holds direct writes no version holds
// yet (committed after the pull sealed them). Its rows would carry their
// values without their operations: a row given a unique value the node
// holds in another row the direct write changed too (a swap), which the
// pull does not bring (merge.md U3, ErrInconsistent on the node). The
// pull seals them and takes another snapshot.
var errUnsealed = errors.New("server: direct writes not sealed in the pull's snapshot")

// pullSnapshot is pullFrom in one snapshot; unless last, one holding
// direct writes not sealed answers errUnsealed, having emitted nothing.
func (s *Server) pullSnapshot(ctx context.Context, node int64, req *protocol.PullRequest, claimed int64, chunk int,
	status *protocol.PushStatus, backfill *dbsync.Registry, scope *pullScope, emit Emit, ev *dbsync.Event, share *sharedPull, last bool) error {
	return s.snapshot(ctx, func(ctx context.Context, tx bun.Tx) error {
		st, err := readPullState(ctx, tx, node, claimed)
		if err != nil {
			return err
		}
		if st.pending && !last {
			return errUnsealed
		}
		latest, exclude := st.latest, node
		if claimed > latest {
			return aheadOfServer(claimed, latest, true)
		}
		// Again in the snapshot: a trim may have raised the floor since.
		if err := checkFloor(ctx, tx, claimed); err != nil {
			return err
		}
		if err := sameVersion(claimed, req.LatestVersionToken, st.token, true); err != nil {
			return err
		}
		if share != nil {
			emit = share.recording(emit, latest)
			if st.own {
				share.unusable()
			} else {
				exclude = 0 // no node's: the answer of every node without a version after claimed
			}
		}
		maxKeys, err := s.maxKeys(ctx, tx)
		if err != nil {
			return err
		}
		var pulled []int64
		for _, t := range s.reg.Tables() {
			if t.Direction.Pulled() {
				pulled = append(pulled, t.ContentTypeID)
			}
		}
		if err := scope.load(ctx, tx, node); err != nil {
			return err
		}
		ev.VersionID = latest
		head := &protocol.Message{Type: protocol.MsgHeader, LatestVersionID: &latest, LatestVersionToken: st.latestToken,
			Push: status, NodeVersionID: st.ownLatest, MaxKeys: maxKeys, Scoped: scope.names(), HeldRead: scope != nil}
		if err := emit(head); err != nil {
			return err
		}
		if err := s.streamVersions(ctx, tx, claimed, latest, emit); err != nil {
			return err
		}
		if claimed == latest || len(pulled) == 0 {
			filled, err := s.backfill(ctx, tx, node, backfill, wantedParents(req.Deleted), chunk, emit)
			if err != nil {
				return err
			}
			return scope.end(ctx, tx, emit, &protocol.Message{Type: protocol.MsgEnd, BackfillCount: filled})
		}
		cw := &chunkWriter{lineReader: s.newLineReader(ctx, tx, wantedParents(req.Deleted)), emit: emit, scope: scope}
		// One row per changed row: how many operations it has, its first
		// and last orders, and (right for a row with one operation) its
		// command and version. The first and last operations of a row with
		// more are read a chunk at a time (chunkWriter.flush): joining
		// them here for every row cost more than the grouping itself.
		q := `SELECT content_type_id, row_id, COUNT(*), MIN(command), MIN("order"), MIN(version_id), MAX("order")
FROM sync_operations
WHERE version_id > ? AND version_id <= ? AND content_type_id IN (?)
AND version_id NOT IN (SELECT version_id FROM sync_versions WHERE node_id = ? AND version_id > ? AND version_id <= ?)
GROUP BY content_type_id, row_id
ORDER BY MAX("order")`
		err = dialect.Stream(ctx, tx, chunk, cw.scan, cw.flush, q, claimed, latest, bun.List(pulled), exclude, claimed, latest)
		if err != nil {
			return err
		}
		ev.Operations, ev.Rows = cw.ops, cw.rows
		filled, err := s.backfill(ctx, tx, node, backfill, wantedParents(req.Deleted), chunk, emit)
		if err != nil {
			return err
		}
		return scope.end(ctx, tx, emit, &protocol.Message{Type: protocol.MsgEnd, OperationCount: cw.ops, RowCount: cw.rows, BackfillCount: filled})
	})
}

// maxKeys returns the greatest key each pulled table with integer keys
// has used (dialect.MaxKey), for a node's K1 (merge.md).
func (s *Server) maxKeys(ctx context.Context, tx bun.Tx) (map[string]int64, error) {
	out := map[string]int64{}
	for _, t := range s.reg.Tables() {
		// Push-only tables too: nodes never see their rows, so only K1
		// keeps two nodes' inserts from taking the same key.
		if t.KeyKind != protocol.KeyInt {
			continue
		}
		m, err := dialect.MaxKey(ctx, tx, t.Name, t.PK.Name)
		if err != nil {
			return nil, err
		}
		out[t.Name] = m
	}
	return out, nil
}

// snapshot runs fn in a read-only transaction that sees one consistent
// state of the database.
func (s *Server) snapshot(ctx context.Context, fn func(ctx context.Context, tx bun.Tx) error) error {
	return dialect.Snapshot(ctx, s.db, fn)
}

// MaxAbandonedPushes bounds the push ids of one node that Pull marks
// abandoned between two versions. A mark only matters while the server's
// latest version is the one the push was based on: every new version
// deletes them all (forgetAbandoned), after raising their nodes' rebase
// floors, which refuse the marked pushes from then on; an honest
// node has at most one unanswered push at a time and so at most a few marks.
// A pull asking about one more unknown push id is refused (ErrBadRequest)
// without writing; a retry of the node's push may still be applied.
const MaxAbandonedPushes = 16

// pushRecord reads the record of the push id (in canonical form) a pull
// asks about, nil when there is none, writing nothing: it refuses
// (ErrBadRequest) another node's push id (its record, or chunks it
// staged), and an unknown one when the node already has
// MaxAbandonedPushes marks.
func (s *Server) pushRecord(ctx context.Context, node int64, pushID string) (*models.Push, error) {
	p, err := s.lookupPush(ctx, node, pushID)
	if err != nil || p != nil {
		return p, err
	}
	// Staged by another node and not yet committed: marking it given up
	// as this node's would refuse the owner's commit.
	staged, err := s.db.NewSelect().Model((*stagedChunk)(nil)).Where("push_id = ? AND node_id <> ?", pushID, node).Exists(ctx)
	if err != nil {
		return nil, fmt.Errorf("read staged chunks of push %s: %w", pushID, err)
	}
	if staged {
		return nil, fmt.Errorf("%w: push id %s belongs to another node", dbsync.ErrBadRequest, pushID)
	}
	return nil, abandonedBound(ctx, s.db, node, 0)
}

// abandonedBound refuses (ErrBadRequest) one more mark of a push node
// abandoned when it holds MaxAbandonedPushes already, counting its marks
// in db; marked is 1 when the new mark is written already (and counted),
// 0 before.
func abandonedBound(ctx context.Context, db bun.IDB, node int64, marked int64) error {
	n, err := db.NewSelect().Model((*models.Push)(nil)).Where("node_id = ? AND version_id IS NULL", node).Count(ctx)
	if err != nil {
		return fmt.Errorf("count abandoned pushes: %w", err)
	}
	if n -= marked; n >= MaxAbandonedPushes {
		return fmt.Errorf("%w: node %d gave up on %d pushes since the latest version, the most the server keeps; push again, or pull after another version",
			dbsync.ErrBadRequest, node, n)
	}
	return nil
}

// pushStatus reports whether a push id was applied, from p, its record
// (pushRecord), marking it abandoned when there was none, so a copy still
// in flight can never be applied later.
func (s *Server) pushStatus(ctx context.Context, node int64, pushID string, p *models.Push) (*protocol.PushStatus, error) {
	if p != nil {
		return pushStatusOf(pushID, p), nil
	}
	mark := &models.Push{PushID: pushID, NodeID: node, Created: s.cfg.Now().UTC()}
	// pushRecord counted the node's marks, but concurrent pulls of the
	// node naming other unknown ids all pass that count before any
	// inserts: the mark is counted again with the others, serialized per
	// node (PostgreSQL: the staging lock; SQLite: the insert takes the
	// write lock first), and refused beyond the bound, nothing written.
	if err := dialect.RunInTx(ctx, s.db, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := dialect.LockStaging(ctx, tx, node); err != nil {
			return fmt.Errorf("lock the node's marks: %w", err)
		}
		res, err := tx.NewInsert().Model(mark).On("CONFLICT DO NOTHING").Exec(ctx)
		if err != nil {
			return fmt.Errorf("mark push %s: %w", pushID, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // recorded already (a copy applied meanwhile, or a mark)
		}
		return abandonedBound(ctx, tx, node, 1)
	}); err != nil {
		return nil, err
	}
	if err := dropChunks(ctx, s.db, node, pushID); err != nil {
		return nil, err
	}
	// Read back: the push may have been recorded as applied in between.
	// A mark deleted in between by a new version (forgetAbandoned) means
	// the same as a mark: the push can no longer be applied.
	p, err := s.lookupPush(ctx, node, pushID)
	if err != nil {
		return nil, err
	}
	return pushStatusOf(pushID, p), nil
}

// lookupPush reads a push id's record; nil when there is none.
func (s *Server) lookupPush(ctx context.Context, node int64, pushID string) (*models.Push, error) {
	var p models.Push
	err := s.db.NewSelect().Model(&p).Where("push_id = ?", pushID).Scan(ctx)
	switch {
	case isNoRows(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read push %s: %w", pushID, err)
	case p.NodeID != node:
		return nil, fmt.Errorf("%w: push id %s belongs to another node", dbsync.ErrBadRequest, pushID)
	}
	return &p, nil
}

// pushStatusOf answers about a push id from its record (nil: not applied).
func pushStatusOf(pushID string, p *models.Push) *protocol.PushStatus {
	if p == nil {
		return &protocol.PushStatus{PushID: pushID}
	}
	return &protocol.PushStatus{PushID: pushID, VersionID: p.VersionID}
}

// forgetAbandoned deletes the abandoned marks, in the transaction that
// creates a new version (under the version lock), latest being the latest
// version before it. Every push a mark guards against was sent before the
// mark, so it is based on latest or an older version: once the new version
// commits, a fast-forward-only server refuses it as behind
// (ErrPullNeeded), and a rebasing server refuses to rebase it, as the
// node's rebase floor, raised to latest first, says. A node asking again
// gets the same answer: not applied.
func forgetAbandoned(ctx context.Context, tx bun.Tx, latest int64) error {
	var nodes []int64
	if err := tx.NewRaw("DELETE FROM sync_pushes WHERE version_id IS NULL RETURNING node_id").Scan(ctx, &nodes); err != nil && !isNoRows(err) {
		return fmt.Errorf("forget abandoned pushes: %w", err)
	}
	slices.Sort(nodes)
	return raiseRebaseFloors(ctx, tx, slices.Compact(nodes), latest)
}

const versionsPerLine = 1000

func (s *Server) streamVersions(ctx context.Context, tx bun.Tx, after, upto int64, emit Emit) error {
	for after < upto {
		var vs []struct {
			models.Version `bun:",extend"`
			Token          *string `bun:"token"`
		}
		if err := tx.NewSelect().Model(&vs).ModelTableExpr("sync_versions AS v").ColumnExpr("v.*, t.token").
			Join("LEFT JOIN sync_version_tokens AS t ON t.version_id = v.version_id").
			Where("v.version_id > ? AND v.version_id <= ?", after, upto).
			OrderExpr("v.version_id ASC").Limit(versionsPerLine).Scan(ctx); err != nil {
			return fmt.Errorf("read versions: %w", err)
		}
		if len(vs) == 0 {
			return nil
		}
		msg := &protocol.Message{Type: protocol.MsgVersions, Versions: make([]protocol.Version, len(vs))}
		for i, v := range vs {
			msg.Versions[i] = protocol.Version{VersionID: v.VersionID, NodeID: v.NodeID, Created: v.Created}
			if v.Token != nil {
				msg.Versions[i].Token = *v.Token
			}
		}
		if err := emit(msg); err != nil {
			return err
		}
		after = vs[len(vs)-1].VersionID
	}
	return nil
}

// chunkWriter gathers compressed operations from the cursor and emits them
// in chunks with their rows.
type chunkWriter struct {
	*lineReader
	scope   *pullScope // nil: every row
	emit    Emit
	ops     int64
	rows    int64
	runs    []pulledRun // of the chunk, in the cursor's order
	pending []protocol.Operation
}

// pulledRun is a row's operations in a pull: how many, the first and the
// last (the same one when n is 1).
type pulledRun struct {
	n           int64
	first, last protocol.Operation
}

func (cw *chunkWriter) scan(rows *sql.Rows) error {
	var ct int64
	var r pulledRun
	if err := rows.Scan(&ct, &r.first.RowID, &r.n, &r.first.Command, &r.first.Order, &r.first.VersionID, &r.last.Order); err != nil {
		return fmt.Errorf("read operations: %w", err)
	}
	t := cw.s.reg.ByContentType(ct)
	if t == nil {
		return nil
	}
	r.first.Table = t.Name
	r.first.Command = models.Command(strings.TrimSpace(string(r.first.Command)))
	if r.n == 1 {
		r.last = r.first
	} else {
		// MIN(command) and MIN(version_id) are not the first
		// operation's: runEnds reads both operations.
		r.first.Command, r.first.VersionID = "", nil
		r.last.Table, r.last.RowID = t.Name, r.first.RowID
	}
	cw.runs = append(cw.runs, r)
	return nil
}

// runEnds reads the first and last operations of the chunk's rows that
// have more than one.
func (cw *chunkWriter) runEnds() error {
	var orders []int64
	for _, r := range cw.runs {
		if r.n > 1 {
			orders = append(orders, r.first.Order, r.last.Order)
		}
	}
	if len(orders) == 0 {
		return nil
	}
	ends := make(map[int64]models.Operation, len(orders))
	for start := 0; start < len(orders); start += store.Batch {
		var ops []models.Operation
		if err := cw.tx.NewSelect().Model(&ops).Column("order", "command", "version_id").
			Where(`"order" IN (?)`, bun.List(orders[start:min(start+store.Batch, len(orders))])).Scan(cw.ctx); err != nil {
			return fmt.Errorf("read operations: %w", err)
		}
		for _, op := range ops {
			ends[op.Order] = op
		}
	}
	for i := range cw.runs {
		r := &cw.runs[i]
		if r.n == 1 {
			continue
		}
		f, okf := ends[r.first.Order]
		l, okl := ends[r.last.Order]
		if !okf || !okl {
			return fmt.Errorf("read operations: %s %s: operation %d or %d is gone", r.first.Table, r.first.RowID, r.first.Order, r.last.Order)
		}
		r.first.Command, r.first.VersionID = models.Command(strings.TrimSpace(string(f.Command))), f.VersionID
		r.last.Command, r.last.VersionID = models.Command(strings.TrimSpace(string(l.Command))), l.VersionID
	}
	return nil
}

func (cw *chunkWriter) flush() error {
	if err := cw.runEnds(); err != nil {
		return err
	}
	for _, r := range cw.runs {
		if op, ok := oplog.CompressRun(r.first, r.last, int(r.n)); ok && cw.scope.keep(op) {
			cw.pending = append(cw.pending, op)
		}
	}
	cw.runs = cw.runs[:0]
	if len(cw.pending) == 0 {
		return nil
	}
	if err := cw.emitOps(cw.pending); err != nil {
		return err
	}
	cw.pending = cw.pending[:0:0]
	return nil
}

// emitOps emits ops in chunk lines with their rows and parents (lines).
func (cw *chunkWriter) emitOps(ops []protocol.Operation) error {
	return cw.lines(ops, func(line []protocol.Operation, b *payloadBuilder, _ int) error {
		cw.ops += int64(len(line))
		cw.rows += int64(b.n)
		return cw.emit(&protocol.Message{Type: protocol.MsgChunk, Operations: line, Payload: b.payload})
	})
}

// lineReader reads the rows of operations a line at a time (lines), for
// the chunks of a pull and its scope_in lines.
type lineReader struct {
	ctx    context.Context
	s      *Server
	tx     bun.IDB
	wanted map[string]map[string]bool // parents to send; nil: all
	ahead  rowsAhead
	// read counts the rows read so far and their bytes: readAhead sizes
	// its windows by them.
	read struct{ rows, bytes int }
}

func (s *Server) newLineReader(ctx context.Context, tx bun.IDB, wanted map[string]map[string]bool) *lineReader {
	return &lineReader{ctx: ctx, s: s, tx: tx, wanted: wanted, ahead: rowsAhead{rows: map[rowKey]aheadRow{}, gone: map[rowKey]bool{}}}
}

// lines hands ops, in their order, to line in lines with their rows, the
// rows of a line within the server's line budget (a row larger alone is a
// line of its own): chunks and pages are bounded in operations, not bytes,
// and a table of large rows (a picture each) would else make lines too
// long for any client. Each line's payload holds its rows (the first
// nrows, in the order of its operations) and their parents (lineFor).
// Rows are read ahead of their line a window at a time (readAhead), and no
// more once the budget is reached: the memory held is about the budget
// and a row or two, not chunk size times row size, and each row is read
// once.
func (lr *lineReader) lines(ops []protocol.Operation, line func(ops []protocol.Operation, b *payloadBuilder, nrows int) error) error {
	ahead := &lr.ahead
	for len(ops) > 0 {
		n, size := 0, 0
		for n < len(ops) {
			op := ops[n]
			if op.Command == models.Delete {
				n++
				continue
			}
			k := ahead.key(lr.s.reg.Table(op.Table), op)
			r, ok := ahead.rows[k]
			if !ok && !ahead.gone[k] {
				if n > 0 && ahead.bytes >= lr.s.lineBudget {
					break // the line so far, before reading more
				}
				if err := lr.readAhead(ops[n:]); err != nil {
					return err
				}
				continue
			}
			if !lr.s.fits(size, len(r.raw)) {
				break
			}
			size += len(r.raw)
			n++
		}
		b, n, nrows, err := lr.lineFor(ops[:n])
		if err != nil {
			return err
		}
		if err := line(ops[:n], b, nrows); err != nil {
			return err
		}
		for _, op := range ops[:n] {
			if op.Command != models.Delete {
				ahead.drop(ahead.key(lr.s.reg.Table(op.Table), op))
			}
		}
		ops = ops[n:]
	}
	return nil
}

// lineFor builds the payload of a line of ops, whose rows ahead holds:
// those rows and the parents they reference, within the line budget
// (fitLine); it returns the payload, how many of ops the line holds and
// how many of its rows are theirs.
func (lr *lineReader) lineFor(ops []protocol.Operation) (*payloadBuilder, int, int, error) {
	ahead := &lr.ahead
	nrows := 0
	b, n, err := lr.s.fitLine(lr.ctx, lr.tx, lr.wanted, len(ops), func(b *payloadBuilder, n int) int {
		for _, op := range ops[:n] {
			if op.Command == models.Delete {
				continue
			}
			r, ok := ahead.rows[ahead.key(lr.s.reg.Table(op.Table), op)]
			if !ok {
				continue // gone from the snapshot's table
			}
			b.add(r.t, r.key, r.raw)
			b.refKeys(r.parents)
		}
		nrows = b.n
		return 0
	})
	return b, n, nrows, err
}

// fitLine builds the payload of a line of n items (a chunk's operations,
// a backfill line's rows), whose rows the server holds, with the parents
// they reference (loadParents): fill puts in b what the payload carries of
// the first n items' rows and records their parents, and returns the
// bytes of their rows the line carries outside the payload. When the
// parents take the line past the line budget, the line keeps the first
// half of its items (their rows still held, the parents read again), and
// so on down to one item, whose parents may take it past the budget, up
// to twice the budget (protocol.MaxLineBytes, the longest line a client
// reads, unless a test set the budget): one whose row and parents pass
// that is refused with dbsync.ErrTooLarge once they do, not read whole
// (the parents the node deleted, up their chains, may be any number of
// rows). It returns the payload and how many items the line keeps.
func (s *Server) fitLine(ctx context.Context, tx bun.IDB, wanted map[string]map[string]bool, n int, fill func(b *payloadBuilder, n int) int) (*payloadBuilder, int, error) {
	maxLine := 2 * s.lineBudget
	for {
		b := s.newPayload(wanted)
		outside := fill(b, n)
		// At least 1: rows that fill the bound leave no room.
		if n > 1 {
			b.limit = max(1, s.lineBudget-outside)
		} else {
			b.limit = max(1, maxLine-outside)
		}
		rows := b.bytes
		err := b.loadParents(ctx, tx)
		if errors.Is(err, errOverBudget) {
			s.dropped(b.bytes - rows)
			if n <= 1 {
				return nil, 0, fmt.Errorf("%w: a row with the rows it references passes %d bytes, the longest line a client reads (protocol.MaxLineBytes): a row too large to send",
					dbsync.ErrTooLarge, maxLine)
			}
			n /= 2
			continue
		}
		return b, n, err
	}
}

// errOverBudget stops a read that took the rows held past the line budget.
var errOverBudget = errors.New("server: line budget passed")

// rowsAhead holds the rows of a chunk's operations read before their line
// is emitted (readAhead), and the keys read and not found.
type rowsAhead struct {
	rows  map[rowKey]aheadRow
	gone  map[rowKey]bool
	bytes int // of rows
}

type rowKey struct{ table, key string }

type aheadRow struct {
	t       *dbsync.Table
	key     string
	raw     json.RawMessage
	parents []rowKey // parentsOf
}

// key is the row of op (a row of t), its key in canonical form, as the
// rows read have it.
func (a *rowsAhead) key(t *dbsync.Table, op protocol.Operation) rowKey {
	if k, err := t.CanonicalKey(op.RowID); err == nil {
		return rowKey{op.Table, k}
	}
	return rowKey{op.Table, op.RowID}
}

func (a *rowsAhead) drop(k rowKey) {
	a.bytes -= len(a.rows[k].raw)
	delete(a.rows, k)
	delete(a.gone, k)
}

// firstWindow is how many rows a pull reads ahead before it knows their
// size.
const firstWindow = 16

// readAhead reads into lr.ahead the rows of the first operations of ops
// that it lacks, the first of ops among them: as many as the line budget
// left is expected to hold (from the rows read so far), or one
// when it is spent. It stops as soon as ahead holds more than the budget;
// the rows read stay for the next lines, so that none is read twice. (The
// rest of a query stopped so is still sent by PostgreSQL and skipped by
// the driver: the windows are sized so that this is rare.)
func (lr *lineReader) readAhead(ops []protocol.Operation) error {
	ahead := &lr.ahead
	want := 1
	if left := lr.s.lineBudget - ahead.bytes; left > 0 {
		want = firstWindow
		if lr.read.rows > 0 {
			want = max(1, lr.s.rowsFitting(ahead.bytes, lr.read.rows, lr.read.bytes))
		}
	}
	keys := map[string][]string{}
	for _, op := range ops {
		if want == 0 {
			break
		}
		k := ahead.key(lr.s.reg.Table(op.Table), op)
		if _, ok := ahead.rows[k]; ok || op.Command == models.Delete || ahead.gone[k] {
			continue
		}
		keys[op.Table] = append(keys[op.Table], k.key)
		want--
	}
	for _, t := range lr.s.reg.Tables() {
		asked := keys[t.Name]
		if len(asked) == 0 {
			continue
		}
		err := store.Load(lr.ctx, lr.tx, t, asked, func(strct reflect.Value) error {
			raw, err := lr.s.encodeRow(t, strct)
			if err != nil {
				return err
			}
			key := t.Codec().KeyOf(strct)
			ahead.rows[rowKey{t.Name, key}] = aheadRow{t: t, key: key, raw: raw, parents: lr.s.parentsOf(t, t.ForeignKeys, strct)}
			ahead.bytes += len(raw)
			lr.read.rows++
			lr.read.bytes += len(raw)
			if ahead.bytes > lr.s.lineBudget {
				return errOverBudget
			}
			return nil
		})
		if errors.Is(err, errOverBudget) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, k := range asked {
			if _, ok := ahead.rows[rowKey{t.Name, k}]; !ok {
				ahead.gone[rowKey{t.Name, k}] = true
			}
		}
	}
	return nil
}

// rowsFitting is how many rows, of the average size of the read rows
// (bytes over read, read > 0), the line budget holds beyond held bytes:
// what a read of rows for an answer line asks for next.
func (s *Server) rowsFitting(held, read, bytes int) int {
	return (s.lineBudget - held) / max(1, bytes/read)
}

// encodeRow is a row of t read for an answer, in its wire form.
func (s *Server) encodeRow(t *dbsync.Table, strct reflect.Value) (json.RawMessage, error) {
	raw, err := t.Codec().AppendRow(nil, strct)
	if err != nil {
		return nil, err
	}
	if s.rowsHeld != nil {
		s.rowsHeld(len(raw))
	}
	return raw, nil
}

// dropped notes rows of an answer, of n bytes, read (encodeRow) and let go
// without being sent.
func (s *Server) dropped(n int) {
	if s.rowsHeld != nil {
		s.rowsHeld(-n)
	}
}

// payloadBuilder gathers a payload: rows, each once, and the parents they
// reference, loaded at the end (loadParents).
type payloadBuilder struct {
	s       *Server
	wanted  map[string]map[string]bool // parents to send; nil: all
	payload protocol.Payload
	have    map[string]map[string]bool
	parents map[string]map[string]bool
	n       int // rows
	bytes   int // of rows
	// limit, when not 0, fails a put that takes bytes past it
	// (errOverBudget).
	limit int
}

func (s *Server) newPayload(wanted map[string]map[string]bool) *payloadBuilder {
	return &payloadBuilder{s: s, wanted: wanted, payload: protocol.Payload{}, have: map[string]map[string]bool{}, parents: map[string]map[string]bool{}}
}

// put adds a row to the payload once; it reports whether it was new.
func (b *payloadBuilder) put(t *dbsync.Table, strct reflect.Value) (bool, error) {
	key := t.Codec().KeyOf(strct)
	if b.have[t.Name][key] {
		return false, nil
	}
	raw, err := b.s.encodeRow(t, strct)
	if err != nil {
		return false, err
	}
	b.add(t, key, raw)
	if b.limit > 0 && b.bytes > b.limit {
		return true, errOverBudget
	}
	return true, nil
}

// add adds the row of t with key, in its wire form, to the payload.
func (b *payloadBuilder) add(t *dbsync.Table, key string, raw json.RawMessage) {
	if b.have[t.Name] == nil {
		b.have[t.Name] = map[string]bool{}
	}
	b.have[t.Name][key] = true
	b.payload[t.Name] = append(b.payload[t.Name], raw)
	b.n++
	b.bytes += len(raw)
}

// refs records the parents a row of t references through fks (pulled
// tables only; those wanted names when it is not nil).
func (b *payloadBuilder) refs(t *dbsync.Table, fks []protocol.ForeignKey, strct reflect.Value) {
	b.refKeys(b.s.parentsOf(t, fks, strct))
}

// refKeys records parents (parentsOf), those wanted names when it is not
// nil.
func (b *payloadBuilder) refKeys(parents []rowKey) {
	for _, p := range parents {
		if b.wanted != nil && !b.wanted[p.table][p.key] {
			continue
		}
		if b.parents[p.table] == nil {
			b.parents[p.table] = map[string]bool{}
		}
		b.parents[p.table][p.key] = true
	}
}

// parentsOf returns the rows of pulled tables a row of t references
// through fks.
func (s *Server) parentsOf(t *dbsync.Table, fks []protocol.ForeignKey, strct reflect.Value) []rowKey {
	var out []rowKey
	for _, fk := range fks {
		ref := s.reg.Table(fk.RefTable)
		if ref == nil || !ref.Direction.Pulled() {
			continue
		}
		if pk := t.Column(fk.Column).KeyOf(strct); pk != "" {
			out = append(out, rowKey{ref.Name, pk})
		}
	}
	return out
}

// loadParents adds the parents refs recorded that the payload lacks, and
// when wanted is not nil the parents of those that it names, up the
// chains of references (the node deleted a row and, by a cascade, its
// parent: merge.md D2 brings both back).
func (b *payloadBuilder) loadParents(ctx context.Context, tx bun.IDB) error {
	for {
		added := false
		for _, t := range b.s.reg.Tables() {
			var missing []string
			for k := range b.parents[t.Name] {
				if !b.have[t.Name][k] {
					missing = append(missing, k)
				}
			}
			if len(missing) == 0 {
				continue
			}
			if err := store.Load(ctx, tx, t, missing, func(strct reflect.Value) error {
				if _, err := b.put(t, strct); err != nil {
					return err
				}
				if b.wanted != nil {
					b.refs(t, t.ForeignKeys, strct)
				}
				added = true
				return nil
			}); err != nil {
				return err
			}
			// A row missing on the server is not asked for again.
			for _, k := range missing {
				if !b.have[t.Name][k] {
					delete(b.parents[t.Name], k)
				}
			}
		}
		if !added {
			return nil
		}
	}
}

// wantedParents indexes PullRequest.Deleted; nil stays nil (all parents).
func wantedParents(deleted map[string][]string) map[string]map[string]bool {
	if deleted == nil {
		return nil
	}
	out := make(map[string]map[string]bool, len(deleted))
	for table, keys := range deleted {
		m := make(map[string]bool, len(keys))
		for _, k := range keys {
			m[k] = true
		}
		out[table] = m
	}
	return out
}

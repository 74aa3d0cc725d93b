package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// The log's lifecycle (docs/protocol.md, "Log lifecycle").
//
// Every pull and push names the version its node holds (its base); the
// server records it with the time (sync_node_activity) once the request
// passes its first checks (noteHeld; a base below the log floor, refused
// reset_required, is not recorded), a repair the latest version as it
// starts (noteRepaired: the node holds it once it applies the answer, so
// a node that resets is not left behind again before its next pull; read
// and recorded under the version lock, so no trim passes it between), and
// every other request it serves refreshes the time (noteSeen first in
// Watch, Query and the chunked push's staging and status). Pull and push
// do not note the time first: that would cost a second write, and would
// refresh this process's record of the node, so that a higher held
// version it should write at once (the record being old, its held version
// possibly out of date) would wait to be written lazily
// (TestTrimLazyHeld). A node seen within
// Config.NodeHorizon is live and holds the log back at the version it last
// named, unless that version is below the floor (it can only reset:
// behind); an older one is retired. Trim raises the log floor
// (sync_log_floor) to the lowest version a live node holds, under the
// version lock, then deletes, in batches of Config.TrimBatch rows each in
// its own short transaction, the operations, push ids and version rows at
// or below the floor (the latest version's row stays: it is the server's
// version), and the versions' tokens below it (the floor's stays: a node
// holding the floor's version names it by it, identity.go).
//
// Authentication (Prechecked.Verify) does not refresh the time, since it
// comes before the view of the node's schema is built (ForSchema). A node
// whose schema the server refuses (dbsync.ErrSchemaMismatch: a release the
// server no longer serves) calls on without ever pulling, and if it were
// kept live it would hold the floor at the version it last named for
// every node, so the log would grow without bound. Refused, it is retired
// past the horizon like a silent node; once upgraded, it is answered
// dbsync.ErrResetRequired and resets.
//
// Why nothing sees a partial trim: the floor commits before the first
// delete, and a pull compares its base with the floor in the snapshot it
// reads the log from. A snapshot taken before the floor rose sees every
// row; one taken after sees the new floor, and a base below it is
// answered dbsync.ErrResetRequired without reading the log. A pull at or
// above the floor reads only versions above it, which no trim touches. A
// push compares its base with the floor under the version lock, which the
// floor is raised under too, before it reads the log after its base for
// the rebase check (rebase.go); precheck's reading without the lock may
// meet a trim in progress, but a base it read below the floor is refused
// under the lock anyway.

// TrimResult describes a Trim.
type TrimResult struct {
	// Floor is the log floor after the trim: pulls and pushes based on an
	// older version are answered dbsync.ErrResetRequired. PreviousFloor is
	// the floor before it.
	Floor, PreviousFloor int64
	// Operations, Versions and Pushes count the rows deleted from
	// sync_operations, sync_versions and sync_pushes (each node's latest
	// push is kept, for a node that lost its answer).
	Operations, Versions, Pushes int64
	// LiveNodes counts the nodes seen within Config.NodeHorizon that named
	// the version they hold, at or above the floor before the trim;
	// RetiredNodes those seen before it, which no longer hold the trim
	// back. BehindNodes counts the nodes seen within the horizon whose
	// version is below the floor before the trim: they can only reset
	// (which records the version they get), and do not hold it back
	// either.
	LiveNodes, RetiredNodes, BehindNodes int
}

// Trim deletes the log below the lowest version every live node holds (see
// TrimResult and Config.NodeHorizon). It runs online: the floor is raised
// in one short transaction under the version lock, then the rows are
// deleted in batches of Config.TrimBatch, each in its own transaction,
// so pushes and pulls wait at most for one batch. A Trim cut short (ctx
// done, an error) leaves rows at or below the floor, which the next Trim
// deletes; nothing reads them. Trim also sweeps the chunks of pushes never
// committed past Config.StagedChunkTTL.
func (s *Server) Trim(ctx context.Context) (res TrimResult, err error) {
	start := time.Now()
	ev := dbsync.Event{Op: "trim"}
	defer func() {
		ev.Err, ev.VersionID, ev.Operations = err, res.Floor, res.Operations
		s.emit(ctx, ev, start)
	}()
	// The held versions this process saw and has not written yet: the
	// floor is computed from what every node holds (the others' processes
	// may have some unwritten too, which only keeps the floor lower).
	s.flushHeld(ctx)
	// Chunks of pushes never committed, past Config.StagedChunkTTL (also
	// swept when a push's first chunk arrives).
	s.sweepChunks(ctx, s.cfg.Now().UTC())
	keepVersion, err := s.raiseFloor(ctx, &res)
	if err != nil {
		return res, err
	}
	batches := []struct {
		n *int64
		q string
	}{
		{&res.Operations, `DELETE FROM sync_operations WHERE "order" IN (SELECT "order" FROM sync_operations WHERE version_id <= ? LIMIT ?)`},
		// Each node's latest applied push is kept: the node may have lost
		// its answer, and a reset asks about it (client.Client.Reset).
		{&res.Pushes, `DELETE FROM sync_pushes WHERE push_id IN (SELECT p.push_id FROM sync_pushes p WHERE p.version_id <= ?
  AND p.version_id < (SELECT MAX(q.version_id) FROM sync_pushes q WHERE q.node_id = p.node_id) LIMIT ?)`},
	}
	for _, b := range batches {
		if err := s.trimBatches(ctx, b.q, res.Floor, b.n); err != nil {
			return res, err
		}
	}
	if keepVersion > 0 {
		q := `DELETE FROM sync_versions WHERE version_id IN (SELECT version_id FROM sync_versions WHERE version_id < ? LIMIT ?)`
		if err := s.trimBatches(ctx, q, min(res.Floor+1, keepVersion), &res.Versions); err != nil {
			return res, err
		}
		// The floor's token stays: a node holding the floor's version
		// names it by its token (identity.go).
		var tokens int64
		q = `DELETE FROM sync_version_tokens WHERE version_id IN (SELECT version_id FROM sync_version_tokens WHERE version_id < ? LIMIT ?)`
		if err := s.trimBatches(ctx, q, min(res.Floor, keepVersion), &tokens); err != nil {
			return res, err
		}
	}
	s.log.InfoContext(ctx, "server: log trimmed", slog.Int64("floor", res.Floor), slog.Int64("previous_floor", res.PreviousFloor),
		slog.Int64("operations", res.Operations), slog.Int64("versions", res.Versions), slog.Int64("pushes", res.Pushes),
		slog.Int("live_nodes", res.LiveNodes), slog.Int("retired_nodes", res.RetiredNodes),
		slog.Int("behind_nodes", res.BehindNodes), slog.Duration("took", time.Since(start)))
	return res, nil
}

// raiseFloor sets the log floor, under the version lock, to the lowest
// version a live node holds (the latest version when no node is live),
// never lowering it. A node seen within the horizon whose version is
// below the floor is not live: every pull and push of it is answered
// reset_required, so holding the floor for it would keep nothing for it,
// and while it went on calling without resetting (a reset that fails, an
// application that only pushes in chunks, watches or queries) the floor
// would stay where it is for every node. It returns the latest version,
// whose row the trim keeps.
func (s *Server) raiseFloor(ctx context.Context, res *TrimResult) (latest int64, err error) {
	cutoff := s.cfg.Now().Add(-s.cfg.NodeHorizon).UTC()
	err = dialect.ApplyTx(ctx, s.db, func(ctx context.Context, tx bun.Tx) error {
		if err := dialect.LockVersions(ctx, tx); err != nil {
			return fmt.Errorf("lock versions: %w", err)
		}
		var top, floor, lowest *int64
		var live, retired, behind int
		err := tx.NewRaw(`WITH f AS (SELECT COALESCE((SELECT version_id FROM sync_log_floor WHERE id = 1), 0) AS v),
a AS (SELECT a.held_version, a.last_seen FROM sync_node_activity a JOIN sync_nodes n ON n.node_id = a.node_id)
SELECT (SELECT MAX(version_id) FROM sync_versions), (SELECT version_id FROM sync_log_floor WHERE id = 1),
(SELECT MIN(a.held_version) FROM a, f WHERE a.last_seen >= ? AND a.held_version >= f.v),
(SELECT COUNT(*) FROM a, f WHERE a.last_seen >= ? AND a.held_version >= f.v),
(SELECT COUNT(*) FROM a WHERE a.last_seen < ?),
(SELECT COUNT(*) FROM a, f WHERE a.last_seen >= ? AND a.held_version < f.v)`, cutoff, cutoff, cutoff, cutoff).
			Scan(ctx, &top, &floor, &lowest, &live, &retired, &behind)
		if err != nil {
			return fmt.Errorf("read the log floor: %w", err)
		}
		res.LiveNodes, res.RetiredNodes, res.BehindNodes = live, retired, behind
		if top != nil {
			latest = *top
		}
		if floor != nil {
			res.PreviousFloor = *floor
		}
		target := latest
		if lowest != nil {
			target = min(target, *lowest)
		}
		res.Floor = max(res.PreviousFloor, target)
		if res.Floor == res.PreviousFloor {
			return nil
		}
		_, err = tx.NewRaw(`INSERT INTO sync_log_floor (id, version_id) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET version_id = EXCLUDED.version_id`, res.Floor).
			Exec(ctx)
		if err != nil {
			return fmt.Errorf("raise the log floor: %w", err)
		}
		return nil
	})
	return latest, err
}

// trimBatches runs a batched delete (q takes the bound and the batch size)
// until it deletes less than a batch, adding the rows deleted to n.
func (s *Server) trimBatches(ctx context.Context, q string, bound int64, n *int64) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		r, err := s.db.ExecContext(ctx, q, bound, s.cfg.TrimBatch)
		if err != nil {
			return fmt.Errorf("trim the log: %w", err)
		}
		k, err := r.RowsAffected()
		if err != nil {
			return fmt.Errorf("trim the log: %w", err)
		}
		*n += k
		if k < int64(s.cfg.TrimBatch) {
			return nil
		}
	}
}

// logFloor reads the log floor (0: nothing trimmed).
func logFloor(ctx context.Context, db bun.IDB) (int64, error) {
	var floor []int64
	if err := db.NewRaw("SELECT version_id FROM sync_log_floor WHERE id = 1").Scan(ctx, &floor); err != nil {
		return 0, fmt.Errorf("read the log floor: %w", err)
	}
	if len(floor) == 0 {
		return 0, nil
	}
	return floor[0], nil
}

// resetRequired is the answer to a node based on a version below the
// floor.
func resetRequired(base, floor int64) error {
	return fmt.Errorf("%w: the node holds version %d, and the server keeps the log only after version %d; reset the node",
		dbsync.ErrResetRequired, base, floor)
}

// checkFloor refuses a base below the log floor as db sees it.
func checkFloor(ctx context.Context, db bun.IDB, base int64) error {
	floor, err := logFloor(ctx, db)
	if err != nil {
		return err
	}
	if base < floor {
		return resetRequired(base, floor)
	}
	return nil
}

// activity remembers, per node, what this process last recorded of it in
// sync_node_activity, so that a request writes there only when something
// changed or the time recorded is getting old.
//
// A held version higher than the one recorded is not written at once
// but kept in pending, and written with the others there at most every
// heldFlushEvery (flushHeld), before Trim computes the floor, and on
// Close: a node woken by the change feed pulls on every version, and a
// held version recorded too low only holds the trim back. A lower one
// (or one with the node's last-seen time getting old) is written at
// once, and a pending one that another request of the node has
// superseded in the database (a last-seen time this process did not
// write) is not written: the floor is never computed from a version
// higher than the node holds.
type activity struct {
	mu      sync.Mutex
	nodes   map[int64]seen
	pending map[int64]pendingHeld // held versions not written yet
	flushed time.Time             // when pending was last written
}

// heldFlushEvery is how long a held version may wait in activity.pending.
const heldFlushEvery = time.Second

type seen struct {
	at   time.Time
	held int64 // -1: not recorded
}

// pendingHeld is a held version not written yet, with when it was seen,
// and base: what this process had recorded of the node then, which the
// node's row must still hold for the version to be written over it.
type pendingHeld struct {
	seen
	base seen
}

// touchEvery is how stale a node's recorded last-seen time may get before
// a request refreshes it: a small part of the horizon, at most a minute.
func (s *Server) touchEvery() time.Duration {
	return min(time.Minute, s.cfg.NodeHorizon/100)
}

// noteSeen records that node made a request the server serves (signed,
// with a schema the server serves) now.
func (s *Server) noteSeen(ctx context.Context, node int64) {
	s.note(ctx, node, -1)
}

// noteHeld records that node holds version held (the base of its pull or
// push) and was seen now.
func (s *Server) noteHeld(ctx context.Context, node, held int64) {
	now := s.cfg.Now().UTC()
	s.act.mu.Lock()
	last, ok := s.act.nodes[node]
	if ok && last.held >= 0 && held > last.held && now.Sub(last.at) < s.touchEvery() {
		if s.act.pending == nil {
			s.act.pending = map[int64]pendingHeld{}
		}
		s.act.pending[node] = pendingHeld{seen: seen{at: now, held: held}, base: last}
		if s.act.flushed.IsZero() {
			s.act.flushed = now
		}
		due := now.Sub(s.act.flushed) >= heldFlushEvery
		s.act.mu.Unlock()
		if due {
			s.flushHeld(ctx)
		}
		return
	}
	delete(s.act.pending, node) // superseded
	s.act.mu.Unlock()
	s.note(ctx, node, held)
}

// noteRepaired records, as node's held version, the latest version (GET
// repair: a repair, or a reset, sends the server's rows at that version
// or later), written at once: once the node applies the
// rows it holds that version, though its latest pull or push named an
// older one, or none (a new node). A node that does not apply them holds
// the version it held before; it repairs or resets again.
//
// The version is read and recorded in one transaction under the version
// lock, which Trim raises the floor under (raiseFloor): a trim either
// commits first, and the version read is at or above its floor (the
// floor never passes the latest version), or it comes after and sees
// the record. Read and recorded apart, a trim committing between them
// could raise the floor past the version read, while the node's old
// record (or none) held nothing back; the node, left behind from the
// start, would be answered reset_required at its next pull. A failure
// is logged, as note's.
func (s *Server) noteRepaired(ctx context.Context, node int64) {
	s.act.mu.Lock()
	delete(s.act.pending, node) // lower: the node's row is written over
	s.act.mu.Unlock()
	now := s.cfg.Now().UTC()
	var held int64
	err := dialect.ApplyTx(ctx, s.db, func(ctx context.Context, tx bun.Tx) error {
		if err := dialect.LockVersions(ctx, tx); err != nil {
			return fmt.Errorf("lock versions: %w", err)
		}
		var err error
		if held, err = latestVersion(ctx, tx); err != nil {
			return err
		}
		return writeActivity(ctx, tx, node, now, held)
	})
	if err != nil {
		s.log.WarnContext(ctx, "server: recording a node's activity failed", slog.Int64("node", node), slog.String("error", err.Error()))
		return
	}
	s.remember(node, now, held)
}

// flushHeld writes the pending held versions (activity), in one
// statement. A node's row is written only while it still holds what this
// process had recorded of the node when the version was queued (its
// last-seen time and held version): otherwise another request wrote the
// node's row since, and it is kept, as its version may be lower than the
// pending one. Times alone cannot tell which is newer: both may be seen
// at the same instant, and the processes' clocks differ. A failure is
// logged: the versions recorded stay lower than the nodes hold, which
// only holds the trim back.
func (s *Server) flushHeld(ctx context.Context) {
	s.act.mu.Lock()
	batch := s.act.pending
	s.act.pending, s.act.flushed = nil, s.cfg.Now().UTC()
	s.act.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	ts := "?"
	if dialect.MustOf(s.db) == dialect.Postgres {
		ts = "CAST(? AS TIMESTAMPTZ)" // VALUES would type a literal text
	}
	var values strings.Builder
	args := make([]any, 0, 5*len(batch))
	for node, p := range batch {
		if len(args) > 0 {
			values.WriteString(", ")
		}
		values.WriteString("(?, " + ts + ", ?, " + ts + ", ?)")
		args = append(args, node, p.at, p.held, p.base.at, p.base.held)
	}
	q := `UPDATE sync_node_activity SET held_version = v.column3, last_seen = v.column2
FROM (VALUES ` + values.String() + `) AS v
WHERE sync_node_activity.node_id = v.column1 AND sync_node_activity.last_seen = v.column4 AND sync_node_activity.held_version = v.column5
RETURNING sync_node_activity.node_id`
	var written []int64
	if err := s.db.NewRaw(q, args...).Scan(ctx, &written); err != nil && !errors.Is(err, sql.ErrNoRows) {
		s.log.WarnContext(ctx, "server: recording the nodes' held versions failed", slog.Int("nodes", len(batch)), slog.String("error", err.Error()))
		return
	}
	s.act.mu.Lock()
	defer s.act.mu.Unlock()
	for _, node := range written {
		p := batch[node]
		if cur, ok := s.act.nodes[node]; !ok || !cur.at.After(p.at) {
			s.act.nodes[node] = p.seen
		}
		delete(batch, node)
	}
	// Rows written by another process since: what this process recorded
	// of those nodes is out of date, so their next request writes at once.
	for node, p := range batch {
		if cur, ok := s.act.nodes[node]; ok && !cur.at.After(p.at) {
			delete(s.act.nodes, node)
		}
	}
}

// note writes the node's activity when this process has not recorded it
// within touchEvery, or held (-1: unknown) differs from what it recorded.
// A failure is logged, not returned: the request goes on, and the node
// merely risks a reset it could have been spared.
func (s *Server) note(ctx context.Context, node, held int64) {
	now := s.cfg.Now().UTC()
	s.act.mu.Lock()
	last, ok := s.act.nodes[node]
	fresh := ok && now.Sub(last.at) < s.touchEvery() && (held < 0 || held == last.held)
	s.act.mu.Unlock()
	if fresh {
		return
	}
	if err := writeActivity(ctx, s.db, node, now, held); err != nil {
		s.log.WarnContext(ctx, "server: recording a node's activity failed", slog.Int64("node", node), slog.String("error", err.Error()))
		return
	}
	s.remember(node, now, held)
}

// writeActivity writes that node was seen at now holding held (-1:
// unknown, the held version recorded is kept).
func writeActivity(ctx context.Context, db bun.IDB, node int64, now time.Time, held int64) error {
	q := `INSERT INTO sync_node_activity (node_id, last_seen, held_version) VALUES (?, ?, ?)
ON CONFLICT (node_id) DO UPDATE SET last_seen = EXCLUDED.last_seen`
	var heldArg any
	if held >= 0 {
		q += ", held_version = EXCLUDED.held_version"
		heldArg = held
	}
	_, err := db.NewRaw(q, node, now, heldArg).Exec(ctx)
	return err
}

// remember keeps what was written of node's activity (writeActivity) in
// this process's record of it.
func (s *Server) remember(node int64, now time.Time, held int64) {
	s.act.mu.Lock()
	defer s.act.mu.Unlock()
	if s.act.nodes == nil {
		s.act.nodes = map[int64]seen{}
	}
	rec := seen{at: now, held: held}
	if last, ok := s.act.nodes[node]; held < 0 && ok {
		rec.held = last.held
	}
	s.act.nodes[node] = rec
}

// trimmer runs Trim every Config.TrimEvery until Close.
type trimmer struct {
	stop context.CancelFunc
	done chan struct{}
}

// startTrimmer starts the periodic trim when Config.TrimEvery is set.
func (s *Server) startTrimmer() {
	if s.cfg.TrimEvery <= 0 {
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	s.trim = &trimmer{stop: stop, done: make(chan struct{})}
	go func() {
		defer close(s.trim.done)
		t := time.NewTicker(s.cfg.TrimEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if _, err := s.Trim(ctx); err != nil && ctx.Err() == nil {
				s.log.WarnContext(ctx, "server: periodic trim failed", slog.String("error", err.Error()))
			}
		}
	}()
}

// stopTrimmer stops the periodic trim and waits for it.
func (s *Server) stopTrimmer() {
	if s.trim == nil {
		return
	}
	s.trim.stop()
	<-s.trim.done
}

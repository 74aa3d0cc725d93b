package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
	"github.com/go-dbsync/dbsync/protocol"
)

// PushResult describes a push.
type PushResult struct {
	// VersionID is the server version that now holds the node's changes.
	VersionID int64
	// Operations is the number of operations sent. Operations on a table
	// the node no longer tracks (a release dropped its model) leave the
	// log with the push unsent, and are not counted.
	Operations int
	// Empty is true when there was nothing to push (no request was sent,
	// or the pending operations were all on tables the node no longer
	// tracks: none was sent, and they left the log).
	Empty bool
	// Duplicate is true when the push had been applied already: its first
	// answer was lost, and this was a retry.
	Duplicate bool
	// Bytes is the size of the request body (of all its chunks, for a
	// push sent in chunks).
	Bytes int
	// Rebased is true when the server applied the push on top of versions
	// the node does not hold yet (docs/protocol.md, "Rebase"): the node's
	// version ([Client.Version]) stays below them until a pull brings
	// them, and Sync pulls once.
	Rebased bool
}

// String summarizes the push on one line, e.g. "pushed 2 operation(s) as
// version 4", or "nothing to push".
func (r *PushResult) String() string {
	if r.Empty {
		return "nothing to push"
	}
	s := fmt.Sprintf("pushed %d operation(s) as version %d", r.Operations, r.VersionID)
	if r.Rebased {
		s += " (rebased on versions not pulled yet)"
	}
	if r.Duplicate {
		s += " (a resend: applied once)"
	}
	return s
}

// Push sends the node's pending operations, with the current state of the
// rows they touch, as one new server version.
//
// The push is based on the node's version ([Client.Version]). The server
// applies it on top of versions the node has not pulled when none of them
// changed its rows (Rebased; pull to hold them). It fails with an error
// wrapping dbsync.ErrPullNeeded when another node changed one of its rows
// since, or the server refuses every push that is behind
// (server.Config.FastForwardOnly): pull, then push again (Sync does this),
// or when a row of an unanswered push was deleted since (the pull settles
// that push), dbsync.ErrRepairNeeded when the server lost versions the node
// holds, *dbsync.UniqueConstraintError when the node's unique values
// collide with the server's, and *dbsync.ValueError when a local row holds
// a value that cannot be sent, such as text that is not valid UTF-8 (the
// application rewrites or deletes the row it names, then pushes again;
// nothing is sent until then). After a network error (dbsync.ErrNetwork)
// the outcome is unknown: the next Push resends exactly the same operations
// with the same push id, and the server applies them at most once. When
// the node's schema gained columns or tables since its latest pull, Push
// pulls their backfill first (merge.md E3).
func (c *Client) Push(ctx context.Context) (*PushResult, error) {
	if err := c.lock(ctx); err != nil {
		return nil, err
	}
	defer c.mu.unlock()
	if _, err := c.backfillFirst(ctx); err != nil {
		return nil, err
	}
	return c.push(ctx)
}

func (c *Client) push(ctx context.Context) (res *PushResult, err error) {
	start := time.Now()
	ev := dbsync.Event{Op: "push"}
	defer func() {
		ev.Err = err
		if res != nil {
			ev.VersionID, ev.Operations, ev.Bytes = res.VersionID, int64(res.Operations), int64(res.Bytes)
		}
		if res == nil || !res.Empty {
			c.emit(ctx, ev, start)
		}
	}()
	node, err := c.node(ctx, c.db)
	if err != nil {
		return nil, err
	}
	ev.NodeID = node.NodeID
	if err := c.giveUpUnpushed(ctx); err != nil {
		return nil, fmt.Errorf("client: push: %w", err)
	}
	if err := c.ensureCapture(ctx); err != nil {
		return nil, fmt.Errorf("client: push: %w", err)
	}
	canChunk := c.tr.chunked != nil // the transport carries chunked pushes
	var attempt models.PushAttempt
	var resumed bool // the attempt was sent before
	var count int    // operations of the attempt
	var sent int     // of those, the ones sent (c.tracked), unless in chunks
	var body []byte  // nil: the push goes in chunks
	err = c.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := c.owned(ctx, tx); err != nil {
			return err
		}
		// The attempt covers the operations up to the greatest it reads
		// (MaxOrder, pushed deletes them): none may commit later with a
		// lower number (PostgreSQL numbers them as they are written).
		if err := dialect.LockLog(ctx, tx, c.logLockWait); err != nil {
			return logBusy(err)
		}
		var ops []models.Operation
		var loaded map[string]map[string]json.RawMessage // rows read by the compression
		err := tx.NewSelect().Model(&attempt).Limit(1).Scan(ctx)
		switch {
		case err == nil:
			// A push whose answer never came: resend exactly its operations.
			resumed = true
			if canChunk {
				if count, err = pendingCount(ctx, tx, &attempt.MaxOrder); err != nil || count > c.cfg.PushChunkOperations {
					return err // sent in chunks, read from the log a chunk at a time
				}
			}
			ops, err = oplog.PendingUpTo(ctx, tx, attempt.MaxOrder)
			if err != nil {
				return err
			}
		case isNoRows(err):
			// Every pending entry, D1's head entries (negative orders)
			// included: they re-create parents the children need. A push
			// that goes in chunks reads its rows later, a chunk at a time.
			chunked := false
			if canChunk {
				n, err := pendingCount(ctx, tx, nil)
				if err != nil {
					return err
				}
				chunked = n > c.cfg.PushChunkOperations
			}
			var maxOrder int64
			if chunked {
				// The log is compressed a page of rows at a time.
				if count, maxOrder, err = oplog.CompressPaged(ctx, tx, c.reg, c.cfg.PushChunkOperations); err != nil {
					return err
				}
			} else {
				loaded = map[string]map[string]json.RawMessage{}
				ops, err = oplog.CompressRows(ctx, tx, c.reg, math.MinInt64, func(t *dbsync.Table, strct reflect.Value) error {
					raw, err := t.Codec().AppendRow(nil, strct)
					if err != nil {
						return err
					}
					if loaded[t.Name] == nil {
						loaded[t.Name] = map[string]json.RawMessage{}
					}
					loaded[t.Name][t.Codec().KeyOf(strct)] = raw
					return nil
				})
				if err != nil {
					return err
				}
				if count = len(ops); count > 0 {
					maxOrder = ops[count-1].Order
				}
			}
			if count == 0 {
				return nil
			}
			latest, err := latestVersion(ctx, tx)
			if err != nil {
				return err
			}
			attempt = models.PushAttempt{
				PushID:      uuid.NewString(),
				MaxOrder:    maxOrder,
				BaseVersion: versionPtr(latest),
				Created:     c.cfg.Now().UTC(),
			}
			if _, err := tx.NewInsert().Model(&attempt).Exec(ctx); err != nil {
				return fmt.Errorf("record push attempt: %w", err)
			}
			if chunked {
				return nil
			}
		default:
			return fmt.Errorf("read push attempt: %w", err)
		}
		if count = len(ops); count == 0 {
			return nil
		}
		sent = c.tracked(ops)
		body, err = c.pushBody(ctx, tx, &attempt, ops, loaded)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("client: push: %w", err)
	}
	if count == 0 {
		return &PushResult{Empty: true}, nil
	}
	// A push in chunks counts its operations as it builds them
	// (sendChunks); until then, those of the attempt.
	res = &PushResult{Operations: sent, Bytes: len(body)}
	if body == nil {
		res.Operations = count
	}
	c.progress(dbsync.Progress{Op: "push", Phase: "prepare", Operations: int64(res.Operations)})
	var out *protocol.PushResponse
	if body != nil && (!canChunk || len(body) <= c.cfg.PushChunkBytes) {
		c.progress(dbsync.Progress{Op: "push", Phase: "commit", Bytes: int64(len(body)), Operations: int64(res.Operations)})
		out, err = c.tr.Push(ctx, c.call(node), body)
	} else {
		out, err = c.pushChunked(ctx, c.tr, node, &attempt, resumed, res)
	}
	if err != nil {
		var uc *dbsync.UniqueConstraintError
		var se *dbsync.ScopeError
		var local *localError
		if !errors.As(err, &local) && (errors.As(err, &uc) || errors.As(err, &se) || errors.Is(err, dbsync.ErrPushRejected)) {
			// A definite refusal: the server looked the push id up and
			// did not apply the push (a retry with the same base would be
			// refused too; merge.md X1 says when a copy still in flight
			// can be applied after it). Other refusals (unauthorized,
			// schema mismatch, too large, …) come before that look-up and
			// say nothing about an earlier copy whose answer was lost: the
			// attempt stays, and a pull settles it.
			// A resend refused for anything but its base (repair_needed)
			// or its id (push_abandoned), pull_needed included (a
			// rebased push refused for its rows, staleRefusal): a copy
			// still on its way may be applied after the refusal (merge.md
			// X1), in a version of the node's own it never settles
			// (dropAttempt forgets the node's own version).
			unsure := resumed && !errors.Is(err, dbsync.ErrRepairNeeded) && !errors.Is(err, dbsync.ErrPushAbandoned)
			if derr := c.dropAttempt(ctx, attempt.PushID, unsure); derr != nil {
				return nil, errors.Join(err, derr)
			}
		}
		if se != nil && local == nil {
			// Say who refused what: the same rows are named by a pull
			// refusing to drop changes to rows that left the scope.
			err = fmt.Errorf("client: the server refused the push: %w", err)
		}
		return nil, err
	}
	if out != nil && out.Empty {
		// The server applied nothing. That is the answer to a push of
		// operations on tables the node no longer tracks only (none
		// sent): they leave the log, unsent. A push that sent some was
		// not applied.
		if res.Operations != 0 {
			return nil, fmt.Errorf("%w: push %s of %d operation(s) answered empty", dbsync.ErrBadResponse, attempt.PushID, res.Operations)
		}
		err = c.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if err := c.owned(ctx, tx); err != nil {
				return err
			}
			_, err := settleAttempt(ctx, tx, &attempt)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("client: drop unsent operations: %w", err)
		}
		return &PushResult{Empty: true}, nil
	}
	if out == nil || out.NewVersionID <= 0 {
		return nil, fmt.Errorf("%w: push answered without a version", dbsync.ErrBadResponse)
	}
	err = c.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := c.owned(ctx, tx); err != nil {
			return err
		}
		res.Rebased, err = pushed(ctx, tx, node.NodeID, &attempt, out.NewVersionID, out.NewVersionToken, c.cfg.Now().UTC())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("client: record push: %w", err)
	}
	res.VersionID, res.Duplicate = out.NewVersionID, out.Duplicate
	c.progress(dbsync.Progress{Op: "push", Phase: "done", Bytes: int64(res.Bytes), Operations: int64(res.Operations)})
	c.log.InfoContext(ctx, "client: pushed", slog.Int64("version", out.NewVersionID), slog.Int("operations", res.Operations),
		slog.Bool("duplicate", out.Duplicate), slog.Bool("rebased", res.Rebased))
	return res, nil
}

// pendingCount counts the pending operations, those of order at most
// *maxOrder when it is not nil.
func pendingCount(ctx context.Context, db bun.IDB, maxOrder *int64) (int, error) {
	q := db.NewSelect().Model((*models.Operation)(nil)).Where("version_id IS NULL")
	if maxOrder != nil {
		q = q.Where(`"order" <= ?`, *maxOrder)
	}
	n, err := q.Count(ctx)
	if err != nil {
		return 0, fmt.Errorf("count pending operations: %w", err)
	}
	return int(n), nil
}

// localError is a failure of the node itself during a push, before or
// between requests: the server refused nothing.
type localError struct{ err error }

func (e *localError) Error() string { return "client: push: " + e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// pushChunked sends an attempt as a chunked push: its operations a page at
// a time from the log, each page with its rows as one chunk within
// Config.PushChunkOperations and PushChunkBytes, then the commit. A
// resumed attempt first asks which chunks the server holds and sends only
// the others (a chunk whose rows changed since is sent again, replacing
// the server's copy). A commit refused as incomplete (chunks swept or
// replaced meanwhile) is retried once the same way.
func (c *Client) pushChunked(ctx context.Context, tr ChunkedTransport, node *models.Node, attempt *models.PushAttempt, resumed bool, res *PushResult) (*protocol.PushResponse, error) {
	// The furthest upload reported, over the tries: a second try reports
	// only what goes past it, and its commit is not reported again.
	var mark uploadMark
	for try := 0; ; try++ {
		var held map[int]string
		if resumed || try > 0 {
			st, err := pushStatus(ctx, tr, c.call(node), attempt.PushID)
			if err != nil {
				return nil, err
			}
			if st.VersionID != nil {
				return &protocol.PushResponse{NewVersionID: *st.VersionID, NewVersionToken: st.VersionToken, Duplicate: true}, nil
			}
			held = make(map[int]string, len(st.Chunks))
			for _, ch := range st.Chunks {
				held[ch.Seq] = ch.Digest
			}
		}
		digests, err := c.sendChunks(ctx, tr, node, attempt, held, res, &mark)
		if err != nil {
			return nil, err
		}
		if try == 0 {
			c.progress(dbsync.Progress{Op: "push", Phase: "commit", Bytes: int64(res.Bytes), Operations: int64(res.Operations)})
		}
		token, err := baseToken(ctx, c.db, attempt.BaseVersion)
		if err != nil {
			return nil, err
		}
		own, err := ownVersion(ctx, c.db)
		if err != nil {
			return nil, err
		}
		out, err := tr.PushCommit(ctx, c.call(node), &protocol.PushCommit{
			PushID:             attempt.PushID,
			LatestVersionID:    attempt.BaseVersion,
			LatestVersionToken: token,
			OwnVersionID:       own,
			Chunks:             len(digests),
			Digest:             protocol.CommitDigest(digests),
		})
		if errors.Is(err, dbsync.ErrPushIncomplete) && try == 0 {
			c.log.WarnContext(ctx, "client: chunked push incomplete; resending", slog.String("error", err.Error()))
			continue
		}
		return out, err
	}
}

// sendChunks builds the chunks of an attempt from the log, a page at a
// time, and sends those held does not hold (by seq, with the same
// digest). It returns the digests of all the chunks, in order. The next
// chunk is built while the last one travels (buildChunks, one ahead):
// memory holds at most three chunks.
func (c *Client) sendChunks(ctx context.Context, tr ChunkedTransport, node *models.Node, attempt *models.PushAttempt, held map[int]string, res *PushResult, mark *uploadMark) ([]string, error) {
	ctx, cancel := context.WithCancel(ctx)
	built := make(chan builtChunk, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.buildChunks(ctx, attempt, built)
	}()
	defer func() {
		cancel()
		<-done // the builder's transaction ends before the push goes on
	}()
	var digests []string
	var ops int64 // operations of the chunks the server holds
	res.Bytes = 0
	for ch := range built {
		if ch.err != nil {
			return nil, &localError{ch.err}
		}
		digests = append(digests, ch.digest)
		res.Bytes += len(ch.body)
		ops += int64(ch.ops)
		if held[ch.seq] != ch.digest {
			r, err := tr.PushChunk(ctx, c.call(node), ch.body)
			if err != nil {
				return nil, err
			}
			if r.VersionID == nil && r.Digest != ch.digest {
				return nil, fmt.Errorf("%w: chunk %d staged with digest %s, sent %s", dbsync.ErrBadResponse, ch.seq, r.Digest, ch.digest)
			}
		}
		if b := int64(res.Bytes); b > mark.bytes {
			mark.bytes, mark.ops = b, ops
			c.progress(dbsync.Progress{Op: "push", Phase: "upload", Bytes: b, Operations: ops})
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.Operations = int(ops)
	return digests, nil
}

// pushStatus asks the server about push pushID (ChunkedTransport's
// PushStatus), refusing an answer about another push: taken for this
// one's, another push's version would drop its operations unsent.
func pushStatus(ctx context.Context, tr ChunkedTransport, call *Call, pushID string) (*protocol.PushChunkStatus, error) {
	st, err := tr.PushStatus(ctx, call, pushID)
	if err != nil {
		return nil, err
	}
	if st == nil || st.PushID != pushID {
		got := ""
		if st != nil {
			got = st.PushID
		}
		return nil, fmt.Errorf("%w: status of push %s answered for push %q", dbsync.ErrBadResponse, pushID, got)
	}
	return st, nil
}

// uploadMark is the furthest upload progress a push reported: bytes and
// operations of the chunks the server holds.
type uploadMark struct{ bytes, ops int64 }

// builtChunk is one chunk of a push, built by buildChunks, or the error
// that stopped them.
type builtChunk struct {
	seq    int
	ops    int // operations in body (of tracked tables)
	body   []byte
	digest string
	err    error
}

// buildChunks builds the chunks of an attempt from the log, a page at a
// time, into out, and closes it after the last one, an error, or when ctx
// ends.
func (c *Client) buildChunks(ctx context.Context, attempt *models.PushAttempt, out chan<- builtChunk) {
	defer close(out)
	send := func(ch builtChunk) bool {
		select {
		case out <- ch:
			return true
		case <-ctx.Done():
			return false
		}
	}
	after := int64(math.MinInt64)
	// limit is the size of the next page. It starts at the bound and
	// follows the number of operations that fit the last chunk, so that a
	// page of large rows is not encoded whole again for every chunk cut
	// from it (that was quadratic: each chunk cost the rest of its page);
	// it doubles back while chunks come out under half the byte bound.
	// The chunks depend only on the log and the bounds, so that a resumed
	// push cuts the same ones.
	limit := c.cfg.PushChunkOperations
	for seq := 0; ; seq++ {
		var body []byte
		var last int64
		var ops int
		err := c.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if err := c.owned(ctx, tx); err != nil {
				return err
			}
			page, err := oplog.PendingPage(ctx, tx, after, attempt.MaxOrder, limit)
			if err != nil || len(page) == 0 {
				return err
			}
			for n := len(page); ; {
				if body, err = c.chunkBody(ctx, tx, attempt.PushID, seq, page[:n]); err != nil {
					return err
				}
				if len(body) <= c.cfg.PushChunkBytes || n == 1 {
					last, ops = page[n-1].Order, c.tracked(page[:n])
					switch {
					case n < len(page):
						limit = n
					case len(body) < c.cfg.PushChunkBytes/2:
						limit = min(c.cfg.PushChunkOperations, 2*limit)
					}
					return nil
				}
				// Too large: fewer operations, in proportion, with a margin.
				n = max(1, min(n-1, n*c.cfg.PushChunkBytes/len(body)*9/10))
			}
		})
		if err != nil {
			if ctx.Err() == nil {
				send(builtChunk{err: err})
			}
			return
		}
		if body == nil {
			return
		}
		after = last
		if !send(builtChunk{seq: seq, ops: ops, body: body, digest: protocol.ChunkDigest(body)}) {
			return
		}
	}
}

// tracked counts the operations of ops on tables the node tracks: those
// a push sends (oplog.ToWire).
func (c *Client) tracked(ops []models.Operation) int {
	n := 0
	for _, op := range ops {
		if c.reg.ByContentType(op.ContentTypeID) != nil {
			n++
		}
	}
	return n
}

// chunkBody encodes one chunk of a push: ops and the current rows of its
// inserts and updates.
func (c *Client) chunkBody(ctx context.Context, tx bun.IDB, pushID string, seq int, ops []models.Operation) ([]byte, error) {
	wire := oplog.ToWire(c.reg, ops)
	payload, err := c.payloadOf(ctx, tx, wire, nil)
	if err != nil {
		return nil, err
	}
	return (&protocol.PushChunk{PushID: pushID, Seq: seq, Operations: wire, Payload: payload}).MarshalJSON()
}

// pushed records an applied push: its operations leave the log (never to
// be logged or applied again: the server leaves the node's own versions out
// of its pulls). The node's latest version (sync_versions) moves to the
// version the push created when that is the next one (fast-forward). A
// version further on means the server rebased the push on versions the
// node does not hold (gap true): the node's latest version stays, so that
// its next pull brings those versions, and its own with them.
//
// An attempt no longer recorded (another Client on the same database
// settled it) changes nothing (settleAttempt).
//
// token is the version's token as the server gave it ("": none given).
func pushed(ctx context.Context, tx bun.IDB, node int64, attempt *models.PushAttempt, version int64, token string, now time.Time) (gap bool, err error) {
	base := int64(0)
	if attempt.BaseVersion != nil {
		base = *attempt.BaseVersion
	}
	if version <= base {
		// The push's version comes after its base: an answer that says
		// otherwise would drop the operations unapplied.
		return false, fmt.Errorf("%w: push %s answered with version %d, not after its base %d", dbsync.ErrBadResponse, attempt.PushID, version, base)
	}
	if gone, err := settleAttempt(ctx, tx, attempt); err != nil || gone {
		return false, err
	}
	if err := raiseOwnVersion(ctx, tx, version); err != nil {
		return false, err
	}
	latest, err := latestVersion(ctx, tx)
	if err != nil {
		return false, err
	}
	switch {
	case version <= latest+1:
		if version == latest+1 {
			err = recordVersion(ctx, tx, version, &node, now, token)
		} else { // recorded already (a pull brought it): the token only
			err = recordTokens(ctx, tx, []models.VersionToken{{VersionID: version, Token: token}})
		}
		if err != nil {
			return false, err
		}
	case version > latest+1:
		gap = true
	}
	return gap, nil
}

// settleAttempt deletes the push attempt and its operations, the pending
// entries of order up to attempt.MaxOrder, unless the attempt is no
// longer recorded (gone true): another Client on the same database
// settled it since this one read it, and entries the log gained since
// may be numbered below MaxOrder (D1's head entries), which are not the
// attempt's.
func settleAttempt(ctx context.Context, tx bun.IDB, attempt *models.PushAttempt) (gone bool, err error) {
	r, err := tx.NewDelete().Model((*models.PushAttempt)(nil)).Where("push_id = ?", attempt.PushID).Exec(ctx)
	if err != nil {
		return false, err
	}
	if n, err := r.RowsAffected(); err != nil || n == 0 {
		return true, err
	}
	_, err = tx.NewDelete().Model((*models.Operation)(nil)).
		Where("version_id IS NULL").Where(`"order" <= ?`, attempt.MaxOrder).Exec(ctx)
	return false, err
}

// ownVersion returns the greatest version the node's own pushes created
// that it settled (sync_client_pushed), nil when not known (a node
// registered by an earlier release that has settled no push since).
func ownVersion(ctx context.Context, db bun.IDB) (*int64, error) {
	var vs []int64
	if err := db.NewRaw("SELECT version_id FROM sync_client_pushed WHERE id = 1").Scan(ctx, &vs); err != nil {
		return nil, fmt.Errorf("read the node's own version: %w", err)
	}
	if len(vs) == 0 {
		return nil, nil
	}
	return &vs[0], nil
}

// setOwnVersion records version as the node's own greatest (Register: 0).
func setOwnVersion(ctx context.Context, tx bun.IDB, version int64) error {
	if _, err := tx.NewRaw("INSERT INTO sync_client_pushed (id, version_id) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET version_id = excluded.version_id", version).Exec(ctx); err != nil {
		return fmt.Errorf("record the node's own version: %w", err)
	}
	return nil
}

// raiseOwnVersion records that the node settled its push of version.
func raiseOwnVersion(ctx context.Context, tx bun.IDB, version int64) error {
	own, err := ownVersion(ctx, tx)
	if err != nil || own != nil && *own >= version {
		return err
	}
	return setOwnVersion(ctx, tx, version)
}

// checkRestored refuses (dbsync.ErrRepairNeeded) an answer whose header
// says the server holds a version the node's own pushes created
// (head.NodeVersionID) newer than any the node knows of: its latest
// version, its own settled pushes (ownVersion), settled (the version of
// the push this request settles; 0: none). The node's database is older
// than its own pushes: restored from a backup, or a copy. Its pulls would
// leave out the rows it pushed since (as its own) and its pushes would
// send again what it had pushed. Not checked when the node does not know
// its own version.
func checkRestored(ctx context.Context, db bun.IDB, head *protocol.Message, latest, settled int64) error {
	if head.NodeVersionID == nil {
		return nil
	}
	own, err := ownVersion(ctx, db)
	if err != nil || own == nil {
		return err
	}
	if known := max(*own, latest, settled); *head.NodeVersionID > known {
		return fmt.Errorf("%w: the server holds version %d of this node's own pushes, and this node database knows none after %d: it is older than its pushes (restored from a backup, or a copy of another database); repair it (RepairOptions.Force drops its unpushed changes, which it may have pushed already), or register a copy as a node of its own",
			dbsync.ErrRepairNeeded, *head.NodeVersionID, known)
	}
	return nil
}

// dropAttempt drops the refused push attempt pushID. unsure: a copy of
// it still on its way may be applied after the refusal (merge.md X1), a
// version of the node's own it never settles; the node's own version is
// forgotten then (not known: not checked, checkRestored), until its next
// settled push records it again, lest that version make the node look
// older than its own pushes (dbsync.ErrRepairNeeded).
func (c *Client) dropAttempt(ctx context.Context, pushID string, unsure bool) error {
	return c.db.RunInTx(context.WithoutCancel(ctx), nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewDelete().Model((*models.PushAttempt)(nil)).Where("push_id = ?", pushID).Exec(ctx); err != nil || !unsure {
			return err
		}
		if _, err := tx.NewRaw("DELETE FROM sync_client_pushed WHERE id = 1").Exec(ctx); err != nil {
			return fmt.Errorf("forget the node's own version: %w", err)
		}
		return nil
	})
}

// pushBody builds the JSON of a push: the operations and the current rows
// of inserts and updates, from loaded when it has them, else read now.
func (c *Client) pushBody(ctx context.Context, tx bun.IDB, attempt *models.PushAttempt, ops []models.Operation, loaded map[string]map[string]json.RawMessage) ([]byte, error) {
	wire := oplog.ToWire(c.reg, ops)
	payload, err := c.payloadOf(ctx, tx, wire, loaded)
	if err != nil {
		return nil, err
	}
	token, err := baseToken(ctx, tx, attempt.BaseVersion)
	if err != nil {
		return nil, err
	}
	own, err := ownVersion(ctx, tx)
	if err != nil {
		return nil, err
	}
	req := &protocol.PushRequest{
		PushID:             attempt.PushID,
		LatestVersionID:    attempt.BaseVersion,
		LatestVersionToken: token,
		OwnVersionID:       own,
		Operations:         wire,
		Payload:            payload,
	}
	return req.MarshalJSON()
}

// payloadOf returns the current rows of the inserts and updates of wire,
// from loaded when it has them, else read now.
func (c *Client) payloadOf(ctx context.Context, tx bun.IDB, wire []protocol.Operation, loaded map[string]map[string]json.RawMessage) (protocol.Payload, error) {
	keys := map[string][]string{}
	seen := map[string]map[string]bool{}
	for _, op := range wire {
		if op.Command == models.Delete {
			continue
		}
		if seen[op.Table] == nil {
			seen[op.Table] = map[string]bool{}
		}
		if !seen[op.Table][op.RowID] {
			seen[op.Table][op.RowID] = true
			keys[op.Table] = append(keys[op.Table], op.RowID)
		}
	}
	payload := protocol.Payload{}
	for _, t := range c.reg.Tables() {
		if len(keys[t.Name]) == 0 {
			continue
		}
		rows := make([]json.RawMessage, 0, len(keys[t.Name]))
		if loaded != nil {
			for _, k := range keys[t.Name] {
				if raw, ok := loaded[t.Name][k]; ok {
					rows = append(rows, raw)
				}
			}
		} else {
			found := make(map[string]bool, len(keys[t.Name]))
			err := store.Load(ctx, tx, t, keys[t.Name], func(strct reflect.Value) error {
				raw, err := t.Codec().AppendRow(nil, strct)
				rows = append(rows, raw)
				found[t.Codec().KeyOf(strct)] = true
				return err
			})
			if err != nil {
				return nil, err
			}
			for _, k := range keys[t.Name] {
				if !found[k] {
					// The server refuses an insert or update without its
					// row. The pull asks about this push: it reports it
					// applied or makes sure it never will be, and the node
					// then pushes what it holds now.
					return nil, fmt.Errorf("%w: %s %s of an unanswered push is gone; a pull settles that push",
						dbsync.ErrPullNeeded, t.Name, k)
				}
			}
		}
		payload[t.Name] = rows
	}
	return payload, nil
}

// giveUpUnpushed gives up, before a push, the node's unpushed changes to
// tables its release tracks but no longer pushes (made pull-only since an
// earlier release logged them): the server refuses a push that carries
// them, so every push of the node would be refused. They are discarded
// as DiscardPending discards them (the rows take the server's values, a
// row the node created goes), a page of maxDiscardFetch rows at a time.
// Called holding c.mu.
func (c *Client) giveUpUnpushed(ctx context.Context) error {
	var cts []int64
	for _, t := range c.reg.Tables() {
		if !t.Direction.Pushed() {
			cts = append(cts, t.ContentTypeID)
		}
	}
	if len(cts) == 0 {
		return nil
	}
	for {
		var page []struct {
			ContentTypeID int64  `bun:"content_type_id"`
			RowID         string `bun:"row_id"`
		}
		if err := c.db.NewSelect().Model((*models.Operation)(nil)).Column("content_type_id", "row_id").
			Where("version_id IS NULL AND content_type_id IN (?)", bun.List(cts)).
			Group("content_type_id", "row_id").OrderExpr("content_type_id, row_id").
			Limit(maxDiscardFetch).Scan(ctx, &page); err != nil {
			return fmt.Errorf("read changes to pull-only tables: %w", err)
		}
		if len(page) == 0 {
			return nil
		}
		rows := make([]protocol.ScopeEntry, len(page))
		for i, r := range page {
			rows[i] = protocol.ScopeEntry{Table: c.reg.ByContentType(r.ContentTypeID).Name, PK: r.RowID}
		}
		if err := c.refuseDependents(ctx, rows); err != nil {
			return err
		}
		c.log.WarnContext(ctx, "client: unpushed changes to a table the node no longer pushes (pull-only) given up; the rows take the server's values",
			slog.Int("rows", len(rows)), slog.String("first_table", rows[0].Table), slog.String("first_key", rows[0].PK))
		if err := c.discardPending(ctx, rows); err != nil {
			return err
		}
	}
}

// refuseDependents refuses (dbsync.ErrPendingChanges, a *dbsync.ScopeError
// naming them) the giving up of rows, when rows of the node reference one
// of them it inserted and never pushed: that row goes, and they would
// reference nothing (the delete fails on their foreign key), while the
// server, which never had it, refuses them too. The application re-points
// them, or gives them up with DiscardPending; its next push gives the row
// up then.
func (c *Client) refuseDependents(ctx context.Context, rows []protocol.ScopeEntry) error {
	created := map[*dbsync.Table][]string{}
	for _, r := range rows {
		t := c.reg.Table(r.Table)
		var first []models.Operation
		if err := c.db.NewSelect().Model(&first).Column("command", "order").
			Where("version_id IS NULL AND content_type_id = ? AND row_id = ?", t.ContentTypeID, r.PK).
			OrderExpr(`"order" ASC`).Limit(1).Scan(ctx); err != nil {
			return fmt.Errorf("read pending changes of %s %s: %w", r.Table, r.PK, err)
		}
		if len(first) > 0 && first[0].Command == models.Insert && first[0].Order >= 0 {
			created[t] = append(created[t], r.PK)
		}
	}
	var named []protocol.ScopeEntry
	for _, t := range c.reg.Tables() {
		if len(created[t]) == 0 {
			continue
		}
		for _, ch := range c.reg.Children(t.Name) {
			refs, err := store.Referencing(ctx, c.db, ch.Table, ch.FK.Column, t, created[t])
			if err != nil {
				return err
			}
			for _, r := range refs {
				if ch.Table != t || !slices.Contains(created[t], r.Child) {
					named = append(named, protocol.ScopeEntry{Table: ch.Table.Name, PK: r.Child})
				}
			}
		}
	}
	if len(named) == 0 {
		return nil
	}
	return fmt.Errorf("%w: rows of the node reference rows it inserted in tables it no longer pushes (pull-only), which it gives up: re-point them, or give them up with DiscardPending: %w",
		dbsync.ErrPendingChanges, &dbsync.ScopeError{Entries: named})
}

package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/spool"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
)

// PullResult describes a pull.
type PullResult struct {
	// VersionID is the server version the node now holds.
	VersionID int64
	// Versions, Operations and Rows count what was received.
	Versions   int
	Operations int64
	Rows       int64
	// Conflicts counts the conflicts resolved, by kind (merge.Kind*).
	Conflicts map[string]int
	// PushApplied is set when the pull settled a push whose answer had been
	// lost: true if the server had applied it.
	PushApplied *bool
	// Bytes is the size of the response.
	Bytes int64
}

// Changed reports whether the pull received versions or settled a push
// whose answer had been lost.
func (r *PullResult) Changed() bool { return r.Versions > 0 || r.PushApplied != nil }

// String summarizes the pull on one line, e.g. "pulled 1 version(s), 3
// operation(s); at version 4".
func (r *PullResult) String() string {
	s := "nothing to pull"
	if r.Versions > 0 {
		s = fmt.Sprintf("pulled %d version(s), %d operation(s)%s", r.Versions, r.Operations, conflictText(r.Conflicts))
	}
	if r.PushApplied != nil {
		s += fmt.Sprintf("; the unanswered push was applied: %v", *r.PushApplied)
	}
	return fmt.Sprintf("%s; at version %d", s, r.VersionID)
}

// Pull fetches the server's versions newer than the node's and merges them
// into the local database (merge.md), in one transaction: the local
// database moves to the new version entirely or not at all. The response is
// first downloaded to a temporary file, so memory stays bounded and the
// transaction does not wait on the network.
//
// When the node's changes collide with the server's on unique values in a
// way the merge cannot settle, Pull returns a *dbsync.UniqueConstraintError
// naming the node's rows to change; nothing is applied.
func (c *Client) Pull(ctx context.Context) (*PullResult, error) {
	if err := c.mu.lock(ctx); err != nil {
		return nil, err
	}
	defer c.mu.unlock()
	return c.pull(ctx)
}

func (c *Client) pull(ctx context.Context) (res *PullResult, err error) {
	start := time.Now()
	ev := dbsync.Event{Op: "pull"}
	defer func() {
		ev.Err = err
		if res != nil {
			ev.VersionID, ev.Operations, ev.Rows, ev.Bytes, ev.Conflicts = res.VersionID, res.Operations, res.Rows, res.Bytes, res.Conflicts
		}
		c.emit(ctx, ev, start)
	}()
	node, err := c.node(ctx, c.db)
	if err != nil {
		return nil, err
	}
	ev.NodeID = node.NodeID
	latest, err := latestVersion(ctx, c.db)
	if err != nil {
		return nil, err
	}
	var attempt *models.PushAttempt
	var a models.PushAttempt
	switch err := c.db.NewSelect().Model(&a).Limit(1).Scan(ctx); {
	case err == nil:
		attempt = &a
	case !isNoRows(err):
		return nil, fmt.Errorf("client: read push attempt: %w", err)
	}
	deleted, err := c.pendingDeletes(ctx)
	if err != nil {
		return nil, err
	}
	req := &dbsync.PullRequest{LatestVersionID: versionPtr(latest), ChunkSize: c.cfg.ChunkSize, Deleted: deleted}
	if attempt != nil {
		req.PushID = attempt.PushID
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, &request{method: http.MethodPost, endpoint: "pull", body: body, node: node})
	if err != nil {
		return nil, err
	}
	file, size, err := c.download(ctx, resp, "pull")
	if err != nil {
		return nil, err
	}
	defer spool.Discard(file)
	res = &PullResult{Conflicts: map[string]int{}, Bytes: size}
	err = dialect.ApplyTx(ctx, c.db, func(ctx context.Context, tx bun.Tx) error {
		return c.applyPull(ctx, tx, node, attempt, file, res)
	})
	if err != nil {
		return nil, err
	}
	c.progress(dbsync.Progress{Op: "pull", Phase: "done", Bytes: size, Operations: res.Operations, Rows: res.Rows})
	c.log.InfoContext(ctx, "client: pulled", slog.Int64("version", res.VersionID), slog.Int64("operations", res.Operations), slog.Any("conflicts", res.Conflicts))
	return res, nil
}

func (c *Client) pulledTables() []string {
	var out []string
	for _, t := range c.reg.Tables() {
		if t.Direction.Pulled() {
			out = append(out, t.Name)
		}
	}
	return out
}

// download copies a response body to a temporary file, reporting progress.
func (c *Client) download(ctx context.Context, resp *http.Response, op string) (*os.File, int64, error) {
	defer resp.Body.Close()
	f, err := spool.Create(c.cfg.SpoolDir, "dbsync-"+op+"-*.ndjson")
	if err != nil {
		return nil, 0, fmt.Errorf("client: spool file: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<16)
	buf := make([]byte, 1<<16)
	var n int64
	last := time.Now()
	for {
		k, rerr := resp.Body.Read(buf)
		if k > 0 {
			if _, err := w.Write(buf[:k]); err != nil {
				spool.Discard(f)
				return nil, 0, fmt.Errorf("client: spool: %w", err)
			}
			n += int64(k)
			if time.Since(last) > 200*time.Millisecond {
				last = time.Now()
				c.progress(dbsync.Progress{Op: op, Phase: "download", Bytes: n})
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			spool.Discard(f)
			if ctx.Err() != nil {
				return nil, 0, fmt.Errorf("%w: %w", dbsync.ErrNetwork, ctx.Err())
			}
			return nil, 0, fmt.Errorf("%w: download cut short after %d bytes: %w", dbsync.ErrNetwork, n, rerr)
		}
	}
	if err := w.Flush(); err != nil {
		spool.Discard(f)
		return nil, 0, fmt.Errorf("client: spool: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		spool.Discard(f)
		return nil, 0, err
	}
	c.progress(dbsync.Progress{Op: op, Phase: "download", Bytes: n})
	return f, n, nil
}

// messages decodes the lines of a spooled stream one at a time. The first
// must be a header; a stream without its end line is an error.
type messages struct {
	r *bufio.Reader
}

func newMessages(r io.Reader) *messages {
	return &messages{r: bufio.NewReaderSize(r, 1<<16)}
}

func (m *messages) next() (*dbsync.Message, error) {
	var line []byte
	for len(bytes.TrimSpace(line)) == 0 {
		var err error
		line, err = m.r.ReadBytes('\n')
		if err == io.EOF {
			if len(bytes.TrimSpace(line)) == 0 {
				return nil, fmt.Errorf("%w: the stream ended without its end line", dbsync.ErrNetwork)
			}
			// A last line without its newline: the stream was cut.
			return nil, fmt.Errorf("%w: the stream was cut inside a line", dbsync.ErrNetwork)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: reading the stream: %w", dbsync.ErrNetwork, err)
		}
	}
	msg, err := dbsync.ParseMessage(line)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
	}
	if msg.Type == dbsync.MsgError {
		if msg.Error == nil {
			return nil, fmt.Errorf("%w: error line without an error", dbsync.ErrBadResponse)
		}
		if msg.Error.Code == dbsync.CodeUniqueConflict {
			return nil, &dbsync.UniqueConstraintError{Entries: msg.Error.Entries}
		}
		return nil, &dbsync.ServerError{Status: http.StatusOK, Code: msg.Error.Code, Message: msg.Error.Message}
	}
	return msg, nil
}

func (c *Client) applyPull(ctx context.Context, tx bun.Tx, node *models.Node, attempt *models.PushAttempt, stream io.Reader, res *PullResult) error {
	msgs := newMessages(stream)
	head, err := msgs.next()
	if err != nil {
		return err
	}
	if head.Type != dbsync.MsgHeader || head.LatestVersionID == nil {
		return fmt.Errorf("%w: pull stream does not start with a header", dbsync.ErrBadResponse)
	}
	res.VersionID = *head.LatestVersionID
	if err := dialect.Capture(ctx, tx, false); err != nil {
		return err
	}
	if attempt != nil {
		if head.Push == nil || head.Push.PushID != attempt.PushID {
			return fmt.Errorf("%w: the server did not report on push %s", dbsync.ErrBadResponse, attempt.PushID)
		}
		applied := head.Push.VersionID != nil
		res.PushApplied = &applied
		if applied {
			if err := pushed(ctx, tx, node.NodeID, attempt, *head.Push.VersionID, c.cfg.Now().UTC()); err != nil {
				return err
			}
		} else if _, err := tx.NewDelete().Model((*models.PushAttempt)(nil)).Where("push_id = ?", attempt.PushID).Exec(ctx); err != nil {
			return err
		}
	}
	local, err := c.localState(ctx, tx)
	if err != nil {
		return err
	}
	moves, err := c.renumber(ctx, tx, local, head.MaxKeys)
	if err != nil {
		return err
	}
	if len(moves) > 0 {
		res.Conflicts[merge.KindRenumber] += len(moves)
	}
	merger := merge.NewMerger(c.reg, local, &lookup{ctx: ctx, tx: tx, reg: c.reg}, func(t string) merge.Policy { return c.policy(t) })
	written := map[string]bool{}
	touched := &store.Touched{}
	for {
		msg, err := msgs.next()
		if err != nil {
			return err
		}
		switch msg.Type {
		case dbsync.MsgVersions:
			if len(msg.Versions) == 0 {
				continue
			}
			vs := make([]models.Version, len(msg.Versions))
			for i, v := range msg.Versions {
				vs[i] = models.Version{VersionID: v.VersionID, NodeID: v.NodeID, Created: v.Created}
			}
			if _, err := tx.NewInsert().Model(&vs).On("CONFLICT (version_id) DO NOTHING").Exec(ctx); err != nil {
				return fmt.Errorf("store versions: %w", err)
			}
			res.Versions += len(vs)
		case dbsync.MsgChunk:
			if err := c.applyChunk(ctx, tx, merger, msg, res, written, touched); err != nil {
				return unrenumber(err, moves)
			}
			c.progress(dbsync.Progress{Op: "pull", Phase: "apply", Bytes: res.Bytes, Operations: res.Operations, Rows: res.Rows})
		case dbsync.MsgEnd:
			if msg.OperationCount != res.Operations || msg.RowCount != res.Rows {
				return fmt.Errorf("%w: the stream announced %d operations and %d rows, %d and %d arrived",
					dbsync.ErrBadResponse, msg.OperationCount, msg.RowCount, res.Operations, res.Rows)
			}
			if err := merger.Finish(); err != nil {
				return err
			}
			if err := store.CheckReferences(ctx, tx, c.reg, touched); err != nil {
				return err
			}
			for name := range written {
				t := c.reg.Table(name)
				if t.KeyKind == dbsync.KeyInt {
					if err := dialect.BumpSequence(ctx, tx, t.Name, t.PK.Name); err != nil {
						return err
					}
				}
			}
			return dialect.ResetCapture(ctx, tx)
		default:
			return fmt.Errorf("%w: unexpected %q line in a pull stream", dbsync.ErrBadResponse, msg.Type)
		}
	}
}

// localState describes the node's pending operations for the merge.
func (c *Client) localState(ctx context.Context, tx bun.Tx) (*merge.Local, error) {
	// Every pending entry, D1's head entries (negative orders) included.
	kept, err := oplog.Compress(ctx, tx, c.reg, math.MinInt64)
	if err != nil {
		return nil, err
	}
	type group struct {
		first, last models.Operation
		orders      []int64
	}
	groups := map[merge.Obj]*group{}
	var objs []merge.Obj
	for _, op := range kept {
		t := c.reg.ByContentType(op.ContentTypeID)
		if t == nil {
			continue
		}
		o := merge.Obj{Table: t.Name, Key: op.RowID}
		g := groups[o]
		if g == nil {
			g = &group{first: op}
			groups[o] = g
			objs = append(objs, o)
		}
		g.last = op
		g.orders = append(g.orders, op.Order)
	}
	var ops []merge.LocalOp
	pendingKeys := map[string][]string{}
	for _, o := range objs {
		g := groups[o]
		w := oplog.ToWire(c.reg, []models.Operation{g.first, g.last})
		op, ok := oplog.CompressRun(w[0], w[1], len(g.orders))
		if !ok {
			continue
		}
		// Head entries (negative orders) are the merge's re-creations of
		// rows the server had (D1, M5): K1 must not move them.
		ops = append(ops, merge.LocalOp{Obj: o, Command: op.Command, Orders: g.orders, Recreated: g.orders[0] < 0})
		if op.Command != models.Delete {
			pendingKeys[o.Table] = append(pendingKeys[o.Table], o.Key)
		}
	}
	var refs []merge.Ref
	for _, t := range c.reg.Tables() {
		if len(pendingKeys[t.Name]) == 0 || len(t.ForeignKeys) == 0 {
			continue
		}
		err := store.Load(ctx, tx, t, pendingKeys[t.Name], func(strct reflect.Value) error {
			child := merge.Obj{Table: t.Name, Key: t.KeyOf(strct)}
			for _, fk := range t.ForeignKeys {
				if k := dbsync.ValueKey(t.Column(fk.Column), strct); k != "" {
					refs = append(refs, merge.Ref{Child: child, Parent: merge.Obj{Table: fk.RefTable, Key: k}})
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return merge.NewLocal(ops, refs), nil
}

// unrenumber names the rows of a unique conflict (U4) by the keys they have
// again once the failed pull is rolled back: before K1 moved them.
func unrenumber(err error, moves []merge.Move) error {
	var uc *dbsync.UniqueConstraintError
	if len(moves) == 0 || !errors.As(err, &uc) {
		return err
	}
	back := make(map[merge.Obj]string, len(moves))
	for _, mv := range moves {
		back[merge.Obj{Table: mv.Table, Key: fmt.Sprint(mv.To)}] = fmt.Sprint(mv.From)
	}
	for i, en := range uc.Entries {
		if k, ok := back[merge.Obj{Table: en.Table, Key: en.PK}]; ok {
			uc.Entries[i].PK = k
		}
	}
	return err
}

// renumber applies merge.Renumber (K1): the node's unpushed inserts whose
// integer keys the server may use move to fresh keys, and every local
// reference follows.
func (c *Client) renumber(ctx context.Context, tx bun.Tx, local *merge.Local, serverMax map[string]int64) ([]merge.Move, error) {
	localMax := map[string]int64{}
	for _, t := range c.reg.Tables() {
		if t.KeyKind != dbsync.KeyInt || !t.Direction.Pulled() {
			continue
		}
		m, err := dialect.MaxKey(ctx, tx, t.Name, t.PK.Name)
		if err != nil {
			return nil, err
		}
		localMax[t.Name] = m
	}
	moves, err := merge.Renumber(c.reg, local, serverMax, localMax)
	if err != nil {
		return nil, err
	}
	for _, mv := range moves {
		t := c.reg.Table(mv.Table)
		if _, err := tx.NewUpdate().TableExpr("?", bun.Ident(t.Name)).Set("? = ?", bun.Ident(t.PK.Name), mv.To).
			Where("? = ?", bun.Ident(t.PK.Name), mv.From).Exec(ctx); err != nil {
			return nil, fmt.Errorf("renumber %s %d: %w", t.Name, mv.From, err)
		}
		for _, ch := range c.reg.Children(t.Name) {
			if _, err := tx.NewUpdate().TableExpr("?", bun.Ident(ch.Table.Name)).Set("? = ?", bun.Ident(ch.FK.Column), mv.To).
				Where("? = ?", bun.Ident(ch.FK.Column), mv.From).Exec(ctx); err != nil {
				return nil, fmt.Errorf("renumber references to %s %d: %w", t.Name, mv.From, err)
			}
		}
		if _, err := tx.NewUpdate().Model((*models.Operation)(nil)).Set("row_id = ?", fmt.Sprint(mv.To)).
			Where("content_type_id = ? AND row_id = ? AND version_id IS NULL", t.ContentTypeID, fmt.Sprint(mv.From)).Exec(ctx); err != nil {
			return nil, err
		}
	}
	// A key taken by an UPDATE does not advance the table's sequence
	// (SQLite's AUTOINCREMENT counter, PostgreSQL's serial): advance it past
	// the moved keys, or once a moved row is deleted a later insert reuses
	// its key, and the log reads that delete and the new insert as one row
	// updated (d … i), which K1 never moves.
	top := map[string]int64{}
	for _, mv := range moves {
		top[mv.Table] = max(top[mv.Table], mv.To)
	}
	for table, to := range top {
		t := c.reg.Table(table)
		if c.kind == dialect.Postgres {
			if err := dialect.BumpSequence(ctx, tx, t.Name, t.PK.Name); err != nil {
				return nil, err
			}
			continue
		}
		if _, err := tx.ExecContext(ctx, "UPDATE sqlite_sequence SET seq = ? WHERE name = ? AND seq < ?", to, t.Name, to); err != nil &&
			!strings.Contains(err.Error(), "no such table") {
			return nil, fmt.Errorf("advance the key sequence of %s: %w", t.Name, err)
		}
	}
	if len(moves) > 0 {
		c.log.InfoContext(ctx, "client: unpushed inserts renumbered", slog.Int("rows", len(moves)))
	}
	return moves, nil
}

// applyChunk merges one chunk and applies the plan.
func (c *Client) applyChunk(ctx context.Context, tx bun.Tx, merger *merge.Merger, msg *dbsync.Message, res *PullResult, written map[string]bool, touched *store.Touched) error {
	payload := map[string]map[string]dbsync.Row{}
	for table, raws := range msg.Payload {
		t := c.reg.Table(table)
		if t == nil {
			return fmt.Errorf("%w: pull payload for unknown table %q", dbsync.ErrBadResponse, table)
		}
		m := make(map[string]dbsync.Row, len(raws))
		for _, raw := range raws {
			row, err := dbsync.ParseRow(raw)
			if err != nil {
				return fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
			}
			key, err := t.RowKey(row)
			if err != nil {
				return fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
			}
			m[key] = row
		}
		payload[table] = m
		res.Rows += int64(len(raws))
	}
	for i := range msg.Operations {
		op := &msg.Operations[i]
		t := c.reg.Table(op.Table)
		if t == nil || !op.Command.Valid() {
			return fmt.Errorf("%w: bad operation %+v", dbsync.ErrBadResponse, *op)
		}
		key, err := t.CanonicalKey(op.RowID)
		if err != nil {
			return fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
		}
		op.RowID = key
	}
	res.Operations += int64(len(msg.Operations))
	plan, err := merger.Chunk(oplog.CompressRemote(msg.Operations), payload)
	if err != nil {
		return err
	}
	for _, r := range plan.Conflicts {
		res.Conflicts[r.Kind]++
	}
	return c.applyPlan(ctx, tx, plan, written, touched)
}

// applyPlan writes a merge plan: deletes (children first), parks (holders
// of unique values the writes take, moved out of the way in place: never
// deleted, so ON DELETE actions cannot touch their children), writes
// (parents first), then the log edits.
func (c *Client) applyPlan(ctx context.Context, tx bun.Tx, plan *merge.Plan, written map[string]bool, touched *store.Touched) error {
	deletes := map[string][]string{}
	for _, o := range plan.Deletes {
		deletes[o.Table] = append(deletes[o.Table], o.Key)
	}
	writes := map[string][]reflect.Value{}
	for _, w := range plan.Writes {
		t := c.reg.Table(w.Table)
		ptr, err := t.DecodeRow(w.Row)
		if err != nil {
			return fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
		}
		writes[w.Table] = append(writes[w.Table], ptr.Elem())
	}
	tables := c.reg.Tables()
	for i := len(tables) - 1; i >= 0; i-- {
		if keys := deletes[tables[i].Name]; len(keys) > 0 {
			if err := store.Delete(ctx, tx, tables[i], keys); err != nil {
				return err
			}
			touched.Deleted(tables[i], keys...)
		}
	}
	parks := map[string][]string{}
	for _, o := range plan.Parks {
		parks[o.Table] = append(parks[o.Table], o.Key)
	}
	for _, t := range tables {
		if err := store.Park(ctx, tx, t, parks[t.Name], writes[t.Name]); err != nil {
			return err
		}
	}
	for _, t := range tables {
		if rows := writes[t.Name]; len(rows) > 0 {
			if err := store.Write(ctx, tx, t, rows, true); err != nil {
				return err
			}
			written[t.Name] = true
			for _, r := range rows {
				touched.WroteRow(c.reg, t, r)
			}
		}
	}
	if err := oplog.DeleteOperations(ctx, tx, plan.DropOrders); err != nil {
		return err
	}
	if len(plan.AddOps) == 0 {
		return nil
	}
	var head, tail []models.Operation
	for _, a := range plan.AddOps {
		op := models.Operation{RowID: a.Key, ContentTypeID: c.reg.Table(a.Table).ContentTypeID, Command: a.Command}
		if a.Head {
			head = append(head, op)
		} else {
			tail = append(tail, op)
		}
	}
	if len(head) > 0 {
		var min *int64
		if err := tx.NewRaw(`SELECT MIN("order") FROM sync_operations`).Scan(ctx, &min); err != nil {
			return err
		}
		next := int64(0) // head orders are negative: 0 would mean "assign one"
		if min != nil && *min < 0 {
			next = *min
		}
		sort.SliceStable(head, func(i, j int) bool {
			return c.reg.Table(tableOf(c.reg, head[i])).Rank() < c.reg.Table(tableOf(c.reg, head[j])).Rank()
		})
		for i := len(head) - 1; i >= 0; i-- {
			next--
			head[i].Order = next
		}
		if _, err := tx.NewInsert().Model(&head).Exec(ctx); err != nil {
			return fmt.Errorf("log re-created parents: %w", err)
		}
	}
	if len(tail) > 0 {
		if _, err := tx.NewInsert().Model(&tail).Exec(ctx); err != nil {
			return fmt.Errorf("log merge results: %w", err)
		}
	}
	return nil
}

func tableOf(reg *dbsync.Registry, op models.Operation) string {
	return reg.ByContentType(op.ContentTypeID).Name
}

// lookup answers the merge's questions from the local database.
type lookup struct {
	ctx context.Context
	tx  bun.Tx
	reg *dbsync.Registry
}

func (l *lookup) Rows(table string, keys []string) (map[string]dbsync.Row, error) {
	t := l.reg.Table(table)
	out := map[string]dbsync.Row{}
	err := store.Load(l.ctx, l.tx, t, keys, func(strct reflect.Value) error {
		raw, err := t.AppendRow(nil, strct)
		if err != nil {
			return err
		}
		row, err := dbsync.ParseRow(raw)
		if err != nil {
			return err
		}
		out[t.KeyOf(strct)] = row
		return nil
	})
	return out, err
}

func (l *lookup) UniqueHolders(table string, cols []string, rows []dbsync.Row) (map[int]string, error) {
	t := l.reg.Table(table)
	structs := make([]reflect.Value, len(rows))
	for i, r := range rows {
		ptr, err := t.DecodeRow(r)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
		}
		structs[i] = ptr.Elem()
	}
	return store.UniqueHolders(l.ctx, l.tx, t, cols, structs)
}

// maxDeletedInRequest bounds the keys a pull request lists; beyond it the
// request asks for every referenced row.
const maxDeletedInRequest = 10000

// pendingDeletes lists the rows the node deleted and has not pushed, in
// tables other tables reference: the only referenced rows a pull needs
// (merge.md D2). nil (ask for all) when there are too many to list.
func (c *Client) pendingDeletes(ctx context.Context) (map[string][]string, error) {
	var cts []int64
	for _, t := range c.reg.Tables() {
		if len(c.reg.Children(t.Name)) > 0 {
			cts = append(cts, t.ContentTypeID)
		}
	}
	out := map[string][]string{}
	if len(cts) == 0 {
		return out, nil
	}
	rows, err := c.db.QueryContext(ctx, "SELECT content_type_id, row_id FROM sync_operations WHERE version_id IS NULL AND command = 'd' AND content_type_id IN (?) LIMIT ?",
		bun.List(cts), maxDeletedInRequest+1)
	if err != nil {
		return nil, fmt.Errorf("client: read pending deletes: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var ct int64
		var key string
		if err := rows.Scan(&ct, &key); err != nil {
			return nil, err
		}
		if n++; n > maxDeletedInRequest {
			return nil, nil
		}
		t := c.reg.ByContentType(ct)
		out[t.Name] = append(out[t.Name], key)
	}
	return out, rows.Err()
}

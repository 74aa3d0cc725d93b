package client

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/spool"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
)

// RepairOptions tune Repair.
type RepairOptions struct {
	// Force discards local changes that were never pushed. Without it,
	// Repair refuses with dbsync.ErrPendingChanges when there are some.
	Force bool
}

// RepairResult describes a repair.
type RepairResult struct {
	VersionID int64
	Rows      int64
	Bytes     int64
	// Discarded counts the unpushed local operations that were dropped
	// (only with Force).
	Discarded int
}

// Repair replaces the node's copy of every pulled table by the server's,
// as python-sync-db's repair: for a node that missed history (the server
// trimmed it, dbsync.ErrRepairNeeded) or whose database is damaged. The
// server's snapshot is downloaded to a temporary file in bounded memory,
// then applied in one transaction: the local tables change entirely or not
// at all. Push-only tables are left alone.
func (c *Client) Repair(ctx context.Context, opts *RepairOptions) (res *RepairResult, err error) {
	if opts == nil {
		opts = &RepairOptions{}
	}
	if err := c.mu.lock(ctx); err != nil {
		return nil, err
	}
	defer c.mu.unlock()
	start := time.Now()
	ev := dbsync.Event{Op: "repair"}
	defer func() {
		ev.Err = err
		if res != nil {
			ev.VersionID, ev.Rows, ev.Bytes = res.VersionID, res.Rows, res.Bytes
		}
		c.emit(ctx, ev, start)
	}()
	node, err := c.node(ctx, c.db)
	if err != nil {
		return nil, err
	}
	ev.NodeID = node.NodeID
	// Counted, not compressed: an unanswered push's operations must stay as
	// they were sent (merge.md X1).
	pending, err := oplog.Pending(ctx, c.db)
	if err != nil {
		return nil, err
	}
	pulledCT := map[int64]bool{}
	for _, t := range c.reg.Tables() {
		if t.Direction.Pulled() {
			pulledCT[t.ContentTypeID] = true
		}
	}
	discard := 0
	for _, op := range pending {
		if pulledCT[op.ContentTypeID] {
			discard++
		}
	}
	if discard > 0 && !opts.Force {
		return nil, fmt.Errorf("%w: %d operations would be lost; push them or repair with Force", dbsync.ErrPendingChanges, discard)
	}
	resp, err := c.do(ctx, &request{method: http.MethodGet, endpoint: "repair", node: node})
	if err != nil {
		return nil, err
	}
	file, size, err := c.download(ctx, resp, "repair")
	if err != nil {
		return nil, err
	}
	defer spool.Discard(file)
	res = &RepairResult{Bytes: size, Discarded: discard}
	tables := c.pulledTables()
	err = dialect.ApplyTx(ctx, c.db, func(ctx context.Context, tx bun.Tx) error {
		msgs := newMessages(file)
		head, err := msgs.next()
		if err != nil {
			return err
		}
		if head.Type != dbsync.MsgHeader || head.LatestVersionID == nil {
			return fmt.Errorf("%w: repair stream does not start with a header", dbsync.ErrBadResponse)
		}
		got, want := slices.Clone(head.Tables), slices.Clone(tables)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			return fmt.Errorf("%w: the server repairs tables %v, the node pulls %v", dbsync.ErrSchemaMismatch, head.Tables, tables)
		}
		if err := dialect.Capture(ctx, tx, false); err != nil {
			return err
		}
		all := c.reg.Tables()
		for i := len(all) - 1; i >= 0; i-- {
			if all[i].Direction.Pulled() {
				if err := store.DeleteAll(ctx, tx, all[i]); err != nil {
					return err
				}
			}
		}
		cts := make([]int64, 0, len(pulledCT))
		for ct := range pulledCT {
			cts = append(cts, ct)
		}
		if _, err := tx.NewDelete().Model((*models.Operation)(nil)).
			Where("version_id IS NOT NULL OR content_type_id IN (?)", bun.List(cts)).Exec(ctx); err != nil {
			return err
		}
		if _, err := tx.NewDelete().Model((*models.Version)(nil)).Where("1 = 1").Exec(ctx); err != nil {
			return err
		}
		// A push still in flight may be applied by the server later; its
		// changes then reach this node by a normal pull.
		if _, err := tx.NewDelete().Model((*models.PushAttempt)(nil)).Where("1 = 1").Exec(ctx); err != nil {
			return err
		}
		for {
			msg, err := msgs.next()
			if err != nil {
				return err
			}
			switch msg.Type {
			case dbsync.MsgRows:
				t := c.reg.Table(msg.Table)
				if t == nil || !t.Direction.Pulled() {
					return fmt.Errorf("%w: repair rows for table %q", dbsync.ErrBadResponse, msg.Table)
				}
				rows := make([]reflect.Value, len(msg.Rows))
				for i, raw := range msg.Rows {
					row, err := dbsync.ParseRow(raw)
					if err != nil {
						return fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
					}
					ptr, err := t.DecodeRow(row)
					if err != nil {
						return fmt.Errorf("%w: %w", dbsync.ErrBadResponse, err)
					}
					rows[i] = ptr.Elem()
				}
				if err := store.Write(ctx, tx, t, rows, false); err != nil {
					return err
				}
				res.Rows += int64(len(rows))
				c.progress(dbsync.Progress{Op: "repair", Phase: "apply", Bytes: size, Rows: res.Rows})
			case dbsync.MsgEnd:
				if msg.RowCount != res.Rows {
					return fmt.Errorf("%w: the stream announced %d rows, %d arrived", dbsync.ErrBadResponse, msg.RowCount, res.Rows)
				}
				// The tables were replaced whole: check them whole.
				if err := dialect.ForeignKeyCheck(ctx, tx, tables); err != nil {
					return err
				}
				if v := *head.LatestVersionID; v > 0 {
					if _, err := tx.NewInsert().Model(&models.Version{VersionID: v, Created: c.cfg.Now().UTC()}).Exec(ctx); err != nil {
						return err
					}
				}
				for _, t := range all {
					if t.Direction.Pulled() && t.KeyKind == dbsync.KeyInt {
						if err := dialect.BumpSequence(ctx, tx, t.Name, t.PK.Name); err != nil {
							return err
						}
					}
				}
				res.VersionID = *head.LatestVersionID
				return dialect.ResetCapture(ctx, tx)
			default:
				return fmt.Errorf("%w: unexpected %q line in a repair stream", dbsync.ErrBadResponse, msg.Type)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	c.progress(dbsync.Progress{Op: "repair", Phase: "done", Bytes: size, Rows: res.Rows})
	c.log.InfoContext(ctx, "client: repaired", slog.Int64("version", res.VersionID), slog.Int64("rows", res.Rows))
	return res, nil
}

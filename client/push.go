package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
	"github.com/go-dbsync/dbsync/protocol"
)

// PushResult describes a push.
type PushResult struct {
	// VersionID is the server version that now holds the node's changes.
	VersionID int64
	// Operations is the number of operations sent.
	Operations int
	// Empty is true when there was nothing to push (no request was sent).
	Empty bool
	// Duplicate is true when the push had been applied already: its first
	// answer was lost, and this was a retry.
	Duplicate bool
	// Bytes is the size of the request body.
	Bytes int
}

// String summarizes the push on one line, e.g. "pushed 2 operation(s) as
// version 4", or "nothing to push".
func (r *PushResult) String() string {
	if r.Empty {
		return "nothing to push"
	}
	s := fmt.Sprintf("pushed %d operation(s) as version %d", r.Operations, r.VersionID)
	if r.Duplicate {
		s += " (a resend: applied once)"
	}
	return s
}

// Push sends the node's pending operations, with the current state of the
// rows they touch, as one new server version.
//
// It fails with an error wrapping dbsync.ErrPullNeeded when the server has
// versions the node has not pulled (pull, then push again; Sync does this)
// or when a row of an unanswered push was deleted since (the pull settles
// that push), dbsync.ErrRepairNeeded when the server lost versions the node
// holds, *dbsync.UniqueConstraintError when the node's unique values
// collide with the server's, and *dbsync.ValueError when a local row holds
// a value that cannot be sent, such as text that is not valid UTF-8 (the
// application rewrites or deletes the row it names, then pushes again;
// nothing is sent until then). After a network error (dbsync.ErrNetwork)
// the outcome is unknown: the next Push resends exactly the same operations
// with the same push id, and the server applies them at most once.
func (c *Client) Push(ctx context.Context) (*PushResult, error) {
	if err := c.mu.lock(ctx); err != nil {
		return nil, err
	}
	defer c.mu.unlock()
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
	var attempt models.PushAttempt
	var ops []models.Operation
	var body []byte
	var loaded map[string]map[string]json.RawMessage // rows read by the compression
	err = c.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		err := tx.NewSelect().Model(&attempt).Limit(1).Scan(ctx)
		switch {
		case err == nil:
			// A push whose answer never came: resend exactly its operations.
			ops, err = oplog.PendingUpTo(ctx, tx, attempt.MaxOrder)
			if err != nil {
				return err
			}
		case isNoRows(err):
			// Every pending entry, D1's head entries (negative orders)
			// included: they re-create parents the children need.
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
			if len(ops) == 0 {
				return nil
			}
			latest, err := latestVersion(ctx, tx)
			if err != nil {
				return err
			}
			attempt = models.PushAttempt{
				PushID:      uuid.NewString(),
				MaxOrder:    ops[len(ops)-1].Order,
				BaseVersion: versionPtr(latest),
				Created:     c.cfg.Now().UTC(),
			}
			if _, err := tx.NewInsert().Model(&attempt).Exec(ctx); err != nil {
				return fmt.Errorf("record push attempt: %w", err)
			}
		default:
			return fmt.Errorf("read push attempt: %w", err)
		}
		body, err = c.pushBody(ctx, tx, &attempt, ops, loaded)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("client: push: %w", err)
	}
	if len(ops) == 0 {
		return &PushResult{Empty: true}, nil
	}
	res = &PushResult{Operations: len(ops), Bytes: len(body)}
	out, err := c.tr.Push(ctx, c.call(node), body)
	if err != nil {
		var uc *dbsync.UniqueConstraintError
		if errors.As(err, &uc) || errors.Is(err, dbsync.ErrPushRejected) {
			// A definite refusal: the server looked the push id up, did
			// not apply the push and never will (a retry with the same
			// base would be refused too). Other refusals (unauthorized,
			// schema mismatch, too large, …) come before that look-up and
			// say nothing about an earlier copy whose answer was lost: the
			// attempt stays, and a pull settles it.
			if derr := c.dropAttempt(ctx, attempt.PushID); derr != nil {
				return nil, errors.Join(err, derr)
			}
		}
		return nil, err
	}
	if out == nil || out.NewVersionID <= 0 {
		return nil, fmt.Errorf("%w: push answered without a version", dbsync.ErrBadResponse)
	}
	err = c.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		return pushed(ctx, tx, node.NodeID, &attempt, out.NewVersionID, c.cfg.Now().UTC())
	})
	if err != nil {
		return nil, fmt.Errorf("client: record push: %w", err)
	}
	res.VersionID, res.Duplicate = out.NewVersionID, out.Duplicate
	c.log.InfoContext(ctx, "client: pushed", slog.Int64("version", out.NewVersionID), slog.Int("operations", len(ops)), slog.Bool("duplicate", out.Duplicate))
	return res, nil
}

// pushed records an applied push: its operations leave the log, and the
// node now holds the version it created.
func pushed(ctx context.Context, tx bun.IDB, node int64, attempt *models.PushAttempt, version int64, now time.Time) error {
	if _, err := tx.NewDelete().Model((*models.Operation)(nil)).
		Where("version_id IS NULL").Where(`"order" <= ?`, attempt.MaxOrder).Exec(ctx); err != nil {
		return err
	}
	if _, err := tx.NewInsert().Model(&models.Version{VersionID: version, NodeID: &node, Created: now}).
		On("CONFLICT (version_id) DO NOTHING").Exec(ctx); err != nil {
		return err
	}
	_, err := tx.NewDelete().Model((*models.PushAttempt)(nil)).Where("push_id = ?", attempt.PushID).Exec(ctx)
	return err
}

func (c *Client) dropAttempt(ctx context.Context, pushID string) error {
	_, err := c.db.NewDelete().Model((*models.PushAttempt)(nil)).Where("push_id = ?", pushID).Exec(context.WithoutCancel(ctx))
	return err
}

// pushBody builds the JSON of a push: the operations and the current rows
// of inserts and updates, from loaded when it has them, else read now.
func (c *Client) pushBody(ctx context.Context, tx bun.IDB, attempt *models.PushAttempt, ops []models.Operation, loaded map[string]map[string]json.RawMessage) ([]byte, error) {
	wire := oplog.ToWire(c.reg, ops)
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
	req := &protocol.PushRequest{
		PushID:          attempt.PushID,
		LatestVersionID: attempt.BaseVersion,
		Operations:      wire,
		Payload:         payload,
	}
	return req.MarshalJSON()
}

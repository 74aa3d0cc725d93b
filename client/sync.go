package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
)

// SyncResult describes a Sync.
type SyncResult struct {
	// Pushes and Pulls made, in order.
	Pushes []*PushResult
	Pulls  []*PullResult
	// VersionID is the server version the node holds at the end.
	VersionID int64
}

// Sync brings the node and the server level: it pushes the node's
// changes; when the server has versions the node lacks, it pulls and merges
// them and pushes again, with at most Config.MaxSyncRounds pulls. With
// nothing to push it pulls once. It stops at the first other error.
func (c *Client) Sync(ctx context.Context) (*SyncResult, error) {
	if err := c.mu.lock(ctx); err != nil {
		return nil, err
	}
	defer c.mu.unlock()
	res := &SyncResult{}
	pulls := 0
	// Every iteration pulls, returns, or settles the push attempt (a
	// duplicate or a refused resend happens once per attempt): it ends.
	for {
		resend, err := c.db.NewSelect().Model((*models.PushAttempt)(nil)).Exists(ctx)
		if err != nil {
			return res, fmt.Errorf("client: read push attempt: %w", err)
		}
		pr, err := c.push(ctx)
		var uc *dbsync.UniqueConstraintError
		switch {
		case err == nil && pr.Duplicate:
			res.Pushes = append(res.Pushes, pr)
			continue // the settled push may not have held everything
		case err == nil && !pr.Empty:
			res.Pushes = append(res.Pushes, pr)
			res.VersionID = pr.VersionID
			return res, nil
		case err == nil && pulls > 0:
			return res, nil
		case resend && !errors.Is(err, dbsync.ErrPullNeeded) && (errors.Is(err, dbsync.ErrPushRejected) || errors.As(err, &uc)):
			// The server refused a resent push for good and push dropped
			// the attempt: a pull whose answer was lost had it abandoned,
			// or its operations, recorded before the node's later changes,
			// no longer fit the rows as they are now (a row moved under a
			// parent created since). Push everything again under a new
			// push id; a refusal of that one is final.
			continue
		case err == nil || errors.Is(err, dbsync.ErrPullNeeded):
			if pulls == c.cfg.MaxSyncRounds {
				return res, fmt.Errorf("%w: still behind the server after %d pulls (other nodes push faster)", dbsync.ErrPullNeeded, pulls)
			}
			pl, err := c.pull(ctx)
			if err != nil {
				return res, err
			}
			pulls++
			res.Pulls = append(res.Pulls, pl)
			res.VersionID = pl.VersionID
		default:
			return res, err
		}
	}
}

// Pending returns the node's unpushed operations after compression (at
// most one per row), oldest first (python-sync-db's unsynched_objects).
// The operations of an unanswered push stay as they were sent.
func (c *Client) Pending(ctx context.Context) ([]dbsync.Operation, error) {
	var ops []models.Operation
	err := c.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		after := int64(math.MinInt64)
		var attempt models.PushAttempt
		switch err := tx.NewSelect().Model(&attempt).Limit(1).Scan(ctx); {
		case err == nil:
			after = attempt.MaxOrder
		case !isNoRows(err):
			return err
		}
		if _, err := oplog.Compress(ctx, tx, c.reg, after); err != nil {
			return err
		}
		var err error
		ops, err = oplog.Pending(ctx, tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return oplog.ToWire(c.reg, ops), nil
}

// IsSynced reports whether a model row (pointer to a tracked model) has no
// unpushed change (python-sync-db's is_synched).
func (c *Client) IsSynced(ctx context.Context, model any) (bool, error) {
	t := c.reg.TableOf(model)
	if t == nil {
		return false, fmt.Errorf("%w: %T is not a tracked model", dbsync.ErrUnknownTable, model)
	}
	key := t.KeyOf(reflect.Indirect(reflect.ValueOf(model)))
	n, err := c.db.NewSelect().Model((*models.Operation)(nil)).
		Where("version_id IS NULL AND content_type_id = ? AND row_id = ?", t.ContentTypeID, key).Count(ctx)
	if err != nil {
		return false, err
	}
	return n == 0, nil
}

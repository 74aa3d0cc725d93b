package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/models"
)

// Authenticate checks a signed request (see dbsync.Signed) and returns the
// node it comes from. It refuses (dbsync.ErrUnauthorized and the errors
// wrapping it) a timestamp outside Config.ClockSkew, a malformed nonce, an
// unknown node or a wrong signature (one answer for both, so node ids
// cannot be probed; the log tells them apart), and a nonce already used by
// the node (dbsync.ErrReplay). Accepted nonces are remembered in
// sync_nonces, shared by every server process on the database, for twice
// the clock skew.
func (s *Server) Authenticate(ctx context.Context, req *dbsync.Signed, signature string) (int64, error) {
	now := s.cfg.Now()
	ts := time.UnixMilli(req.Timestamp)
	if d := now.Sub(ts); d > s.cfg.ClockSkew || d < -s.cfg.ClockSkew {
		return 0, fmt.Errorf("%w: timestamp %s is outside the server's window (now %s ± %s)",
			dbsync.ErrUnauthorized, ts.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), s.cfg.ClockSkew)
	}
	if !dbsync.ValidNonce(req.Nonce) {
		return 0, fmt.Errorf("%w: malformed nonce", dbsync.ErrUnauthorized)
	}
	secret, known, err := s.secret(ctx, req.NodeID)
	if err != nil {
		return 0, err
	}
	// An unknown node gets the answer of a wrong signature, after the same
	// work, so node ids cannot be probed; only the log tells them apart.
	if ok := req.Verify(secret, signature); !ok || !known {
		msg := "server: bad signature"
		if !known {
			msg = "server: unknown node"
		}
		s.log.WarnContext(ctx, msg, slog.Int64("node", req.NodeID), slog.String("endpoint", req.Endpoint))
		return 0, fmt.Errorf("%w: signature does not match", dbsync.ErrUnauthorized)
	}
	nonce := &models.Nonce{NodeID: req.NodeID, Nonce: req.Nonce, Seen: now.UTC()}
	res, err := s.db.NewInsert().Model(nonce).On("CONFLICT DO NOTHING").Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("record nonce: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		s.log.WarnContext(ctx, "server: replayed request refused", slog.Int64("node", req.NodeID), slog.String("endpoint", req.Endpoint))
		return 0, fmt.Errorf("%w: nonce already used", dbsync.ErrReplay)
	}
	s.sweepNonces(ctx, now)
	return req.NodeID, nil
}

// secret reads a node's secret; known is false when the node is not
// registered. It is read from the database on every request, not cached: a
// node an administrator deleted from sync_nodes must be refused at once, by
// every server process.
func (s *Server) secret(ctx context.Context, node int64) (secret string, known bool, err error) {
	var n models.Node
	err = s.db.NewSelect().Model(&n).Where("node_id = ?", node).Scan(ctx)
	if isNoRows(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("load node: %w", err)
	}
	return n.Secret, true, nil
}

// sweepNonces forgets nonces older than twice the clock skew (a request
// that old is refused by its timestamp anyway), at most once a minute.
func (s *Server) sweepNonces(ctx context.Context, now time.Time) {
	s.sweepMu.Lock()
	if now.Sub(s.lastSweep) < time.Minute {
		s.sweepMu.Unlock()
		return
	}
	s.lastSweep = now
	s.sweepMu.Unlock()
	cutoff := now.Add(-2 * s.cfg.ClockSkew).UTC()
	if _, err := s.db.NewDelete().Model((*models.Nonce)(nil)).Where("seen < ?", cutoff).Exec(ctx); err != nil {
		s.log.WarnContext(ctx, "server: sweeping nonces failed", slog.String("error", err.Error()))
	}
}

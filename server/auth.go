package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/signing"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// nonces are the nonces accepted from nodes (models.Nonce).
var nonces = store.Nonces{Table: "sync_nonces", Sender: "node_id"}

// Authenticate checks a signed request (see protocol.Signed) and returns the
// node it comes from. It refuses (dbsync.ErrUnauthorized and the errors
// wrapping it) a timestamp outside Config.ClockSkew, a malformed nonce, an
// unknown node or a wrong signature (one answer for both, so node ids
// cannot be probed; the log tells them apart), and a nonce already used by
// the node (dbsync.ErrReplay). Accepted nonces are remembered in sync_nonces, shared
// by every server process on the database, for twice the clock skew.
//
// It is Precheck then Prechecked.Verify: a server reading a body from the
// network calls the two itself, to refuse what it can before the body.
func (s *Server) Authenticate(ctx context.Context, req *protocol.Signed, signature string) (int64, error) {
	p, err := s.Precheck(ctx, req)
	if err != nil {
		return 0, err
	}
	return p.Verify(ctx, signature)
}

// Prechecked is a signed request whose headers passed Precheck; its
// signature is not verified yet.
type Prechecked struct {
	s      *Server
	req    *protocol.Signed
	secret string
	known  bool // the node is registered
}

// Precheck checks everything of a signed request that does not need its
// body (req.Body and req.BodyHash are not read): the nonce's form, the
// timestamp window, and that the node has not used the nonce yet. A
// timestamp outside the window is refused with the server's time
// (*dbsync.ClockError), signed for a registered node and random digits
// for another, answers alike. An unknown node is otherwise refused only by
// Verify, with the answer of a wrong signature and after the same work
// (the body read, the HMAC computed), so node ids cannot be probed. It
// records nothing: a nonce is recorded only by Verify, once the signature
// holds, so that unsigned requests cannot spend a node's nonces.
func (s *Server) Precheck(ctx context.Context, req *protocol.Signed) (*Prechecked, error) {
	if !protocol.ValidNonce(req.Nonce) {
		return nil, fmt.Errorf("%w: malformed nonce", dbsync.ErrUnauthorized)
	}
	inWindow := s.inWindow(req)
	// A request's first statements: tried again on another connection
	// when the pool's is found lost (dialect.RetryLost), as after
	// PostgreSQL restarted, before the request writes anything.
	var secret string
	var known, used bool
	err := dialect.RetryLost(ctx, s.db, func() error {
		var err error
		if secret, known, err = s.secret(ctx, req.NodeID); err != nil || !inWindow {
			return err
		}
		used, err = nonces.Used(ctx, s.db, req.NodeID, req.Nonce)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !inWindow {
		return nil, s.clockError(req, secret, known)
	}
	if used {
		s.log.WarnContext(ctx, "server: replayed request refused", slog.Int64("node", req.NodeID), slog.String("endpoint", req.Endpoint))
		return nil, fmt.Errorf("%w: nonce already used", dbsync.ErrReplay)
	}
	return &Prechecked{s: s, req: req, secret: secret, known: known}, nil
}

// Closes returns when the request's timestamp window closes, on the
// process's clock (time.Now; Config.Now may differ): a request whose body
// is still arriving then is refused by Verify, so its body need not be
// read further.
func (p *Prechecked) Closes() time.Time {
	return time.Now().Add(time.UnixMilli(p.req.Timestamp).Add(p.s.cfg.ClockSkew).Sub(p.s.cfg.Now()))
}

// Verify checks the request's signature over its body (Body, or BodyHash
// when set, filled in after Precheck), records its nonce and returns the
// node. The whole request must arrive within the clock skew of its
// timestamp; a nonce another request recorded since Precheck is a replay.
func (p *Prechecked) Verify(ctx context.Context, signature string) (int64, error) {
	s, req := p.s, p.req
	if ok := req.Verify(p.secret, signature); !ok || !p.known {
		msg := "server: bad signature"
		if !p.known {
			msg = "server: unknown node"
		}
		s.log.WarnContext(ctx, msg, slog.Int64("node", req.NodeID), slog.String("endpoint", req.Endpoint))
		return 0, fmt.Errorf("%w: signature does not match", dbsync.ErrUnauthorized)
	}
	// Checked again: the body may have taken long, and a nonce is
	// remembered only for twice the skew. The timestamp was in the window
	// at Precheck: the node's clock is right, its body slow (no server
	// time: a node would set its clock off by the time the body took).
	if !s.inWindow(req) {
		return 0, fmt.Errorf("%w: the request took longer than the server's window (%s) to arrive", dbsync.ErrUnauthorized, s.cfg.ClockSkew)
	}
	now := s.cfg.Now()
	recorded, err := nonces.Record(ctx, s.db, req.NodeID, req.Nonce, now)
	if err != nil {
		return 0, err
	}
	if !recorded {
		s.log.WarnContext(ctx, "server: replayed request refused", slog.Int64("node", req.NodeID), slog.String("endpoint", req.Endpoint))
		return 0, fmt.Errorf("%w: nonce already used", dbsync.ErrReplay)
	}
	s.sweepNonces(ctx, now)
	// The node's liveness is not refreshed here but by the request served
	// (noteSeen): a request refused afterwards for its schema must not
	// keep the node live (trim.go).
	return req.NodeID, nil
}

// inWindow reports whether a request's timestamp is within the window.
func (s *Server) inWindow(req *protocol.Signed) bool {
	return signing.InWindow(s.cfg.Now(), req.Timestamp, s.cfg.ClockSkew)
}

// clockError refuses a request whose timestamp is outside the window
// with the server's time and a random salt, signed for the node with its
// secret (random digits for a node not registered, known false: with the
// salt, no two answers match, and the answer does not tell registered
// nodes apart).
func (s *Server) clockError(req *protocol.Signed, secret string, known bool) error {
	now := s.cfg.Now()
	salt := protocol.NewNonce()
	sig := protocol.NewSecret() // 64 random hex digits, the form of a signature
	if known {
		sig = protocol.ClockSignature(secret, req.NodeID, req.Nonce, now.UnixMilli(), salt)
	}
	return &dbsync.ClockError{ServerTime: now, Salt: salt, Signature: sig,
		Err: fmt.Errorf("%w: timestamp %s is outside the server's window (now %s ± %s): the node's clock is off",
			dbsync.ErrUnauthorized, time.UnixMilli(req.Timestamp).UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), s.cfg.ClockSkew)}
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
	if err := nonces.Sweep(ctx, s.db, cutoff); err != nil {
		s.log.WarnContext(ctx, "server: sweeping nonces failed", slog.String("error", err.Error()))
	}
}

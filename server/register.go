package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/models"
)

// Register creates a node and returns its id and secret. The secret is 32
// bytes from crypto/rand; the node signs every later request with it.
// Config.AuthorizeRegister may refuse (dbsync.ErrForbidden).
func (s *Server) Register(ctx context.Context, req *dbsync.RegisterRequest) (resp *dbsync.RegisterResponse, err error) {
	start := time.Now()
	ev := dbsync.Event{Op: "register"}
	defer func() { ev.Err = err; s.emit(ctx, ev, start) }()
	if req == nil {
		req = &dbsync.RegisterRequest{}
	}
	var userID *string
	if s.cfg.AuthorizeRegister != nil {
		uid, err := s.cfg.AuthorizeRegister(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", dbsync.ErrForbidden, err)
		}
		userID = uid
	}
	node := &models.Node{
		Registered:     s.cfg.Now().UTC().Truncate(time.Microsecond),
		RegistryUserID: userID,
		Secret:         dbsync.NewSecret(),
	}
	if _, err := s.db.NewInsert().Model(node).Returning("node_id").Exec(ctx); err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	ev.NodeID = node.NodeID
	s.log.InfoContext(ctx, "server: node registered", slog.Int64("node", node.NodeID))
	return &dbsync.RegisterResponse{Node: dbsync.Node{
		NodeID:         node.NodeID,
		Registered:     node.Registered,
		RegistryUserID: node.RegistryUserID,
		Secret:         node.Secret,
	}}, nil
}

package client

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

var sqlErrNoRows = sql.ErrNoRows

// Register registers the node with the server and stores its id and secret
// locally. extraData (any JSON value, or nil) reaches the server's
// AuthorizeRegister hook; one that is not valid JSON is
// dbsync.ErrBadRequest, and nothing is sent. Registering again creates a
// new node, which replaces the earlier one locally; the server keeps the
// earlier node, which holds its log back (server.Server.Trim) until it has
// been silent for server.Config.NodeHorizon (30 days by default). Register
// once, when IsRegistered reports false. RegisterWith also sends
// credentials.
func (c *Client) Register(ctx context.Context, extraData json.RawMessage) (*protocol.Node, error) {
	return c.RegisterWith(ctx, &RegisterOptions{ExtraData: extraData})
}

// RegisterOptions are what a registration sends to the server's
// AuthorizeRegister hook.
type RegisterOptions struct {
	// Credentials is sent as the Authorization header of the register
	// request, e.g. "Bearer " + a token of the application's login; the
	// hook sees it as server.RegisterInfo.Credentials.
	Credentials string
	// ExtraData is any JSON value, or nil. RegisterWith refuses one that
	// is not valid JSON (empty included) with dbsync.ErrBadRequest
	// before it sends anything.
	ExtraData json.RawMessage
}

// RegisterWith is Register with credentials. A server that refuses
// answers with an error wrapping dbsync.ErrForbidden; one that bounds
// registrations per address, dbsync.ErrRateLimited.
func (c *Client) RegisterWith(ctx context.Context, opts *RegisterOptions) (node *protocol.Node, err error) {
	if opts == nil {
		opts = &RegisterOptions{}
	}
	start := time.Now()
	ev := dbsync.Event{Op: "register"}
	defer func() { ev.Err = err; c.emit(ctx, ev, start) }()
	if opts.ExtraData != nil && !json.Valid(opts.ExtraData) {
		return nil, fmt.Errorf("%w: register: RegisterOptions.ExtraData is not valid JSON", dbsync.ErrBadRequest)
	}
	if err := c.lock(ctx); err != nil {
		return nil, err
	}
	defer c.mu.unlock()
	out, err := c.tr.Register(ctx, c.call(nil), opts.Credentials, &protocol.RegisterRequest{ExtraData: opts.ExtraData})
	if err != nil {
		return nil, err
	}
	if out == nil || out.Node.NodeID <= 0 || out.Node.Secret == "" {
		return nil, fmt.Errorf("%w: register answer without node id or secret", dbsync.ErrBadResponse)
	}
	// The node is the one registered last: an earlier registration's row
	// goes (whatever the ids, which a replaced server may hand out again).
	n := &models.Node{NodeID: out.Node.NodeID, Registered: out.Node.Registered, RegistryUserID: out.Node.RegistryUserID, Secret: out.Node.Secret}
	err = c.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := c.owned(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.NewDelete().Model((*models.Node)(nil)).Where("1 = 1").Exec(ctx); err != nil {
			return err
		}
		if _, err := tx.NewInsert().Model(n).Exec(ctx); err != nil {
			return err
		}
		// A new identity has pushed nothing (restored).
		if err := setOwnVersion(ctx, tx, 0); err != nil {
			return err
		}
		return c.recordSchema(ctx, tx)
	})
	if err != nil {
		return nil, fmt.Errorf("client: store node: %w", err)
	}
	c.schemaRecorded = true
	ev.NodeID = n.NodeID
	return &out.Node, nil
}

// IsRegistered reports whether the node has registered.
func (c *Client) IsRegistered(ctx context.Context) (bool, error) {
	_, err := c.node(ctx, c.db)
	if err == dbsync.ErrNotRegistered {
		return false, nil
	}
	return err == nil, err
}

// NodeID returns the node's id, or dbsync.ErrNotRegistered.
func (c *Client) NodeID(ctx context.Context) (int64, error) {
	n, err := c.node(ctx, c.db)
	if err != nil {
		return 0, err
	}
	return n.NodeID, nil
}

// UserID returns the user the server bound the node to when it registered
// (its principal: server.Registration.UserID, what scopes are evaluated
// with), "" when the server bound none, or dbsync.ErrNotRegistered.
func (c *Client) UserID(ctx context.Context) (string, error) {
	n, err := c.node(ctx, c.db)
	if err != nil {
		return "", err
	}
	if n.RegistryUserID == nil {
		return "", nil
	}
	return *n.RegistryUserID, nil
}

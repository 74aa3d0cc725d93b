package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// RegisterInfo describes a registration to the Config.AuthorizeRegister
// hook: the request and what the transport knows of the caller.
type RegisterInfo struct {
	// Request is the body of the registration (its extra_data); never nil
	// in the hook.
	Request *protocol.RegisterRequest
	// Credentials is what the caller presented to prove who it is: over
	// HTTP, the Authorization header as sent (e.g. "Bearer …"), empty
	// when there was none. dbsync does not interpret it.
	Credentials string
	// RemoteAddr is the caller's network address as the transport sees it
	// (over HTTP, the client IP a chi ClientIPFrom* middleware in front of
	// the handlers found, else the request's RemoteAddr).
	RemoteAddr string
	// Schema is the caller's schema as its request announces it, which
	// Register checks once the hook has accepted the caller (nil: not
	// checked). The hook sees it unchecked.
	Schema *SchemaHeaders
}

// SchemaHeaders is a node's schema as its requests carry it: over HTTP,
// the headers X-Dbsync-Schema (Fingerprint), X-Dbsync-Tables (Tables)
// and X-Dbsync-Nullable (Nullable); see ForSchema and CheckNullable.
type SchemaHeaders struct {
	Fingerprint, Tables, Nullable string
}

// Registration is what AuthorizeRegister accepts a node with.
type Registration struct {
	// UserID is an optional application user id stored with the node
	// (sync_nodes.registry_user_id) and returned to it: nil for none, or
	// text, valid UTF-8 without NUL, of 1 to MaxUserIDBytes bytes. Any
	// other is the hook's error: Register refuses the registration with
	// an internal error (over HTTP 500, the reason in the handlers' log)
	// and writes nothing.
	UserID *string
}

// MaxUserIDBytes bounds the length of a Registration.UserID, in bytes.
const MaxUserIDBytes = 1024

// checkUserID refuses a Registration.UserID the server cannot store and
// answer as it is, with an internal error: the register hook's.
func checkUserID(user *string) error {
	var why string
	switch {
	case user == nil:
		return nil
	case *user == "":
		why = "empty (nil is no user)"
	case !dialect.PlainText(*user):
		why = "not valid UTF-8 without NUL"
	case len(*user) > MaxUserIDBytes:
		why = fmt.Sprintf("longer than %d bytes (%d)", MaxUserIDBytes, len(*user))
	default:
		return nil
	}
	return fmt.Errorf("server: Config.AuthorizeRegister accepted a node with a Registration.UserID %s", why)
}

// OpenRegistration is an AuthorizeRegister hook that lets anyone register
// a node, without credentials. Use it only where every caller may create
// nodes: a demo, a test, or a handler your application already
// authenticates in front of. Each registration adds a row to sync_nodes.
func OpenRegistration(context.Context, *RegisterInfo) (*Registration, error) {
	return &Registration{}, nil
}

// ErrRegisterHookRequired is returned by New when Config.AuthorizeRegister
// is not set.
var ErrRegisterHookRequired = errors.New("server: Config.AuthorizeRegister is required: decide who may register nodes " +
	"(e.g. check info.Credentials), or set it to server.OpenRegistration to let anyone register")

// Register creates a node and returns its id and secret. The secret is 32
// bytes from crypto/rand; the node signs every later request with it.
// Config.AuthorizeRegister decides first; its refusal is returned wrapped
// in dbsync.ErrForbidden and writes nothing. Only then is info.Schema,
// when set, checked (ForSchema, then CheckNullable: the caller learns
// nothing of the server's schema, and builds no view of its own, before
// the hook accepts it); a mismatch is refused likewise, writing nothing.
// A Registration.UserID the hook returns that the server cannot store as
// it is, or that is empty or too long, is refused with an internal error
// (the hook's), writing nothing.
func (s *Server) Register(ctx context.Context, info *RegisterInfo) (resp *protocol.RegisterResponse, err error) {
	start := time.Now()
	ev := dbsync.Event{Op: "register"}
	defer func() { ev.Err = err; s.emit(ctx, ev, start) }()
	in := RegisterInfo{}
	if info != nil {
		in = *info
	}
	if in.Request == nil {
		in.Request = &protocol.RegisterRequest{}
	}
	reg, err := s.cfg.AuthorizeRegister(ctx, &in)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", dbsync.ErrForbidden, err)
	}
	if reg == nil {
		reg = &Registration{}
	}
	if err := checkUserID(reg.UserID); err != nil {
		return nil, err
	}
	if sh := in.Schema; sh != nil {
		view, err := s.ForSchema(sh.Fingerprint, sh.Tables)
		if err != nil {
			return nil, err
		}
		if err := view.CheckNullable(sh.Nullable); err != nil {
			return nil, err
		}
	}
	node := &models.Node{
		Registered:     s.cfg.Now().UTC().Truncate(time.Microsecond),
		RegistryUserID: reg.UserID,
		Secret:         protocol.NewSecret(),
	}
	// In a transaction, whose BEGIN is tried again on another connection
	// when the pool's is found lost (dialect.RunInTx): the insert may not.
	err = dialect.RunInTx(ctx, s.db, nil, func(ctx context.Context, tx bun.Tx) error {
		_, err := tx.NewInsert().Model(node).Returning("node_id").Exec(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	ev.NodeID = node.NodeID
	s.log.InfoContext(ctx, "server: node registered", slog.Int64("node", node.NodeID), slog.String("remote_addr", in.RemoteAddr))
	return &protocol.RegisterResponse{Node: protocol.Node{
		NodeID:         node.NodeID,
		Registered:     node.Registered,
		RegistryUserID: node.RegistryUserID,
		Secret:         node.Secret,
	}}, nil
}

package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/protocol"
)

// The models of the newest server release started on the database
// (sync_server_release). During a rolling upgrade a process of the old
// release may still run after the database was migrated and a process of
// the new one started: its deletes could cascade (ON DELETE CASCADE) into
// tables only the new models track, and those rows would go unlogged, so
// it refuses pushes (checkRelease) until it is restarted with the new
// models. It still serves reads.

// recordRelease records this process's models as the database's, unless
// the recorded ones hold tables or columns this process's lack and those
// tables all exist (a newer release runs; this process then refuses
// pushes). Recorded tables that no longer exist are a release rolled back
// with its migration: this process's models replace them.
func (s *Server) recordRelease(ctx context.Context) error {
	return s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := dialect.LockVersions(ctx, tx); err != nil {
			return err
		}
		newer, err := s.newerRelease(ctx, tx)
		if err != nil || newer {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO sync_server_release (id, fingerprint, schema) VALUES (1, ?, ?)
ON CONFLICT (id) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, schema = EXCLUDED.schema`,
			s.fingerprint, s.full.NodeSchema().String())
		return err
	})
}

// newerRelease reports whether the recorded models hold a table or column
// this process's lack, of tables that exist in the database.
func (s *Server) newerRelease(ctx context.Context, tx bun.IDB) (bool, error) {
	var text string
	err := tx.QueryRowContext(ctx, "SELECT schema FROM sync_server_release WHERE id = 1").Scan(&text)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	recorded, err := protocol.ParseNodeSchema(text)
	if err != nil {
		return false, nil // unreadable: replaced
	}
	if _, err := s.full.Project(recorded); err == nil {
		return false, nil // the same models, or fewer
	}
	names := make([]string, len(recorded.Tables))
	for i, t := range recorded.Tables {
		names[i] = t.Name
	}
	found, err := dialect.ExistingTables(ctx, tx, names)
	if err != nil {
		return false, err
	}
	return len(found) == len(names), nil
}

// checkRelease refuses a push (dbsync.ErrBusy) when the database records
// a newer release's models than this process's (recordRelease); called,
// under the version lock, only when the recorded fingerprint is not this
// process's.
func (s *Server) checkRelease(ctx context.Context, tx bun.IDB) error {
	newer, err := s.newerRelease(ctx, tx)
	if err != nil {
		return fmt.Errorf("read the recorded models: %w", err)
	}
	if !newer {
		return nil
	}
	s.log.ErrorContext(ctx, "server: a newer release's models are recorded in the database: this process refuses pushes until it is restarted with them",
		slog.String("recorded", "sync_server_release"))
	return fmt.Errorf("%w: this server process runs older models than a server release started on its database (a release being rolled out): retry", dbsync.ErrBusy)
}

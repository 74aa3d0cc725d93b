package server

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/models"
)

// Seal gathers the operations of direct writes to the server database (an
// admin tool, a job, psql: anything but a push) into a new version, so that
// nodes pull them. Push and Pull seal before they read, so calling Seal is
// only needed to make direct writes visible sooner, e.g. from a ticker. It
// returns the new version, or 0 when there was nothing to seal.
func (s *Server) Seal(ctx context.Context) (int64, error) {
	pending, err := hasPending(ctx, s.db)
	if err != nil || !pending {
		return 0, err
	}
	var version int64
	err = dialect.RunInTx(ctx, s.db, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := dialect.LockVersions(ctx, tx); err != nil {
			return err
		}
		version, err = s.seal(ctx, tx)
		return err
	})
	if err == nil && version > 0 {
		s.changes().advance(version)
	}
	return version, err
}

func hasPending(ctx context.Context, db bun.IDB) (bool, error) {
	ok, err := db.NewSelect().Model((*models.Operation)(nil)).Where("version_id IS NULL").Exists(ctx)
	if err != nil {
		return false, fmt.Errorf("look for direct writes: %w", err)
	}
	return ok, nil
}

// seal runs under the version lock. With nothing to seal, as in most
// pushes, it is one statement.
func (s *Server) seal(ctx context.Context, tx bun.Tx) (int64, error) {
	res, err := tx.NewUpdate().Model((*models.Operation)(nil)).
		Set("version_id = (SELECT COALESCE(MAX(version_id), 0) + 1 FROM sync_versions)").Where("version_id IS NULL").Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("seal direct writes: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return 0, nil
	}
	latest, err := latestVersion(ctx, tx) // the version is not created yet
	if err != nil {
		return 0, err
	}
	version := latest + 1
	if err := dialect.NotifyVersion(ctx, tx, version); err != nil {
		return 0, err
	}
	if _, err := tx.NewInsert().Model(&models.Version{VersionID: version, Created: s.cfg.Now().UTC()}).Exec(ctx); err != nil {
		return 0, fmt.Errorf("seal direct writes: %w", err)
	}
	if _, err := recordToken(ctx, tx, version); err != nil {
		return 0, err
	}
	if err := forgetAbandoned(ctx, tx, latest); err != nil {
		return 0, err
	}
	return version, nil
}

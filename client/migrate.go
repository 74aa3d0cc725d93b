package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/oplog"
)

// Migrate runs the application's schema migration fn on the node's
// database and re-installs the capture in the same transaction
// (oplog.Migrate): a SQLite table rebuild (new table, copy, drop, rename)
// drops the table's capture triggers, and a write between the rebuild and
// their return would not be captured. With Migrate none can: the triggers
// are back before fn's changes commit, and no procedure of this client
// runs meanwhile. The client's registry is completed again from the
// catalog afterwards, so a new unique index or foreign key is known to the
// next merge.
//
// fn must use the context and transaction it is given (an oplog.Guard on
// the handle lets fn's statements through). Its writes to tracked rows are
// captured and pushed like any other; the rows a rebuild copies are not
// logged. It runs with SQLite's foreign key enforcement off (a rebuilt
// table's DROP TABLE would run the ON DELETE actions of the rows
// referencing it), and a reference it leaves dangling fails Migrate with
// dbsync.ErrForeignKey (oplog.Migrate). The schema the node announces
// does not change: it is the registry's models, given to New. A release
// whose models gain columns or tables migrates, then starts a client with
// them; its next sync backfills them (README "Schema changes").
func (c *Client) Migrate(ctx context.Context, fn func(ctx context.Context, tx bun.Tx) error) error {
	if fn == nil {
		return errors.New("client: migrate: nil migration")
	}
	if err := c.lock(ctx); err != nil {
		return err
	}
	defer c.mu.unlock()
	full, err := oplog.Migrate(ctx, c.db, c.base, &oplog.InstallOptions{Client: true, Logger: c.log, Check: c.owned}, fn)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if err := c.setRegistry(ctx, full); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return nil
}

// setRegistry makes reg the client's registry, with the nullability of
// its columns in the node's database now (a migration may have changed
// it).
func (c *Client) setRegistry(ctx context.Context, reg *dbsync.Registry) error {
	nullable, err := store.Nullable(ctx, c.db, reg)
	if err != nil {
		return err
	}
	keyEq, err := store.KeyEqualities(ctx, c.db, reg)
	if err != nil {
		return err
	}
	c.regMu.Lock()
	defer c.regMu.Unlock()
	c.reg, c.nullable, c.keyEq = reg, nullable.String(), keyEq
	return nil
}

// ensureCapture re-installs the capture triggers when a tracked table
// lost them (a table rebuilt outside Migrate), before a push reads the
// log. Writes made between the loss and now were not captured: the
// warning names the tables. Called holding c.mu.
func (c *Client) ensureCapture(ctx context.Context) error {
	err := oplog.Check(ctx, c.db, c.reg, true)
	if !errors.Is(err, oplog.ErrCaptureMissing) {
		return err
	}
	c.log.WarnContext(ctx, "client: capture triggers were missing (a table rebuilt outside Client.Migrate?): re-installed; writes made since the rebuild were not captured",
		slog.Any("error", err))
	full, err := oplog.Install(ctx, c.db, c.base, &oplog.InstallOptions{Client: true, Logger: c.log, Check: c.owned})
	if err != nil {
		return fmt.Errorf("re-install capture: %w", err)
	}
	return c.setRegistry(ctx, full)
}

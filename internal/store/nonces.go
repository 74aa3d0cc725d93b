package store

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// Nonces is the one store of used request nonces (see internal/signing for
// the signatures they go with), a table of the nonces accepted from each sender: (sender,
// nonce) its primary key, seen the time of acceptance. The server keeps
// them in sync_nonces (node_id), peers in sync_lww_nonces (peer).
type Nonces struct {
	Table  string // e.g. "sync_nonces"
	Sender string // the sender's column, e.g. "node_id"
}

// Used reports whether sender has used nonce already.
func (ns Nonces) Used(ctx context.Context, db bun.IDB, sender any, nonce string) (bool, error) {
	used, err := db.NewSelect().TableExpr("?", bun.Ident(ns.Table)).
		Where("? = ? AND nonce = ?", bun.Ident(ns.Sender), sender, nonce).Exists(ctx)
	if err != nil {
		return false, fmt.Errorf("look up nonce: %w", err)
	}
	return used, nil
}

// Record records sender's nonce as seen at now; it reports false, recording
// nothing, when the nonce was recorded already (a replay).
func (ns Nonces) Record(ctx context.Context, db bun.IDB, sender any, nonce string, now time.Time) (bool, error) {
	res, err := db.ExecContext(ctx, "INSERT INTO ? (?, nonce, seen) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
		bun.Ident(ns.Table), bun.Ident(ns.Sender), sender, nonce, now.UTC())
	if err != nil {
		return false, fmt.Errorf("record nonce: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// Sweep forgets the nonces seen before cutoff.
func (ns Nonces) Sweep(ctx context.Context, db bun.IDB, cutoff time.Time) error {
	_, err := db.ExecContext(ctx, "DELETE FROM ? WHERE seen < ?", bun.Ident(ns.Table), cutoff.UTC())
	return err
}

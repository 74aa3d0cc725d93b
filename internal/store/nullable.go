package store

import (
	"context"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/protocol"
)

// Nullable returns the columns of reg's tables whose field can be nil,
// each with whether it is NOT NULL on db (protocol.Nullable). A node and
// the server compare theirs (server.Server.CheckNullable).
func Nullable(ctx context.Context, db bun.IDB, reg *dbsync.Registry) (protocol.Nullable, error) {
	out := protocol.Nullable{}
	for _, t := range reg.Tables() {
		info, err := dialect.Columns(ctx, db, t.Name)
		if err != nil {
			return nil, err
		}
		for _, c := range t.Codec().Columns {
			if ci, ok := info[c.Name]; ok && c.Nilable() {
				if out[t.Name] == nil {
					out[t.Name] = map[string]bool{}
				}
				out[t.Name][c.Name] = ci.NotNull
			}
		}
	}
	return out, nil
}

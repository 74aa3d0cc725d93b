package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dialect"
)

// NonCanonicalUUIDKey returns a key of column pk of the table qtable (its
// quoted, possibly schema-qualified, SQL name) that is not a
// UUID in canonical form (dialect.NonCanonicalUUID), or "" when there is
// none. A PostgreSQL uuid column, which holds no other form, is not
// scanned. The capture triggers refuse such keys from then on; a row
// written before with one would be recorded under its own spelling, which
// reading rows by the parsed key never finds.
func NonCanonicalUUIDKey(ctx context.Context, db bun.IDB, kind dialect.Kind, qtable, pk string) (string, error) {
	if kind == dialect.Postgres {
		uuidCol, err := PGUUIDColumn(ctx, db, qtable, pk)
		if err != nil || uuidCol {
			return "", err
		}
	}
	col := dialect.QuoteIdent(pk)
	var key string
	err := db.QueryRowContext(ctx, fmt.Sprintf("SELECT CAST(%s AS TEXT) FROM %s WHERE %s LIMIT 1",
		col, qtable, dialect.NonCanonicalUUID(kind, col))).Scan(&key)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("keys of %s: %w", qtable, err)
	}
	return key, nil
}

// PGUUIDColumn reports whether column pk of the PostgreSQL table qtable
// (its quoted, possibly schema-qualified, SQL name) has type uuid, which
// holds only keys in canonical form.
func PGUUIDColumn(ctx context.Context, db bun.IDB, qtable, pk string) (bool, error) {
	var typ string
	err := db.QueryRowContext(ctx, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = to_regclass(?) AND attname = ?",
		qtable, pk).Scan(&typ)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("type of %s.%s: %w", qtable, pk, err)
	}
	return typ == "uuid", nil
}

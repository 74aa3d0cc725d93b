package dialect

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/uptrace/bun"
)

// txConnKey is the context key of the connection of the transaction
// ApplyTx runs on PostgreSQL.
type txConnKey struct{}

// txConn is a transaction and the connection it runs on.
type txConn struct {
	tx   *sql.Tx
	conn *sql.Conn
}

// withTxConn returns ctx carrying the connection conn of tx, for Copy.
func withTxConn(ctx context.Context, tx *sql.Tx, conn *sql.Conn) context.Context {
	return context.WithValue(ctx, txConnKey{}, txConn{tx: tx, conn: conn})
}

// pgxConner is the pgx database/sql driver's connection (stdlib.Conn),
// named by its method so that this package does not register the driver.
type pgxConner interface {
	Conn() *pgx.Conn
}

// CanCopy reports whether Copy can write into db: db is a transaction
// ApplyTx runs (ctx being its function's context) on PostgreSQL through
// the pgx driver.
func CanCopy(ctx context.Context, db bun.IDB) bool {
	_, ok := copyConn(ctx, db)
	return ok
}

// copyConn returns the connection of the transaction db when ctx carries
// it (ApplyTx) and the driver is pgx.
func copyConn(ctx context.Context, db bun.IDB) (*sql.Conn, bool) {
	if ArrayArgs(db) == nil {
		return nil, false
	}
	tc, ok := ctx.Value(txConnKey{}).(txConn)
	if !ok {
		return nil, false
	}
	var tx *sql.Tx
	switch d := db.(type) {
	case bun.Tx:
		tx = d.Tx
	case *bun.Tx:
		tx = d.Tx
	}
	// Only the transaction whose connection ctx carries: another one
	// (or no transaction) runs on another connection.
	if tx == nil || tx != tc.tx {
		return nil, false
	}
	return tc.conn, true
}

// Copy writes rows into the columns cols of table (names as they are,
// unquoted) with PostgreSQL's COPY FROM STDIN in binary format, inside the transaction
// db: the values are encoded by pgx as it encodes bound arguments (Go
// strings as text, int64 and *int64 as bigint or NULL). It reports false
// and writes nothing when it cannot (CanCopy).
func Copy(ctx context.Context, db bun.IDB, table string, cols []string, rows pgx.CopyFromSource) (bool, error) {
	conn, ok := copyConn(ctx, db)
	if !ok {
		return false, nil
	}
	err := conn.Raw(func(dc any) error {
		c, ok := dc.(pgxConner)
		if !ok {
			return fmt.Errorf("copy into %s: driver connection %T is not pgx's", table, dc)
		}
		if err := inTx(c.Conn()); err != nil {
			return err
		}
		_, err := c.Conn().CopyFrom(ctx, pgx.Identifier{table}, cols, rows)
		return err
	})
	if err != nil {
		return true, fmt.Errorf("copy into %s: %w", table, err)
	}
	return true, nil
}

// inTx refuses a connection not in a transaction: a COPY there would
// commit on its own (the transaction of the context has ended).
func inTx(c *pgx.Conn) error {
	if st := c.PgConn().TxStatus(); st != 'T' {
		return fmt.Errorf("connection not in a transaction (status %q)", st)
	}
	return nil
}

package dialect_test

import (
	"bytes"
	"context"
	"net/url"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// TestBinaryArgs: a body of every byte value (NUL and invalid UTF-8
// included) bound with BinaryArgs through the transaction's database/sql handle is stored and
// read back as it is, on SQLite and on PostgreSQL whatever pgx's default
// execution mode (the simple protocol dbtest uses, and pgx's own default,
// which caches prepared statements).
func TestBinaryArgs(t *testing.T) {
	body := make([]byte, 3*256+1)
	for i := range body {
		body[i] = byte(i)
	}
	check := func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		if _, err := db.ExecContext(ctx, "CREATE TABLE bodies (id BIGINT NOT NULL, body "+blob(db)+" NOT NULL)"); err != nil {
			t.Fatal(err)
		}
		err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			for id, b := range [][]byte{body, {}, body[:1]} {
				if _, err := tx.Tx.ExecContext(ctx, "INSERT INTO bodies (id, body) VALUES ($1, $2)", dialect.BinaryArgs(tx, int64(id), b)...); err != nil {
					return err
				}
			}
			for id, want := range [][]byte{body, {}, body[:1]} {
				q := tx.NewSelect().Table("bodies").Column("body").Where("id = ?", id).String()
				var got []byte
				if err := tx.Tx.QueryRowContext(ctx, q, dialect.BinaryArgs(tx)...).Scan(&got); err != nil {
					return err
				}
				if !bytes.Equal(got, want) {
					t.Errorf("body %d read back as %d bytes %.16x…, want %d bytes %.16x…", id, len(got), got, len(want), want)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) { check(t, dbtest.Open(t, kind)) })
		if kind != dbtest.KindPostgres {
			continue
		}
		t.Run(kind+"/cache_statement", func(t *testing.T) {
			u, err := url.Parse(dbtest.PostgresSchemaURL(t))
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			q.Set("default_query_exec_mode", "cache_statement")
			u.RawQuery = q.Encode()
			db, err := dbtest.OpenPostgres(u.String())
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			check(t, db)
		})
	}
}

func blob(db bun.IDB) string {
	if dialect.MustOf(db) == dialect.Postgres {
		return "BYTEA"
	}
	return "BLOB"
}

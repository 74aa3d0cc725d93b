package dbtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
)

// TestCachedConnForgetsNotifications: a connection that listened and
// received a notification, then went back to the cache, brings none of
// it to the next pool: a listener there waits for new ones only.
func TestCachedConnForgetsNotifications(t *testing.T) {
	ctx := context.Background()
	url := PostgresSchemaURL(t)
	raw := func(t *testing.T, conn *sql.Conn, fn func(c *stdlib.Conn) error) {
		t.Helper()
		if err := conn.Raw(func(dc any) error { return fn(dc.(*cachedConn).driverConn) }); err != nil {
			t.Fatal(err)
		}
	}
	first, err := OpenPostgres(url)
	if err != nil {
		t.Fatal(err)
	}
	first.SetMaxOpenConns(1)
	conn, err := first.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw(t, conn.Conn, func(c *stdlib.Conn) error {
		for _, q := range []string{"LISTEN dbtest_stale", "NOTIFY dbtest_stale, 'old'", "SELECT 1"} {
			if _, err := c.Conn().Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
	_ = conn.Close()
	_ = first.Close() // the connection goes back to the cache

	second, err := OpenPostgres(url)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	conn, err = second.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw(t, conn.Conn, func(c *stdlib.Conn) error {
		if _, err := c.Conn().Exec(ctx, "LISTEN dbtest_stale"); err != nil {
			return err
		}
		wait, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		n, err := c.Conn().WaitForNotification(wait)
		if err == nil {
			t.Fatalf("the next pool's listener got %q, sent before it listened", n.Payload)
		}
		if !errors.Is(err, context.DeadlineExceeded) && wait.Err() == nil {
			return err
		}
		return nil
	})
}

// TestSchemaConnSettings: every connection to a test schema, new or
// handed back by the cache (after DISCARD ALL), runs without parallel
// workers and JIT, and commits without waiting for the WAL flush.
func TestSchemaConnSettings(t *testing.T) {
	want := map[string]string{"max_parallel_workers_per_gather": "0", "jit": "off", "synchronous_commit": "off"}
	for i := range 2 {
		t.Run(fmt.Sprint("pool ", i), func(t *testing.T) {
			db := Postgres(t)
			for name, v := range want {
				var got string
				if err := db.QueryRowContext(context.Background(), "SELECT current_setting(?)", name).Scan(&got); err != nil {
					t.Fatal(err)
				}
				if got != v {
					t.Errorf("%s = %s, want %s", name, got, v)
				}
			}
		})
	}
}

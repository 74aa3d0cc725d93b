package dialect_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// IsConnLost tells a connection found lost (tried again on another) from
// every other failure, wrapped or not.
func TestIsConnLost(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		lost bool
	}{
		{"nil", nil, false},
		{"admin shutdown", &pgconn.PgError{Severity: "FATAL", Code: "57P01"}, true},
		{"crash shutdown", &pgconn.PgError{Severity: "FATAL", Code: "57P02"}, true},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"wrapped", fmt.Errorf("load node: %w", &pgconn.PgError{Code: "57P01"}), true},
		{"bad conn", driver.ErrBadConn, true},
		{"conn closed", fmt.Errorf("x: %w", pgconn.ErrConnClosed), true},
		{"conn done", sql.ErrConnDone, true},
		{"unexpected EOF", fmt.Errorf("failed to receive message: %w", io.ErrUnexpectedEOF), true},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true},
		{"network timeout", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, false},
		{"cannot connect now", &pgconn.PgError{Code: "57P03"}, false},
		{"connect error", &pgconn.ConnectError{}, false},
		{"lock timeout", &pgconn.PgError{Code: "55P03"}, false},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"canceled", context.Canceled, false},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), false},
		{"other", errors.New("no such table: x"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := dialect.IsConnLost(c.err); got != c.lost {
				t.Fatalf("IsConnLost(%v) = %v, want %v", c.err, got, c.lost)
			}
		})
	}
}

// IsUnavailable: a connection lost or none to be made, not a statement's
// failure, timeout or a context canceled.
func TestIsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	_, refused := pgconn.Connect(context.Background(), "postgres://postgres@"+addr+"/x?connect_timeout=5")
	if refused == nil {
		t.Fatal("connected to a closed port")
	}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"admin shutdown", &pgconn.PgError{Severity: "FATAL", Code: "57P01"}, true},
		{"connection reset", fmt.Errorf("x: %w", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), true},
		{"bad conn", driver.ErrBadConn, true},
		{"connect error", fmt.Errorf("x: %w", &pgconn.ConnectError{}), true},
		{"connection refused", refused, true},
		{"cannot connect now", &pgconn.PgError{Code: "57P03"}, true},
		{"lock timeout", &pgconn.PgError{Code: "55P03"}, false},
		{"statement timeout", &pgconn.PgError{Code: "57014"}, false},
		{"serialization", &pgconn.PgError{Code: "40001"}, false},
		{"network timeout", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, false},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), false},
		{"other", errors.New("no such table: x"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := dialect.IsUnavailable(c.err); got != c.want {
				t.Fatalf("IsUnavailable(%v) = %v, want %v", c.err, got, c.want)
			}
		})
	}
}

// IsUnavailable: a connection the database refuses for good (no such
// database or role, a wrong password) is a server misconfigured, an
// internal error to fix, not a database down to wait for.
func TestIsUnavailableRefusedForGood(t *testing.T) {
	u, err := url.Parse(dbtest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	for name, set := range map[string]func(*url.URL){
		"no such database": func(u *url.URL) { u.Path = "/dbsync_no_such_database" },
		"no such role":     func(u *url.URL) { u.User = url.User("dbsync_no_such_role") },
	} {
		v := *u
		set(&v)
		_, err := pgconn.Connect(context.Background(), v.String())
		if err == nil {
			t.Fatalf("%s: connected", name)
		}
		if dialect.IsUnavailable(err) {
			t.Errorf("%s: IsUnavailable(%v) = true, want false", name, err)
		}
	}
}

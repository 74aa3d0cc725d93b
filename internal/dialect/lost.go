package dialect

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/uptrace/bun"
)

// IsConnLost reports whether err is a PostgreSQL connection found lost:
// its backend ended (SQLSTATE 57P01 or 57P02: PostgreSQL shut down or
// restarted, pg_terminate_backend; class 08, connection exceptions), the
// socket closed or broken under it (an unexpected EOF, a network error
// other than a timeout), or the driver's connection already closed
// (driver.ErrBadConn, pgconn.ErrConnClosed, sql.ErrConnDone). It is not a
// failure to connect (pgconn.ConnectError: the database is down), nor a
// timeout or a context ended. SQLite has no connection to lose.
func IsConnLost(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return false
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return false
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "57P01" || pg.Code == "57P02" || strings.HasPrefix(pg.Code, "08")
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return !ne.Timeout()
	}
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}

// IsUnavailable reports whether err is PostgreSQL out of reach: a
// connection found lost (IsConnLost), none to be made (pgconn.ConnectError:
// the database down, unreachable within the connect timeout, restarting,
// out of connection slots; not one it refuses for good: no such database
// or role, a wrong password), or one refused as the database starts up or
// recovers (SQLSTATE 57P03). It is not a context canceled, nor a
// statement's timeout.
func IsUnavailable(err error) bool {
	if IsConnLost(err) {
		return true
	}
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var pg *pgconn.PgError
	isPg := errors.As(err, &pg)
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		// Refused by the database itself: only for a while (starting,
		// shutting down, out of connection slots), not for good (no such
		// database or role, a wrong password: a server misconfigured).
		return !isPg || pg.Code == "57P03" || pg.Code == "57P01" || pg.Code == "57P02" || pg.Code == "53300" ||
			strings.HasPrefix(pg.Code, "08")
	}
	return isPg && pg.Code == "57P03"
}

// retryLost runs step, and again while it fails on a connection found lost
// (IsConnLost) having run nothing (ran false), up to once per connection
// db holds and once more: after PostgreSQL restarted, or a proxy dropped
// the connections, the pool still holds connections no check found dead
// (the pgx driver pings one only when it was idle for a second); each
// failure drops one (the driver closes it), and the next try takes
// another, or a new one.
func retryLost(ctx context.Context, db *bun.DB, step func() (ran bool, err error)) error {
	tries := db.Stats().OpenConnections + 1
	for {
		ran, err := step()
		if ran || tries == 0 || !IsConnLost(err) || ctx.Err() != nil {
			return err
		}
		tries--
	}
}

// RetryLost runs read, a step that writes nothing (its reads alone may be
// tried again), and again while it fails on a connection found lost
// (IsConnLost), on another connection of db each time, up to once per
// connection db holds and once more. A request's first reads go through
// it, so that the dead connections a pool holds after PostgreSQL
// restarted are dropped before the request writes anything.
func RetryLost(ctx context.Context, db *bun.DB, read func() error) error {
	return retryLost(ctx, db, func() (bool, error) { return false, read() })
}

// RunInTx is db.RunInTx, begun again on another connection when its
// BEGIN fails on a connection found lost (IsConnLost): fn has not run
// then, and nothing was written (retryLost bounds the tries). A failure
// once fn runs, its COMMIT included, is returned as it is.
func RunInTx(ctx context.Context, db *bun.DB, opts *sql.TxOptions, fn func(ctx context.Context, tx bun.Tx) error) error {
	return runInTx(ctx, db, opts, nil, fn)
}

// runInTx is RunInTx running prep, statements that write nothing (SET
// LOCAL), before fn: a connection found lost in prep is tried again too.
func runInTx(ctx context.Context, db *bun.DB, opts *sql.TxOptions, prep, fn func(ctx context.Context, tx bun.Tx) error) error {
	return retryLost(ctx, db, func() (bool, error) {
		ran := false
		err := db.RunInTx(ctx, opts, func(ctx context.Context, tx bun.Tx) error {
			if prep != nil {
				if err := prep(ctx, tx); err != nil {
					return err
				}
			}
			ran = true
			return fn(ctx, tx)
		})
		return ran, err
	})
}

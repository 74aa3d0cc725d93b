package dialect

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/uptrace/bun"
)

// The change feed on PostgreSQL: every transaction that creates a version
// sends a notification (NotifyVersion), delivered to the listeners of the
// schema's channel when it commits; a listener (Listen) holds one
// connection of its own. The channel is named after the schema (a hash of
// current_schema(), which fits the 63 bytes of an identifier), so servers
// of other schemas on the same database are not woken.
const versionChannel = "'dbsync_v_' || md5(current_schema())"

// ErrNoListen is returned by Listen when the database cannot listen: it is
// not PostgreSQL, it is not reached through the pgx database/sql driver
// (github.com/jackc/pgx/v5/stdlib), or its pool allows one connection.
var ErrNoListen = errors.New("dbsync: the database cannot deliver notifications (PostgreSQL through the pgx driver only)")

// NotifyVersionCall is the SQL call NotifyVersion makes, taking the
// version (in decimal text) as its one argument: for a statement that
// folds the notification in with other work (PostgreSQL only).
const NotifyVersionCall = "pg_notify(" + versionChannel + ", ?)"

// NotifyVersion has tx, which creates version, notify the schema's
// listeners when it commits (PostgreSQL; nothing on SQLite).
func NotifyVersion(ctx context.Context, tx bun.IDB, version int64) error {
	if MustOf(tx) != Postgres {
		return nil
	}
	if _, err := tx.ExecContext(ctx, "SELECT "+NotifyVersionCall, fmt.Sprint(version)); err != nil {
		return fmt.Errorf("notify version: %w", err)
	}
	return nil
}

// Listen takes one connection of db out of its pool and listens on the
// schema's channel until ctx ends or the connection fails. Once it listens
// it calls ready with a read of the latest version committed on the
// connection (every version after it is notified), and then onVersion
// with the payload of every notification (NotifyVersion's version, in
// decimal). ready calls read (the caller notes what it held before) and
// returns its error. After every check without a notification it calls
// ready again, so that a version whose notification never came (a pooler
// in transaction mode, such as PgBouncer's, delivers none) is handed on
// within a check; it gives the connection up when that read gets no
// answer within 10 checks (at least a second): a connection lost
// without a reset (a NAT or proxy that dropped it, a failover that moved
// the address) would else wait for notifications that never come, for
// as long as the operating system takes to notice (minutes). It always
// returns an error; the connection is closed, not returned to the pool.
func Listen(ctx context.Context, db *bun.DB, check time.Duration, ready func(read func() (int64, error)) error, onVersion func(payload string)) error {
	if MustOf(db) != Postgres {
		return ErrNoListen
	}
	if db.Stats().MaxOpenConnections == 1 {
		// The listener would hold the pool's only connection.
		return fmt.Errorf("%w: the pool allows one connection (SetMaxOpenConns)", ErrNoListen)
	}
	// Getting the connection and listening on it are bounded as the
	// pings are: a pooled connection lost without a reset would hold
	// them for minutes.
	setup, cancel := context.WithTimeout(ctx, AnswerWait(check))
	defer cancel()
	conn, err := db.Conn(setup)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(interface{ Conn() *pgx.Conn })
		if !ok {
			return ErrNoListen
		}
		err := listen(ctx, setup, sc.Conn(), check, ready, onVersion)
		// The connection holds a LISTEN: never give it back to the pool.
		return fmt.Errorf("%w: %w", driver.ErrBadConn, err)
	})
}

// AnswerWait is how long the change feed waits for the database to answer one
// of its statements, checking every check: ten checks, at least a second.
func AnswerWait(check time.Duration) time.Duration { return max(10*check, time.Second) }

// listen listens on pc until ctx ends or the connection fails; its first
// statements run under setup.
func listen(ctx, setup context.Context, pc *pgx.Conn, check time.Duration, ready func(func() (int64, error)) error, onVersion func(string)) error {
	var channel string
	if err := pc.QueryRow(setup, "SELECT "+versionChannel).Scan(&channel); err != nil {
		return fmt.Errorf("listen: channel name: %w", err)
	}
	// Named in pg_stat_activity: "dbsync feed <channel>".
	if _, err := pc.Exec(setup, "SELECT set_config('application_name', $1, false)", "dbsync feed "+channel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if _, err := pc.Exec(setup, "LISTEN "+QuoteIdent(channel)); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if err := ready(func() (int64, error) { return latestOn(setup, pc) }); err != nil {
		return fmt.Errorf("listen: latest version: %w", err)
	}
	for {
		wait, cancel := context.WithTimeout(ctx, check)
		n, err := pc.WaitForNotification(wait)
		cancel()
		if err != nil && ctx.Err() == nil && wait.Err() != nil {
			// No notification within check: is the connection alive?
			// (A read cut by its deadline leaves it usable.) Asked
			// for the latest version rather than pinged, it also
			// hands on a version whose notification never came (a
			// pooler in transaction mode delivers none): waiters are
			// woken within a check, not told nothing changed.
			ping, cancel := context.WithTimeout(ctx, AnswerWait(check))
			err = ready(func() (int64, error) { return latestOn(ping, pc) })
			cancel()
			if err != nil {
				return fmt.Errorf("listen: the connection does not answer: %w", err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		if n.Channel == channel {
			onVersion(n.Payload)
		}
	}
}

// latestOn reads the latest version on pc (0 when there is none).
func latestOn(ctx context.Context, pc *pgx.Conn) (int64, error) {
	var latest *int64
	if err := pc.QueryRow(ctx, "SELECT MAX(version_id) FROM sync_versions").Scan(&latest); err != nil {
		return 0, err
	}
	if latest == nil {
		return 0, nil
	}
	return *latest, nil
}

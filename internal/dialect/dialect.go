// Package dialect is the one place where dbsync's SQL differs between
// SQLite and PostgreSQL: capture switches, locks, constraint deferral,
// catalog queries and the fastest way to write many rows (ArrayArgs). The
// rest of the module asks this package instead of testing the dialect
// itself.
package dialect

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"github.com/uptrace/bun/schema"
)

// Kind is a supported database.
type Kind int

// Supported databases.
const (
	SQLite Kind = iota + 1
	Postgres
)

// ErrUnsupported is returned for a database other than SQLite or PostgreSQL.
var ErrUnsupported = errors.New("dbsync: unsupported database (want sqlite or pg)")

// Of returns the kind of db.
func Of(db bun.IDB) (Kind, error) { return OfDialect(db.Dialect()) }

// OfDialect returns the kind of database bun's dialect d speaks.
func OfDialect(d schema.Dialect) (Kind, error) {
	switch d.Name() {
	case dialect.SQLite:
		return SQLite, nil
	case dialect.PG:
		return Postgres, nil
	}
	return 0, fmt.Errorf("%w: %s", ErrUnsupported, d.Name())
}

// MustOf is Of for a database already checked.
func MustOf(db bun.IDB) Kind {
	k, err := Of(db)
	if err != nil {
		panic(err)
	}
	return k
}

// pushLockClass is the first half of the pg_advisory_xact_lock key that
// serializes version allocation ("dbsV"); the second half is a hash of the
// schema holding the tables, so servers of other schemas on the same
// database do not wait for each other.
const pushLockClass = 0x6462_7356

// LogLockWait is how long LockLog waits, by default, for the transactions
// writing the log.
const LogLockWait = 10 * time.Second

// LockLog waits, until the end of tx, for the transactions writing the
// log (the capture triggers' inserts) to end and keeps new ones out:
// every operation logged so far is then committed, and numbered below any
// logged later. On PostgreSQL, whose sequence numbers operations as they
// are written, not as they commit, it locks sync_operations in SHARE mode,
// waiting at most wait (LogLockWait when 0; an error wrapping ErrLogBusy
// beyond); on SQLite, whose single writer numbers them in commit order, it
// does nothing. A writer holding the lock waits for nothing tx holds (tx has
// written nothing yet), so no deadlock comes of it.
func LockLog(ctx context.Context, tx bun.IDB, wait time.Duration) error {
	if MustOf(tx) != Postgres {
		return nil
	}
	if wait <= 0 {
		wait = LogLockWait
	}
	var saved string // the setting tx had: restored after the lock
	if err := tx.QueryRowContext(ctx, "SELECT current_setting('lock_timeout')").Scan(&saved); err != nil {
		return fmt.Errorf("lock the log: %w", err)
	}
	for _, q := range []string{
		fmt.Sprintf("SET LOCAL lock_timeout = %d", max(1, wait.Milliseconds())), // 0 would wait for ever
		"LOCK TABLE sync_operations IN SHARE MODE",
		"SELECT set_config('lock_timeout', " + QuoteLiteral(saved) + ", true)",
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			if strings.Contains(err.Error(), "SQLSTATE 55P03") {
				return fmt.Errorf("%w: a transaction writing tracked tables stayed open more than %s", ErrLogBusy, wait)
			}
			return fmt.Errorf("lock the log: %w", err)
		}
	}
	return nil
}

// LockForMerge keeps, until the end of tx, every other writer of the
// node's tracked tables out while a pull or a reset merges the server's
// rows with the node's pending changes. On PostgreSQL (READ COMMITTED), a
// local write committed after the merge read the log would otherwise be
// unseen by it (a pending change it does not resolve), and overwritten by
// the server's row, its log entry then pushing the server's values. It
// locks sync_operations in SHARE ROW EXCLUSIVE mode (which conflicts with
// writers, with LockLog's SHARE and with itself) and tables in EXCLUSIVE
// mode (which conflicts with row locks too: a transaction that locked a
// row with SELECT ... FOR UPDATE, one the merge may write, ends first),
// waiting at most wait in all as LockLog does (an error wrapping
// ErrLogBusy beyond; LogLockWait when 0). On SQLite, whose immediate
// transactions already hold the single write lock, it does nothing.
//
// The locks are taken all or none: an application's transaction may hold
// one of them (a statement on a tracked table that logged nothing, a row
// lock) and then ask for another (its next write logs), and a pull
// holding sync_operations while it waits for the tables would deadlock
// with it, PostgreSQL then failing one of the two with SQLSTATE 40P01.
// Each attempt waits for them a short while (mergeLockStep, below
// deadlock_timeout: no deadlock is ever detected), then gives all back,
// in a savepoint, for the application to go on, and tries again.
func LockForMerge(ctx context.Context, tx bun.IDB, tables []string, wait time.Duration) error {
	if MustOf(tx) != Postgres {
		return nil
	}
	if wait <= 0 {
		wait = LogLockWait
	}
	lock := []string{"LOCK TABLE sync_operations IN SHARE ROW EXCLUSIVE MODE"}
	if len(tables) > 0 {
		q := "LOCK TABLE "
		for i, t := range tables {
			if i > 0 {
				q += ", "
			}
			q += QuoteIdent(t)
		}
		lock = append(lock, q+" IN EXCLUSIVE MODE")
	}
	var saved string // the setting tx had: restored after the lock
	var deadlockMS int64
	if err := tx.QueryRowContext(ctx, "SELECT current_setting('lock_timeout'), (SELECT setting::bigint FROM pg_settings WHERE name = 'deadlock_timeout')").
		Scan(&saved, &deadlockMS); err != nil {
		return fmt.Errorf("lock the log: %w", err)
	}
	step := min(mergeLockStep, time.Duration(deadlockMS)*time.Millisecond/2)
	deadline := time.Now().Add(wait)
	exec := func(q string) error {
		_, err := tx.ExecContext(ctx, q)
		return err
	}
	for {
		left := time.Until(deadline)
		err := exec("SAVEPOINT dbsync_merge_lock")
		if err == nil {
			err = exec(fmt.Sprintf("SET LOCAL lock_timeout = %d", max(1, min(step, left).Milliseconds())))
		}
		for _, q := range lock {
			if err == nil {
				err = exec(q)
			}
		}
		if err == nil {
			if err = exec("RELEASE SAVEPOINT dbsync_merge_lock"); err == nil {
				err = exec("SELECT set_config('lock_timeout', " + QuoteLiteral(saved) + ", true)")
			}
			if err != nil {
				return fmt.Errorf("lock the log: %w", err)
			}
			return nil
		}
		msg := err.Error()
		if !strings.Contains(msg, "SQLSTATE 55P03") && !strings.Contains(msg, "SQLSTATE 40P01") {
			return fmt.Errorf("lock the log: %w", err)
		}
		// Every lock taken in the savepoint goes with it.
		if rerr := exec("ROLLBACK TO SAVEPOINT dbsync_merge_lock"); rerr != nil {
			return fmt.Errorf("lock the log: %w", rerr)
		}
		if time.Until(deadline) <= 0 {
			return fmt.Errorf("%w: a transaction writing tracked tables stayed open more than %s", ErrLogBusy, wait)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lock the log: %w", ctx.Err())
		case <-time.After(min(10*time.Millisecond, time.Until(deadline))):
		}
	}
}

// mergeLockStep bounds an attempt of LockForMerge to take its locks, and
// so the wait of an application's statement that asks for a lock an
// attempt holds.
const mergeLockStep = 100 * time.Millisecond

// ErrLogBusy: LockLog waited too long for a transaction writing the log.
// The client wraps it in dbsync.ErrLogBusy, which says that the log is
// busy: its own text only says where.
var ErrLogBusy = errors.New("lock the log")

// LockVersions takes the lock that serializes version allocation until the
// end of tx. On PostgreSQL it is a transaction advisory lock shared by every
// server process on the database and schema (current_schema(), where the
// sync tables are); on SQLite it is the database write lock.
func LockVersions(ctx context.Context, tx bun.IDB) error {
	switch MustOf(tx) {
	case Postgres:
		_, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(?, hashtext(current_schema()))", pushLockClass)
		return err
	default:
		// A write takes SQLite's write lock (the database is single-writer),
		// held until commit.
		_, err := tx.ExecContext(ctx, "UPDATE sync_state SET id = id WHERE id = 1")
		return err
	}
}

// stageLockClass names the advisory locks that serialize a node's staging
// of push chunks ("dbsS"); see LockStaging.
const stageLockClass = 0x6462_7353

// LockStaging serializes, until the end of tx, the transactions that stage
// push chunks for node: each reads what the node holds (its bytes, its
// push id) before it writes. Run it first in tx. On PostgreSQL it is a
// transaction advisory lock per node and schema (two nodes whose ids agree
// modulo 2^31 share one: they only wait for each other); on SQLite,
// whose writers are serialized already, it does nothing.
func LockStaging(ctx context.Context, tx bun.IDB, node int64) error {
	if MustOf(tx) != Postgres {
		return nil
	}
	_, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext(current_schema()) # ?, (? % 2147483648)::int)", stageLockClass, node)
	return err
}

// Switch is the capture switch of one of dbsync's two sync modes: the
// mode's capture triggers log a write only while it is on. Each mode has
// its own, so that the writes one mode's apply causes in the tables of the
// other (a foreign key's cascade, a trigger of the application's) are
// logged by the other.
type Switch int

const (
	// OplogSwitch is client/server sync's (package oplog's triggers):
	// sync_state.capture on SQLite, the setting dbsync.capture on
	// PostgreSQL.
	OplogSwitch Switch = iota
	// PeerSwitch is the peer mode's (package peer's triggers):
	// sync_lww_capture.capture on SQLite, the setting dbsync.peer_capture
	// on PostgreSQL.
	PeerSwitch
)

// PGSetting is the transaction-local setting holding the switch on
// PostgreSQL: 'off' while it is off, anything else (or none) while on.
func (s Switch) PGSetting() string {
	if s == PeerSwitch {
		return "dbsync.peer_capture"
	}
	return "dbsync.capture"
}

// SQLiteOn is the SQL condition, in a SQLite trigger, that the switch is
// on (the single row of its table).
func (s Switch) SQLiteOn() string {
	if s == PeerSwitch {
		return "(SELECT capture FROM sync_lww_capture WHERE id = 1) = 1"
	}
	// As it always was: oplog knows its triggers by it (those of tables
	// no longer tracked too).
	return "(SELECT capture FROM sync_state)"
}

// sqliteTable is the single-row table holding the switch on SQLite.
func (s Switch) sqliteTable() string {
	if s == PeerSwitch {
		return "sync_lww_capture"
	}
	return "sync_state"
}

// Capture switches the capture triggers of sw's mode on or off for the
// rest of a transaction. dbsync's own writes (applying a pull or a
// repair, a push on the server, a peer's changes) run with their mode's
// capture off and log their operations explicitly; the other mode's
// triggers still log what those writes cause in its tables.
//
// On PostgreSQL it sets a transaction-local setting read by the trigger
// functions (sw.PGSetting). On SQLite it writes sw's single-row table,
// which the caller must reset with ResetCapture before committing: SQLite
// has no transaction-local settings, and the database's single writer
// means no other connection sees the temporary value.
func Capture(ctx context.Context, tx bun.IDB, sw Switch, on bool) error {
	switch MustOf(tx) {
	case Postgres:
		mode := "on"
		if !on {
			mode = "off"
		}
		_, err := tx.ExecContext(ctx, "SELECT set_config(?, ?, true)", sw.PGSetting(), mode)
		return err
	default:
		_, err := tx.ExecContext(ctx, "UPDATE "+sw.sqliteTable()+" SET capture = ? WHERE id = 1", on)
		return err
	}
}

// ResetCapture switches sw's capture back on before a transaction that
// called Capture commits.
func ResetCapture(ctx context.Context, tx bun.IDB, sw Switch) error {
	return Capture(ctx, tx, sw, true)
}

// CaptureEndsWithTx reports whether Capture's setting ends with its
// transaction (PostgreSQL: a transaction-local setting), so that a
// transaction that writes no tracked row after switching capture off need
// not switch it back on (SQLite keeps it in sync_state).
func CaptureEndsWithTx(db bun.IDB) bool { return MustOf(db) == Postgres }

// DeferConstraints defers foreign key checks to the end of tx where the
// database allows it: all foreign keys on SQLite, deferrable ones on
// PostgreSQL.
func DeferConstraints(ctx context.Context, tx bun.IDB) error {
	switch MustOf(tx) {
	case Postgres:
		_, err := tx.ExecContext(ctx, "SET CONSTRAINTS ALL DEFERRED")
		return err
	default:
		_, err := tx.ExecContext(ctx, "PRAGMA defer_foreign_keys = ON")
		return err
	}
}

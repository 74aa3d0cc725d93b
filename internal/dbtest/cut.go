package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/uptrace/bun"
)

// Cutter is a PostgreSQL pool whose connections, and only they, carry an
// application_name of their own, so that a test can cut them all
// (pg_terminate_backend, from a pool of its own) at a statement it
// chooses: a server's database connections lost, as when PostgreSQL
// restarts or a proxy between them drops them.
type Cutter struct {
	// DB is the pool whose connections are cut.
	DB    *bun.DB
	t     testing.TB
	admin *bun.DB
	app   string
	match atomic.Pointer[func(query string) bool]
}

// NewCutter opens a Cutter on the schema of schemaURL (PostgresSchemaURL);
// both pools are closed at cleanup.
func NewCutter(t testing.TB, schemaURL string) *Cutter {
	t.Helper()
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	c := &Cutter{t: t, app: "dbsync_cut_" + hex.EncodeToString(rnd[:])}
	u, err := url.Parse(schemaURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", c.app) // outside the connection cache (pgconn.go)
	u.RawQuery = q.Encode()
	if c.DB, err = OpenPostgres(u.String()); err != nil {
		t.Fatal(err)
	}
	c.DB.SetMaxOpenConns(8)
	t.Cleanup(func() { _ = c.DB.Close() })
	if c.admin, err = OpenPostgres(schemaURL); err != nil {
		t.Fatal(err)
	}
	c.admin.SetMaxOpenConns(2)
	t.Cleanup(func() { _ = c.admin.Close() })
	c.DB = c.DB.WithQueryHook(cutHook{c})
	return c
}

// CutAt arms a cut: before the next statement of DB (through bun, COMMIT
// included) for which match holds, every connection of DB is cut.
func (c *Cutter) CutAt(match func(query string) bool) { c.match.Store(&match) }

// Armed reports whether a cut is armed and has not happened.
func (c *Cutter) Armed() bool { return c.match.Load() != nil }

// CutNow cuts every connection of DB and waits until they are gone.
func (c *Cutter) CutNow(ctx context.Context) error {
	_, err := c.admin.ExecContext(ctx, "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE application_name = ?", c.app)
	return err
}

// LockWaits returns how many connections of DB wait for a lock.
func (c *Cutter) LockWaits(ctx context.Context) (int, error) {
	var n int
	err := c.admin.NewRaw("SELECT count(*) FROM pg_stat_activity WHERE application_name = ? AND wait_event_type = 'Lock'", c.app).Scan(ctx, &n)
	return n, err
}

type cutHook struct{ c *Cutter }

func (h cutHook) BeforeQuery(ctx context.Context, e *bun.QueryEvent) context.Context {
	if m := h.c.match.Load(); m != nil && (*m)(e.Query) && h.c.match.CompareAndSwap(m, nil) {
		if err := h.c.CutNow(context.WithoutCancel(ctx)); err != nil {
			h.c.t.Errorf("dbtest: cut the connections: %v", err)
		}
	}
	return ctx
}

func (cutHook) AfterQuery(context.Context, *bun.QueryEvent) {}

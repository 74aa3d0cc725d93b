package dbtest

import (
	"context"
	"database/sql/driver"
	"net/url"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// Starting a PostgreSQL connection costs the server a process and about
// 30 ms of CPU on this project's machine, and every test opens pools of
// its own (one or more per database). The pools of the tests' schemas
// therefore draw their connections from one cache per test binary: a
// connection a pool closes is reset (DISCARD ALL: settings, LISTEN,
// advisory locks, temporary tables, prepared statements) and kept for
// the next pool, which sets its own search_path on it. A connection that
// broke or is inside a transaction is closed instead.

// connCache is the cache of one server URL.
type connCache struct {
	base driver.Connector
	mu   sync.Mutex
	idle []*stdlib.Conn
}

// maxCached bounds the idle connections a cache keeps.
const maxCached = 32

var (
	cachesMu sync.Mutex
	caches   = map[string]*connCache{}
)

// cacheFor returns the cache of the server dsn names (without its
// search_path and synchronous_commit), creating it.
func cacheFor(dsn string) (*connCache, error) {
	cachesMu.Lock()
	defer cachesMu.Unlock()
	if c, ok := caches[dsn]; ok {
		return c, nil
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	c := &connCache{base: stdlib.GetConnector(*cfg)}
	caches[dsn] = c
	return c, nil
}

// schemaConnector connects a pool to one schema through a cache.
type schemaConnector struct {
	cache      *connCache
	searchPath string
	syncCommit string
}

// sharedConnector returns a connector for dsn when dsn is a server URL
// whose only runtime parameters are search_path and synchronous_commit
// (what schemaURL adds); ok is false otherwise.
func sharedConnector(dsn string) (c *schemaConnector, ok bool, err error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, false, err
	}
	q := u.Query()
	c = &schemaConnector{searchPath: q.Get("search_path"), syncCommit: q.Get("synchronous_commit")}
	if c.searchPath == "" {
		return nil, false, nil
	}
	q.Del("search_path")
	q.Del("synchronous_commit")
	for k := range q {
		switch k {
		case "sslmode", "default_query_exec_mode", "max_parallel_workers_per_gather", "jit":
			// Settings of every connection of the cache (startup
			// parameters, which DISCARD ALL keeps).
		default:
			return nil, false, nil
		}
	}
	u.RawQuery = q.Encode()
	if c.cache, err = cacheFor(u.String()); err != nil {
		return nil, false, err
	}
	return c, true, nil
}

func (c *schemaConnector) Driver() driver.Driver { return stdlib.GetDefaultDriver() }

func (c *schemaConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.cache.get(ctx)
	if err != nil {
		return nil, err
	}
	pc := conn.Conn()
	if _, err := pc.Exec(ctx, "SELECT set_config('search_path', $1, false)", c.searchPath); err != nil {
		_ = conn.Close()
		return nil, err
	}
	if c.syncCommit != "" {
		if _, err := pc.Exec(ctx, "SELECT set_config('synchronous_commit', $1, false)", c.syncCommit); err != nil {
			_ = conn.Close()
			return nil, err
		}
	}
	return &cachedConn{driverConn: conn, cache: c.cache}, nil
}

func (c *connCache) get(ctx context.Context) (*stdlib.Conn, error) {
	c.mu.Lock()
	if n := len(c.idle); n > 0 {
		conn := c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return conn, nil
	}
	c.mu.Unlock()
	dc, err := c.base.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return dc.(*stdlib.Conn), nil
}

// put resets conn and keeps it, or closes it.
func (c *connCache) put(conn *stdlib.Conn) error {
	pc := conn.Conn()
	if pc.IsClosed() || pc.PgConn().TxStatus() != 'I' {
		return conn.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := pc.Exec(ctx, "DISCARD ALL"); err != nil {
		return conn.Close()
	}
	// DISCARD ALL ends LISTEN, but notifications the connection received
	// before stay in pgx's buffer, and the next pool's listener would
	// read them: a test's server on a pooled schema (same name, same
	// channel) got the last test's "version 2" and answered a watch with
	// a version its database did not hold. Drained here (a done context
	// returns what is buffered, then an error, without I/O).
	done, stop := context.WithCancel(context.Background())
	stop()
	for {
		if _, err := pc.WaitForNotification(done); err != nil {
			break
		}
	}
	c.mu.Lock()
	if len(c.idle) < maxCached {
		c.idle = append(c.idle, conn)
		conn = nil
	}
	c.mu.Unlock()
	if conn != nil {
		return conn.Close()
	}
	return nil
}

// cachedConn is a driver connection whose Close gives it back to its
// cache. It is the pgx driver's connection otherwise (Conn() included,
// for COPY and LISTEN).
type cachedConn struct {
	*driverConn
	cache *connCache
}

// driverConn names the embedded field apart from the method Conn it
// promotes.
type driverConn = stdlib.Conn

func (c *cachedConn) Close() error { return c.cache.put(c.driverConn) }

package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/server"
)

// blackHole is a TCP proxy to a PostgreSQL server whose connections can
// be made, one by one, to lose every byte from then on, both ways,
// without a reset: what a NAT or a proxy that dropped a connection does
// to it.
type blackHole struct {
	ln    net.Listener
	mu    sync.Mutex
	flows map[int]*atomic.Bool // by the port of the connection to the server (pg_stat_activity.client_port): its bytes are dropped
}

func newBlackHole(t *testing.T, target string) *blackHole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blackHole{ln: ln, flows: map[int]*atomic.Bool{}}
	var wg sync.WaitGroup
	var conns []net.Conn
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			dropped := new(atomic.Bool)
			p.mu.Lock()
			p.flows[s.LocalAddr().(*net.TCPAddr).Port] = dropped
			conns = append(conns, c, s)
			p.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if n > 0 && !dropped.Load() {
						if _, werr := dst.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						if !errors.Is(err, io.EOF) || !dropped.Load() {
							_ = dst.Close()
						}
						return
					}
				}
			}
			wg.Add(2)
			go pipe(s, c)
			go pipe(c, s)
		}
	}()
	return p
}

// drop has the connection from port lose its bytes; false when no
// connection through the proxy is from port.
func (p *blackHole) drop(port int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, ok := p.flows[port]
	if ok {
		f.Store(true)
	}
	return ok
}

// TestWatchListenerSilentLoss: on PostgreSQL, the connection a Server
// listens on is lost without a reset (every byte dropped, both ways):
// the notification of a version committed by another server process
// never arrives, and nothing tells the listener. It used to wait on it
// for as long as the operating system took to notice (minutes), its
// waiters told nothing changed; it now pings the database when no
// notification came within Config.WatchPoll, gives a connection that
// does not answer up, listens again and wakes its waiters. So too when
// every connection of the server's pool is lost so (a NAT that dropped
// them all): the feed's polls and its new listener, which take them from
// the pool, give a connection that does not answer up as its pings do.
// (SQLite servers do not listen.)
func TestWatchListenerSilentLoss(t *testing.T) {
	ctx := context.Background()
	u := dbtest.PostgresSchemaURL(t)
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newBlackHole(t, pu.Host)
	pu.Host = proxy.ln.Addr().String()
	q := pu.Query()
	q.Set("application_name", "dbsync_blackhole") // a pool of its own, outside the tests' connection cache
	pu.RawQuery = q.Encode()
	open := func(dsn string) *server.Server {
		db, err := dbtest.OpenPostgres(dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		srv, _ := synctest.NewHandler(t, db, testmodels.All(), &server.Config{WatchPoll: 50 * time.Millisecond})
		return srv
	}
	a := func() *server.Server {
		db, err := dbtest.OpenPostgres(u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		if err := testmodels.CreateSchema(ctx, db); err != nil {
			t.Fatal(err)
		}
		srv, _ := synctest.NewHandler(t, db, testmodels.All(), nil)
		return srv
	}()
	b := open(pu.String())
	write := func(name string) int64 {
		t.Helper()
		if _, err := a.DB().NewInsert().Model(&testmodels.List{Name: name}).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		v, err := a.Seal(ctx)
		if err != nil || v == 0 {
			t.Fatalf("seal: %d %v", v, err)
		}
		return v
	}
	woken(t, watch(t, b, 0), write("one")) // b listens, through the proxy
	for i, every := range []bool{false, true} {
		ch := watch(t, b, int64(i+1))
		// The listener's connection; then every connection of b's pool,
		// the listener's among them, as a NAT that dropped them all.
		q := "SELECT client_port FROM pg_stat_activity WHERE application_name = 'dbsync feed dbsync_v_' || md5(current_schema())"
		if every {
			q += " OR application_name = 'dbsync_blackhole'"
		}
		var ports []int
		if err := a.DB().NewRaw(q).Scan(ctx, &ports); err != nil {
			t.Fatal(err)
		}
		for _, port := range ports {
			if !proxy.drop(port) {
				t.Fatalf("b's connection from port %d does not go through the proxy", port)
			}
		}
		woken(t, ch, write(fmt.Sprint("after ", i)))
	}
}

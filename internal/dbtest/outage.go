package dbtest

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"

	"github.com/uptrace/bun"
)

// Outage is a PostgreSQL pool reaching the database through a TCP proxy
// of the test's that can be taken down and brought back: a database
// down or restarting as its clients see it (connections reset, new ones
// refused), without touching the PostgreSQL server the other tests use.
type Outage struct {
	// DB is the pool through the proxy.
	DB *bun.DB

	t      testing.TB
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
}

// NewOutage opens an Outage on the schema of schemaURL (PostgresSchemaURL),
// its proxy up; the pool and the proxy are closed at cleanup.
func NewOutage(t testing.TB, schemaURL string) *Outage {
	t.Helper()
	u, err := url.Parse(schemaURL)
	if err != nil {
		t.Fatal(err)
	}
	o := &Outage{t: t, target: u.Host, conns: map[net.Conn]struct{}{}}
	if o.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	o.addr = o.ln.Addr().String()
	go o.accept(o.ln)
	t.Cleanup(o.Down)
	u.Host = o.addr
	if o.DB, err = OpenPostgres(u.String()); err != nil { // a host of its own: outside the connection cache
		t.Fatal(err)
	}
	o.DB.SetMaxOpenConns(8)
	t.Cleanup(func() { _ = o.DB.Close() })
	return o
}

// Down resets every connection through the proxy and refuses new ones.
func (o *Outage) Down() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ln != nil {
		_ = o.ln.Close()
		o.ln = nil
	}
	for c := range o.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // a reset, as from a host gone
		}
		_ = c.Close()
		delete(o.conns, c)
	}
}

// Up accepts connections again, on the same address.
func (o *Outage) Up() {
	o.t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ln != nil {
		return
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		o.t.Fatalf("dbtest: the outage's proxy listens again on %s: %v", o.addr, err)
	}
	o.ln = ln
	go o.accept(ln)
}

func (o *Outage) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go o.forward(c)
	}
}

// forward joins client connection c with a new one to the database.
func (o *Outage) forward(c net.Conn) {
	s, err := net.Dial("tcp", o.target)
	if err != nil {
		_ = c.Close()
		return
	}
	if !o.track(c, s) {
		_ = c.Close()
		_ = s.Close()
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go pipe(s, c)
	go pipe(c, s)
	<-done
	<-done
	o.mu.Lock()
	delete(o.conns, c)
	delete(o.conns, s)
	o.mu.Unlock()
}

// track records c and s as the proxy's, unless it went down meanwhile.
func (o *Outage) track(c, s net.Conn) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ln == nil {
		return false
	}
	o.conns[c], o.conns[s] = struct{}{}, struct{}{}
	return true
}

package stream_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/stream"
)

var secret = []byte("correct horse battery staple")

func cfg() *stream.Config { return &stream.Config{Secret: secret} }

// newNode opens a fresh database of kind with the test models and makes
// it a peer node.
func newNode(t testing.TB, kind string) *peer.Node {
	t.Helper()
	return synctest.NewNode(t, kind, nil)
}

// pair is a combination of databases a session runs between.
type pair struct{ name, a, b string }

var pairs = []pair{
	{"sqlite-sqlite", dbtest.KindSQLite, dbtest.KindSQLite},
	{"sqlite-postgres", dbtest.KindSQLite, dbtest.KindPostgres},
}

// state is what a session may change on one side.
type state struct {
	Digest string
	Counts map[string]int
}

func stateOf(t testing.TB, n *peer.Node) state {
	t.Helper()
	ctx := context.Background()
	d, err := n.Digest(ctx)
	if err != nil {
		t.Fatalf("digest: %v", err)
	}
	s := state{Digest: d, Counts: map[string]int{}}
	for _, table := range []string{"lists", "todos", "notes"} {
		var c int
		if err := n.DB().QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&c); err != nil {
			t.Fatal(err)
		}
		s.Counts[table] = c
	}
	return s
}

func (s state) equal(o state) bool {
	if s.Digest != o.Digest || len(s.Counts) != len(o.Counts) {
		return false
	}
	for k, v := range s.Counts {
		if o.Counts[k] != v {
			return false
		}
	}
	return true
}

// converged fails the test unless the nodes hold the same data.
func converged(t testing.TB, nodes ...*peer.Node) state {
	t.Helper()
	first := stateOf(t, nodes[0])
	for _, n := range nodes[1:] {
		if s := stateOf(t, n); !s.equal(first) {
			t.Fatalf("nodes differ: %s %v vs %s %v", first.Digest[:12], first.Counts, s.Digest[:12], s.Counts)
		}
	}
	return first
}

// trackedConn records whether it was closed.
type trackedConn struct {
	io.ReadWriteCloser
	closed atomic.Bool
}

func (c *trackedConn) Close() error {
	c.closed.Store(true)
	return c.ReadWriteCloser.Close()
}

// SetReadDeadline keeps the idle timeout working through the wrapper.
func (c *trackedConn) SetReadDeadline(t time.Time) error {
	if d, ok := c.ReadWriteCloser.(interface{ SetReadDeadline(time.Time) error }); ok {
		return d.SetReadDeadline(t)
	}
	return nil
}

// result is the outcome of one end of a session.
type result struct {
	rep *stream.Report
	err error
}

// outcome is the outcome of a whole session: a is the dialing (or first)
// end.
type outcome struct {
	a, b   result
	closed [2]bool // whether each end's connection was closed
}

// transport runs one session between a and b.
type transport struct {
	name string
	run  func(t *testing.T, a, b *peer.Node, ca, cb *stream.Config) outcome
}

var transports = []transport{
	{"pipe", pipeSession},
	{"tcp", func(t *testing.T, a, b *peer.Node, ca, cb *stream.Config) outcome {
		return listenerSession(t, a, b, ca, cb, false)
	}},
	{"tls", func(t *testing.T, a, b *peer.Node, ca, cb *stream.Config) outcome {
		return listenerSession(t, a, b, ca, cb, true)
	}},
}

// pipeSession runs a session over net.Pipe (unbuffered: a write/write
// deadlock would hang).
func pipeSession(t *testing.T, a, b *peer.Node, ca, cb *stream.Config) outcome {
	t.Helper()
	c1, c2 := net.Pipe()
	return sessionOver(t, &trackedConn{ReadWriteCloser: c1}, &trackedConn{ReadWriteCloser: c2}, a, b, ca, cb)
}

func sessionOver(t *testing.T, c1, c2 *trackedConn, a, b *peer.Node, ca, cb *stream.Config) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var o outcome
	done := make(chan struct{})
	go func() {
		defer close(done)
		o.b.rep, o.b.err = stream.Sync(ctx, c2, b, cb)
	}()
	o.a.rep, o.a.err = stream.Sync(ctx, c1, a, ca)
	<-done
	o.closed = [2]bool{c1.closed.Load(), c2.closed.Load()}
	return o
}

// logCapture is a slog handler passing each record's attributes to fn.
type logCapture struct {
	fn func(msg string, attrs map[string]string)
}

func (h logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (h logCapture) Handle(_ context.Context, r slog.Record) error {
	attrs := map[string]string{}
	r.Attrs(func(a slog.Attr) bool {
		attrs[a.Key] = a.Value.String()
		return true
	})
	h.fn(r.Message, attrs)
	return nil
}
func (h logCapture) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h logCapture) WithGroup(string) slog.Handler      { return h }

// trackingListener wraps the connections it accepts.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*trackedNetConn
}

type trackedNetConn struct {
	net.Conn
	closed atomic.Bool
}

func (c *trackedNetConn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedNetConn{Conn: c}
	l.mu.Lock()
	l.conns = append(l.conns, tc)
	l.mu.Unlock()
	return tc, nil
}

// listenerSession serves b with stream.Serve on a loopback listener (TLS
// when secure) and dials it from a with stream.Sync.
func listenerSession(t *testing.T, a, b *peer.Node, ca, cb *stream.Config, secure bool) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := &trackingListener{Listener: raw}
	var ln net.Listener = tl
	var clientTLS *tls.Config
	if secure {
		serverTLS, pool := selfSigned(t)
		ln = tls.NewListener(tl, serverTLS)
		clientTLS = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
	}
	serverDone := make(chan result, 1)
	sc := *cb
	sc.Logger = slog.New(logCapture{fn: func(msg string, attrs map[string]string) {
		switch msg {
		case "stream: session done":
			var r stream.Report
			r.Peer, _ = uuid.Parse(attrs["peer"])
			_ = json.Unmarshal([]byte(attrs["received"]), &r.Received)
			_ = json.Unmarshal([]byte(attrs["sent"]), &r.Sent)
			serverDone <- result{rep: &r}
		case "stream: session failed":
			serverDone <- result{err: errors.New(attrs["error"])}
		}
	}})
	served := make(chan error, 1)
	go func() { served <- stream.Serve(ctx, ln, b, &sc) }()
	var conn net.Conn
	if secure {
		conn, err = tls.Dial("tcp", raw.Addr().String(), clientTLS)
	} else {
		conn, err = net.Dial("tcp", raw.Addr().String())
	}
	if err != nil {
		t.Fatal(err)
	}
	if secure {
		if !conn.(*tls.Conn).ConnectionState().HandshakeComplete {
			t.Fatal("TLS handshake not complete")
		}
	}
	client := &trackedNetConn{Conn: conn}
	var o outcome
	o.a.rep, o.a.err = stream.Sync(ctx, client, a, ca)
	select {
	case o.b = <-serverDone:
	case <-ctx.Done():
		t.Fatal("the server end never finished")
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if len(tl.conns) != 1 {
		t.Fatalf("server accepted %d connections, want 1", len(tl.conns))
	}
	o.closed = [2]bool{client.closed.Load(), tl.conns[0].closed.Load()}
	return o
}

// selfSigned returns a server TLS config with a fresh self-signed
// certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "dbsync stream test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS13}, pool
}

// ok fails the test unless both ends succeeded and closed their
// connections.
func (o outcome) ok(t testing.TB) outcome {
	t.Helper()
	if o.a.err != nil || o.b.err != nil {
		t.Fatalf("session failed: a: %v; b: %v", o.a.err, o.b.err)
	}
	o.mustClose(t)
	return o
}

func (o outcome) mustClose(t testing.TB) {
	t.Helper()
	if !o.closed[0] || !o.closed[1] {
		t.Fatalf("connections closed after the session: a %v, b %v; want both", o.closed[0], o.closed[1])
	}
}

// transfers checks what each end applied.
func (o outcome) transfers(t testing.TB, aReceived, bReceived int) {
	t.Helper()
	if o.a.rep.Received != aReceived || o.b.rep.Received != bReceived || o.a.rep.Sent != bReceived || o.b.rep.Sent != aReceived {
		t.Fatalf("a received %d sent %d, b received %d sent %d; want a received %d, b received %d",
			o.a.rep.Received, o.a.rep.Sent, o.b.rep.Received, o.b.rep.Sent, aReceived, bReceived)
	}
}

// version is a row version as stored in sync_lww.
type version struct {
	HLC     int64
	Node    string
	Deleted bool
}

func (v version) newer(o version) bool {
	if v.HLC != o.HLC {
		return v.HLC > o.HLC
	}
	return v.Node > o.Node
}

func versionOf(t testing.TB, n *peer.Node, table, id string) (version, bool) {
	t.Helper()
	var v version
	err := n.DB().QueryRowContext(context.Background(), "SELECT hlc, node, deleted FROM sync_lww WHERE content_type_id = ? AND row_id = ?",
		dbsync.ContentTypeID(table), id).Scan(&v.HLC, &v.Node, &v.Deleted)
	if err != nil {
		return version{}, false
	}
	return v, true
}

// cursor returns how far n has applied other's feed.
func cursor(t testing.TB, n, other *peer.Node) int64 {
	t.Helper()
	c, err := n.Cursor(context.Background(), other.ID())
	if err != nil {
		t.Fatal(err)
	}
	return c.Seq
}

// feedEnd returns the last sequence number of n's feed.
func feedEnd(t testing.TB, n *peer.Node) int64 {
	t.Helper()
	var seq int64
	if err := n.DB().QueryRowContext(context.Background(), "SELECT seq FROM sync_lww_node WHERE id = 1").Scan(&seq); err != nil {
		t.Fatal(err)
	}
	return seq
}

func exec(t testing.TB, n *peer.Node, q string, args ...any) {
	t.Helper()
	if _, err := n.DB().ExecContext(context.Background(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func insert(t testing.TB, n *peer.Node, model any) {
	t.Helper()
	if _, err := n.DB().NewInsert().Model(model).Exec(context.Background()); err != nil {
		t.Fatalf("insert %T: %v", model, err)
	}
}

func names(t testing.TB, n *peer.Node, table, col string) []string {
	t.Helper()
	rows, err := n.DB().QueryContext(context.Background(), "SELECT "+col+" FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// frames splits a recorded byte stream into frame types, up to a
// truncated tail.
func frames(raw []byte) []byte {
	var types []byte
	r := bytes.NewReader(raw)
	for {
		typ, _, err := stream.ReadFrame(r, stream.DefaultMaxFrame)
		if err != nil {
			return types
		}
		types = append(types, typ)
	}
}

// serve runs Serve for node on a loopback port until the test ends (its
// error fails the test) and returns the address.
func serve(t *testing.T, node *peer.Node, c *stream.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- stream.Serve(ctx, ln, node, c) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

package stream_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/stream"
)

func frameBytes(typ byte, payload string) []byte {
	var b bytes.Buffer
	if err := stream.WriteFrame(&b, typ, []byte(payload)); err != nil {
		panic(err)
	}
	return b.Bytes()
}

func TestReadFrame(t *testing.T) {
	t.Parallel()
	huge := make([]byte, 5)
	binary.BigEndian.PutUint32(huge, 1<<31)
	huge[4] = 'B'
	cases := []struct {
		name    string
		in      []byte
		max     int
		typ     byte
		payload string
		err     error // nil: success
	}{
		{"hello", frameBytes('H', `{"version":1}`), 1 << 10, 'H', `{"version":1}`, nil},
		{"empty payload", frameBytes('D', ``), 1, 'D', ``, nil},
		{"exactly max", frameBytes('B', `{}`), 3, 'B', `{}`, nil},
		{"over max", frameBytes('B', `{}`), 2, 0, "", stream.ErrFrame},
		{"huge length, no allocation", huge, 1 << 20, 0, "", stream.ErrFrame},
		{"zero length", []byte{0, 0, 0, 0}, 10, 0, "", stream.ErrFrame},
		{"unknown type", frameBytes('Z', `{}`), 10, 0, "", stream.ErrFrame},
		{"nothing", nil, 10, 0, "", io.EOF},
		{"short header", []byte{0, 0}, 10, 0, "", io.ErrUnexpectedEOF},
		{"short body", frameBytes('B', `{"a":1}`)[:8], 100, 0, "", io.ErrUnexpectedEOF},
		{"header only", frameBytes('B', `{}`)[:4], 100, 0, "", io.ErrUnexpectedEOF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			typ, payload, err := stream.ReadFrame(bytes.NewReader(c.in), c.max)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("error %v, want %v", err, c.err)
				}
				return
			}
			if err != nil || typ != c.typ || string(payload) != c.payload {
				t.Fatalf("got %q %q %v, want %q %q", typ, payload, err, c.typ, c.payload)
			}
		})
	}
}

// FuzzReadFrame: the decoder never panics, never returns a frame longer
// than the limit, and every frame it accepts is exactly the bytes it
// consumed, as WriteFrame writes them.
func FuzzReadFrame(f *testing.F) {
	for _, typ := range []byte("HACBDKE") {
		f.Add(frameBytes(typ, `{"x":1}`), uint16(100))
	}
	f.Add(append(frameBytes('B', `{"changes":[]}`), frameBytes('D', `{}`)...), uint16(20))
	f.Add([]byte{0, 0, 0, 0}, uint16(10))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 'B'}, uint16(0xffff))
	f.Add([]byte{0, 0, 0, 3, 'Z', '{', '}'}, uint16(10))
	f.Add([]byte{0, 0, 0, 9, 'B', '{'}, uint16(10))
	f.Fuzz(func(t *testing.T, data []byte, max uint16) {
		r := bytes.NewReader(data)
		for {
			before := r.Len()
			typ, payload, err := stream.ReadFrame(r, int(max))
			if err != nil {
				return
			}
			if len(payload)+1 > int(max) {
				t.Fatalf("accepted a %d-byte frame with limit %d", len(payload)+1, max)
			}
			consumed := data[len(data)-before : len(data)-r.Len()]
			var b bytes.Buffer
			if err := stream.WriteFrame(&b, typ, payload); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b.Bytes(), consumed) {
				t.Fatalf("re-encoded %x, consumed %x", b.Bytes(), consumed)
			}
		}
	})
}

// TestPreAuthFrameBound: before the other end authenticates, a session
// reads no frame over a few KiB: a party without the secret that
// announces a large hello ends the session at once (a malformed frame),
// and the frame is not held.
func TestPreAuthFrameBound(t *testing.T) {
	t.Parallel()
	a := newNode(t, dbtest.KindSQLite)
	c1, c2 := net.Pipe()
	t.Cleanup(func() { c2.Close() })
	go func() { _, _ = io.Copy(io.Discard, c2) }() // the node's hello
	var head [5]byte
	binary.BigEndian.PutUint32(head[:4], 1<<20)
	head[4] = 'H'
	go func() { _, _ = c2.Write(head[:]) }()
	_, err := stream.Sync(context.Background(), c1, a, &stream.Config{Secret: secret, IdleTimeout: time.Minute})
	if !errors.Is(err, stream.ErrFrame) {
		t.Fatalf("a 1 MiB hello: %v, want stream.ErrFrame", err)
	}
}

// TestServeBoundsSessions: Serve runs at most Config.MaxSessions
// authenticated sessions at once; a party that authenticates beyond gets
// "busy". Connections in their handshake are bounded apart: a new one
// beyond closes the oldest, so parties that never authenticate cannot
// pile up, nor keep the mesh out.
func TestServeBoundsSessions(t *testing.T) {
	t.Parallel()
	a, c, d := newNode(t, dbtest.KindSQLite), newNode(t, dbtest.KindSQLite), newNode(t, dbtest.KindSQLite)
	addr := serve(t, a, &stream.Config{Secret: secret, IdleTimeout: time.Minute, MaxSessions: 1})
	hello := func(c net.Conn) error {
		_, _, err := stream.ReadFrame(c, 1<<20)
		return err
	}
	dial := func() net.Conn {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	first := dial()
	if err := hello(first); err != nil { // its handshake runs, and waits for us
		t.Fatalf("first connection: %v", err)
	}
	second := dial()
	if err := hello(second); err != nil {
		t.Fatalf("a second connection in its handshake: %v", err)
	}
	if err := hello(first); !errors.Is(err, io.EOF) {
		t.Fatalf("the oldest connection in its handshake, beyond MaxSessions of them: %v, want it closed (EOF)", err)
	}

	// c authenticates and holds the one place: its connection stops
	// carrying its frames after the handshake. (d's connection may close
	// c's before c is through its handshake: c then starts again.)
	cctx, ccancel := context.WithCancel(context.Background())
	t.Cleanup(ccancel)
	var held *stallAfter
	var cDone chan struct{}
	hold := func() {
		held = &stallAfter{Conn: dial(), writes: 2, release: make(chan struct{}), admitted: make(chan struct{})}
		t.Cleanup(func() { close(held.release) })
		cDone = make(chan struct{})
		go func(done chan struct{}) {
			defer close(done)
			_, _ = stream.Sync(cctx, held, c, cfg())
		}(cDone)
	}
	hold()
	for try := 0; ; try++ {
		select {
		case <-cDone:
			hold()
		default:
		}
		select {
		case <-held.admitted:
		case <-cDone:
			continue // closed in its handshake: start again
		}
		_, err := stream.Sync(context.Background(), dial(), d, cfg())
		if errors.Is(err, stream.ErrRemote) && strings.Contains(err.Error(), "busy") {
			break
		}
		if try == 100 {
			t.Fatalf("a session beyond MaxSessions authenticated ones: %v, want ErrRemote busy", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stallAfter is a connection whose writes after the first writes block
// until release; admitted is closed once it read three frames (the other
// end's HELLO, AUTH and CURSOR: Serve admitted the session).
type stallAfter struct {
	net.Conn
	mu                sync.Mutex
	writes            int
	release, admitted chan struct{}
	frames            int
	head              []byte // of the frame being read
	skip              int    // bytes left of the frame being read
}

func (s *stallAfter) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.writes--
	stall := s.writes < 0
	s.mu.Unlock()
	if stall {
		<-s.release
	}
	return s.Conn.Write(p)
}

func (s *stallAfter) Read(p []byte) (int, error) {
	n, err := s.Conn.Read(p)
	for b := p[:n]; len(b) > 0; {
		if s.skip > 0 {
			k := min(s.skip, len(b))
			s.skip, b = s.skip-k, b[k:]
			if s.skip == 0 {
				if s.frames++; s.frames == 3 {
					close(s.admitted)
				}
			}
			continue
		}
		s.head, b = append(s.head, b[0]), b[1:]
		if len(s.head) == 4 {
			s.skip, s.head = int(binary.BigEndian.Uint32(s.head)), nil
		}
	}
	return n, err
}

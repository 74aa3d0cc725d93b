package stream_test

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
)

// cutConn closes its connection once budget bytes have gone through it,
// read and written together; the read or write that crosses the budget
// passes the bytes within it and then fails.
type cutConn struct {
	net.Conn
	mu     sync.Mutex
	budget int
	used   atomic.Int64
}

var errCut = errors.New("connection cut by the test")

func (c *cutConn) take(n int) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n > c.budget {
		n = c.budget
	}
	c.budget -= n
	return n, c.budget == 0
}

func (c *cutConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	left := c.budget
	c.mu.Unlock()
	if left == 0 {
		c.Conn.Close()
		return 0, errCut
	}
	if len(p) > left {
		p = p[:left]
	}
	n, err := c.Conn.Read(p)
	c.used.Add(int64(n))
	if _, done := c.take(n); done {
		c.Conn.Close()
	}
	return n, err
}

func (c *cutConn) Write(p []byte) (int, error) {
	k, done := c.take(len(p))
	n, err := c.Conn.Write(p[:k])
	c.used.Add(int64(n))
	if done {
		c.Conn.Close()
		if err == nil && k < len(p) {
			err = errCut
		}
	}
	return n, err
}

// countConn counts the bytes through a connection.
type countConn struct {
	net.Conn
	n atomic.Int64
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// TestCutConnection cuts sessions at random byte offsets, on either end.
// Each end must be all-or-nothing: its data (digest and row counts) and
// its cursor are either as before the session or as after a complete
// one, never in between. A clean session afterwards converges. 25
// sessions (6 under the race detector); 100 with DBSYNC_LONG=1.
func TestCutConnection(t *testing.T) {
	t.Parallel()
	iterations, changes := 25, 60
	if dbtest.Race() {
		iterations, changes = 6, 30
	}
	if dbtest.Long() {
		iterations = 100
	}
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 7))
			small := &peer.Config{BatchSize: 40} // many frames per session
			a := synctest.NewNode(t, p.a, small)
			b := synctest.NewNode(t, p.b, small)
			var notes []string
			next := 0
			change := func(n *peer.Node) {
				for range changes {
					switch k := rng.IntN(10); {
					case k < 5 || len(notes) < 10:
						x := note(fmt.Sprintf("n%d", next))
						next++
						insert(t, n, x)
						notes = append(notes, x.ID.String())
					case k < 8:
						exec(t, n, "UPDATE notes SET body = ?, count = count + 1 WHERE id = ?", fmt.Sprintf("u%d", next), notes[rng.IntN(len(notes))])
						next++
					case k < 9:
						insert(t, n, &testmodels.List{Name: fmt.Sprintf("l%d", next)})
						next++
					default:
						exec(t, n, "DELETE FROM notes WHERE id = ?", notes[rng.IntN(len(notes))])
					}
				}
			}
			// Size a typical session.
			change(a)
			change(b)
			c1, c2 := net.Pipe()
			cc := &countConn{Conn: c1}
			sessionOver(t, &trackedConn{ReadWriteCloser: cc}, &trackedConn{ReadWriteCloser: c2}, a, b, cfg(), cfg()).ok(t)
			size := int(cc.n.Load())
			t.Logf("a session moves about %d bytes", size)

			var kept, completed [2]int
			for it := range iterations {
				change(a)
				change(b)
				before := [2]state{stateOf(t, a), stateOf(t, b)}
				curs := [2]int64{cursor(t, a, b), cursor(t, b, a)}
				budget := rng.IntN(size * 5 / 4)
				if it%5 == 0 {
					budget = rng.IntN(600) // the handshake
				}
				x1, x2 := net.Pipe()
				var e1, e2 io.ReadWriteCloser = x1, x2
				side := rng.IntN(2)
				if side == 0 {
					e1 = &cutConn{Conn: x1, budget: budget}
				} else {
					e2 = &cutConn{Conn: x2, budget: budget}
				}
				o := sessionOver(t, &trackedConn{ReadWriteCloser: e1}, &trackedConn{ReadWriteCloser: e2}, a, b, cfg(), cfg())
				o.mustClose(t)
				after := [2]state{stateOf(t, a), stateOf(t, b)}
				afterCurs := [2]int64{cursor(t, a, b), cursor(t, b, a)}
				pipeSession(t, a, b, cfg(), cfg()).ok(t)
				final := converged(t, a, b)
				for i := range 2 {
					if before[i].equal(final) {
						t.Fatalf("iteration %d: node %d had nothing to receive", it, i)
					}
					switch {
					case after[i].equal(before[i]):
						kept[i]++
						if afterCurs[i] != curs[i] {
							t.Fatalf("iteration %d (cut after %d bytes on end %d): node %d kept its data but moved its cursor %d→%d",
								it, budget, side, i, curs[i], afterCurs[i])
						}
					case after[i].equal(final):
						completed[i]++
						if afterCurs[i] <= curs[i] {
							t.Fatalf("iteration %d: node %d applied everything but its cursor stayed at %d", it, i, curs[i])
						}
					default:
						t.Fatalf("iteration %d (cut after %d bytes on end %d, errors %v / %v): node %d is in between: %v → %v, final %v",
							it, budget, side, o.a.err, o.b.err, i, before[i].Counts, after[i].Counts, final.Counts)
					}
				}
			}
			t.Logf("sessions cut: a kept %d, completed %d; b kept %d, completed %d", kept[0], completed[0], kept[1], completed[1])
			if kept[0]+kept[1] == 0 {
				t.Fatal("no cut ever stopped a session: the test cuts nothing")
			}
		})
	}
}

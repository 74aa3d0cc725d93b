package stream

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/protocol"
)

var hostileSecret = []byte("correct horse battery staple")

// hostilePeer runs a session of victim (with cfg) against a party that
// holds the secret and does the handshake right, then calls act with a
// function that sends a sealed frame (after the party's CURSOR frame,
// an empty position). The victim's frames are read and dropped. It
// returns the victim's error, or a timeout error when the victim's
// session did not end within wait after act returned.
func hostilePeer(t *testing.T, victim *peer.Node, cfg *Config, wait time.Duration, act func(send func(typ byte, payload []byte) error)) error {
	t.Helper()
	return hostileCursor(t, victim, cfg, wait, peer.Position{}, act)
}

// hostileCursor is hostilePeer with the party's CURSOR frame holding cur.
func hostileCursor(t *testing.T, victim *peer.Node, cfg *Config, wait time.Duration, cur peer.Position, act func(send func(typ byte, payload []byte) error)) error {
	t.Helper()
	c1, c2 := net.Pipe()
	defer c2.Close()
	done := make(chan error, 1)
	go func() {
		_, err := Sync(context.Background(), c1, victim, cfg)
		done <- err
	}()
	r, send := hostileHandshake(t, c2, victim)
	go func() { // the victim's sealed frames: dropped
		for {
			if _, _, err := ReadFrame(r, DefaultMaxFrame); err != nil {
				return
			}
		}
	}()
	position, _ := json.Marshal(cur)
	if err := send(frameCursor, position); err != nil {
		t.Fatal(err)
	}
	act(send)
	select {
	case err := <-done:
		return err
	case <-time.After(wait):
		c2.Close()
		<-done
		return errors.New("the victim's session was still running")
	}
}

// hostileHandshake does, on c (the other end of the victim's
// connection), the handshake of a party that holds the secret, and
// returns the reader of the victim's frames and a function that sends a
// sealed frame.
func hostileHandshake(t *testing.T, c net.Conn, victim *peer.Node) (*bufio.Reader, func(typ byte, payload []byte) error) {
	t.Helper()
	r := bufio.NewReader(c)
	typ, p, err := ReadFrame(r, maxPreAuthFrame)
	if err != nil || typ != frameHello {
		t.Fatalf("victim's hello: %q %v", typ, err)
	}
	var theirs hello
	if err := json.Unmarshal(p, &theirs); err != nil {
		t.Fatal(err)
	}
	me := uuid.NewString()
	mine := hello{Version: Version, Node: me, Nonce: protocol.NewNonce(), Schema: victim.Schema()}
	s := &session{cfg: Config{Secret: hostileSecret}}
	w := func(typ byte, v any) {
		b, _ := json.Marshal(v)
		if err := WriteFrame(c, typ, b); err != nil {
			t.Fatal(err)
		}
	}
	w(frameHello, mine)
	if typ, _, err = ReadFrame(r, maxPreAuthFrame); err != nil || typ != frameAuth {
		t.Fatalf("victim's auth: %q %v", typ, err)
	}
	w(frameAuth, auth{MAC: s.mac(mine.Nonce, theirs.Nonce, me, theirs.Node)})
	key := s.frameKey(mine.Nonce, theirs.Nonce, me, theirs.Node)
	var seq uint64
	return r, func(typ byte, payload []byte) error {
		sealed := append(append([]byte(nil), payload...), frameMAC(key, seq, typ, payload)...)
		seq++
		return WriteFrame(c, typ, sealed)
	}
}

// TestMaxReceiveCountsEveryFrame: a party holding the secret that sends
// BATCH frames without a payload (or tiny ones) must meet MaxReceive like
// any other: each such frame takes room in the spool file, and before,
// frames of an empty payload counted nothing, so an endless stream of
// them grew the spool without bound and never ended the session.
func TestMaxReceiveCountsEveryFrame(t *testing.T) {
	t.Parallel()
	victim := synctest.NewNode(t, dbtest.KindSQLite, nil)
	const limit = 4 << 10
	cfg := &Config{Secret: hostileSecret, MaxReceive: limit}
	sent := 0
	err := hostilePeer(t, victim, cfg, 5*time.Second, func(send func(byte, []byte) error) {
		// 100 times the limit in frames of 37 bytes (length, type, MAC).
		for sent < 100*limit {
			if err := send(frameBatch, nil); err != nil {
				return // the victim hung up
			}
			sent += 37
		}
	})
	if !errors.Is(err, ErrFrame) {
		t.Fatalf("victim: %v after %d bytes of empty frames, want ErrFrame (MaxReceive %d)", err, sent, limit)
	}
	if sent > 40*limit {
		t.Fatalf("the victim read %d bytes of empty frames before it stopped (MaxReceive %d)", sent, limit)
	}
}

// TestBadCursorRefused: a CURSOR frame holding a position GET /changes
// refuses (peerhttp.ParsePosition: a negative pulled_seq, an epoch not a
// UUID in canonical form) ends the session with ErrFrame, as HTTP answers
// 400. Before, the stream took it: an epoch in another spelling was
// recorded as a restore of the victim, and its whole state was sent.
func TestBadCursorRefused(t *testing.T) {
	t.Parallel()
	victim := synctest.NewNode(t, dbtest.KindSQLite, nil)
	for _, cur := range []peer.Position{
		{Seq: -1},
		{Epoch: "not a uuid"},
		{Epoch: "0D9F6A1E-3C4B-4F8E-9A2D-5B6C7D8E9F01"},
	} {
		err := hostileCursor(t, victim, &Config{Secret: hostileSecret}, 2*time.Second, cur, func(func(byte, []byte) error) {})
		if !errors.Is(err, ErrFrame) {
			t.Errorf("cursor %+v: victim: %v, want ErrFrame", cur, err)
		}
	}
}

// TestBadPageEpochRefused: a BATCH frame whose page holds an epoch that is
// not a UUID in canonical form (peer.ValidEpoch, the check of the CURSOR
// frame) ends the session with ErrFrame, nothing applied. Before, the
// epoch was recorded as the victim's cursor's, and sent back in the next
// session's CURSOR frame it was refused there, or (another spelling of a
// UUID) taken by the other end for a restore of its own.
func TestBadPageEpochRefused(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			victim := synctest.NewNode(t, kind, nil)
			for _, epoch := range []string{"not a uuid", "0D9F6A1E-3C4B-4F8E-9A2D-5B6C7D8E9F01", "{0d9f6a1e-3c4b-4f8e-9a2d-5b6c7d8e9f01}"} {
				// (The wait only bounds a hang.)
				err := hostilePeer(t, victim, &Config{Secret: hostileSecret}, time.Minute, func(send func(byte, []byte) error) {
					page, _ := json.Marshal(peer.Batch{Changes: []peer.Change{}, Last: 1, Epoch: epoch})
					done, _ := json.Marshal(struct{}{})
					applied, _ := json.Marshal(commit{})
					for _, f := range []struct {
						typ     byte
						payload []byte
					}{{frameBatch, page}, {frameDone, done}, {frameCommit, applied}} {
						if send(f.typ, f.payload) != nil {
							return // the victim hung up
						}
					}
				})
				if !errors.Is(err, ErrFrame) {
					t.Errorf("page epoch %q: victim: %v, want ErrFrame", epoch, err)
				}
				var cursors int
				if err := victim.DB().QueryRowContext(context.Background(), "SELECT count(*) FROM sync_lww_cursor_epochs").Scan(&cursors); err != nil {
					t.Fatal(err)
				}
				if cursors != 0 {
					t.Fatalf("page epoch %q: the victim recorded a cursor", epoch)
				}
			}
		})
	}
}

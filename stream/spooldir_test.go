package stream_test

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/stream"
)

// TestSpoolDirChecked: Sync, Serve and Listen refuse a Config.SpoolDir
// that is not an existing directory at once, with an error naming the
// field (wrapping fs.ErrNotExist for a missing one), and Sync closes the
// connection it was given; an empty one (os.TempDir) and a directory run
// sessions. Before, a wrong one failed only the sessions that received
// more than 1 MiB of pages, and Serve's only in its Logger.
func TestSpoolDirChecked(t *testing.T) {
	t.Parallel()
	a, b := newNode(t, dbtest.KindSQLite), newNode(t, dbtest.KindSQLite)
	// (Bounded, so that a Serve that accepts with a wrong SpoolDir ends
	// too.)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, c := range synctest.SpoolDirCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			sc := &stream.Config{Secret: secret, SpoolDir: c.Dir}
			if !c.Bad {
				insert(t, a, note("with SpoolDir "+c.Name))
				pipeSession(t, a, b, sc, sc).ok(t).transfers(t, 0, 1)
				return
			}
			check := func(what string, err error) {
				t.Helper()
				if err == nil || !strings.Contains(err.Error(), "stream: Config.SpoolDir") {
					t.Fatalf("%s with SpoolDir %q: %v, want an error naming stream: Config.SpoolDir", what, c.Dir, err)
				}
				if c.NotExist != errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s with SpoolDir %q: errors.Is(%v, fs.ErrNotExist) = %v, want %v", what, c.Dir, err, !c.NotExist, c.NotExist)
				}
			}
			c1, c2 := net.Pipe()
			defer c2.Close()
			_, err := stream.Sync(ctx, c1, a, sc)
			check("Sync", err)
			if _, err := c2.Read(make([]byte, 1)); err == nil {
				t.Error("Sync left the connection open")
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			check("Serve", stream.Serve(ctx, ln, a, sc))
			check("Listen", stream.Listen(ctx, "tcp", "127.0.0.1:0", nil, a, sc))
		})
	}
}

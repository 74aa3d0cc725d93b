package stream_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/stream"
)

// TestServeReturns pins what Serve returns (its doc comment): nil once
// its context ends, whether before or while it accepts, having closed the
// listener and waited for the session it ended; the listener's error,
// as it is, when the caller closes the listener.
func TestServeReturns(t *testing.T) {
	t.Parallel()
	node := newNode(t, dbtest.KindSQLite)
	listen := func(t *testing.T) net.Listener {
		t.Helper()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	closed := func(t *testing.T, ln net.Listener) {
		t.Helper()
		if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Serve returned: %v, want the listener closed", err)
		}
	}

	t.Run("context ended before", func(t *testing.T) {
		ln := listen(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := stream.Serve(ctx, ln, node, cfg()); err != nil {
			t.Fatalf("Serve: %v, want nil", err)
		}
		closed(t, ln)
	})

	t.Run("context ends during a session", func(t *testing.T) {
		ln := listen(t)
		var failed atomic.Bool
		c := cfg()
		c.Logger = slog.New(logCapture{fn: func(msg string, _ map[string]string) {
			if msg == "stream: session failed" {
				failed.Store(true)
			}
		}})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		served := make(chan error, 1)
		go func() { served <- stream.Serve(ctx, ln, node, c) }()
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// Serve's end says hello first: its session runs.
		if _, _, err := stream.ReadFrame(conn, 1<<12); err != nil {
			t.Fatalf("hello: %v", err)
		}
		cancel()
		if err := <-served; err != nil {
			t.Fatalf("Serve after its context ended: %v, want nil", err)
		}
		if !failed.Load() {
			t.Error("Serve returned before the session it ended")
		}
		closed(t, ln)
	})

	t.Run("listener closed", func(t *testing.T) {
		ln := listen(t)
		served := make(chan error, 1)
		go func() { served <- stream.Serve(context.Background(), ln, node, cfg()) }()
		ln.Close()
		if err := <-served; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Serve after its listener closed: %v, want net.ErrClosed", err)
		}
	})
}

//go:build linux

package e2e_test

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/procmem"
)

// TestChunkedPushMemory pushes 200,000 rows from a client process to a
// server process, once in one request and once in chunks, and compares
// the peak resident memory (VmHWM) of the pushing client: in chunks it
// compresses its log and reads the rows a page at a time and holds one
// chunk, in one request it holds every row and the whole body. The
// server's commit of the chunks applies them one at a time: its peak must
// stay under 128 MiB too, also with scopes (a third run, chunks on a
// server with scopes, which checks every row against the scope a page of
// staged keys at a time). Slow: DBSYNC_LONG=1.
func TestChunkedPushMemory(t *testing.T) {
	if !dbtest.Long() {
		t.Skip("DBSYNC_LONG=1 runs it")
	}
	t.Parallel()
	const rows = 200_000
	peaks := map[string]int64{}
	for _, mode := range []string{"off", "", "scoped"} {
		dir := t.TempDir()
		var env []string
		if mode == "scoped" {
			mode, env = "", []string{mpEnvScopes + "=todos"}
		}
		srv := mpStartServer(t, "sqlite:"+filepath.Join(dir, "server.db"), env...)
		c := &mpClient{name: "a", path: filepath.Join(dir, "a.db"), url: srv.url}
		var steps []mpStep
		for done := 0; done < rows; done += 10000 {
			steps = append(steps, mpStep{Op: "insert", List: "big", Prefix: "big" + strconv.Itoa(done), N: min(10000, rows-done)})
		}
		c.run(t, steps...)
		c.env = []string{mpEnvPushChunk + "=" + mode}
		res := c.start(t, mpStep{Op: "push"}).resultWithin(t, 15*time.Minute)
		if p := res.Steps[0].Push; p.Operations != rows+1 || p.VersionID != 1 {
			t.Fatalf("push (%q): %+v", mode, p)
		}
		server, err := procmem.PeakRSS(srv.cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		name := map[string]string{"off": "one request", "": "chunks"}[mode]
		if env != nil {
			name = "chunks to a server with scopes"
		} else {
			peaks[name] = res.PeakRSS
		}
		if mode == "" && server > 128<<20 {
			t.Errorf("server peak %d MiB committing %d rows in chunks, want at most 128 MiB", server>>20, rows)
		}
		t.Logf("push of %d rows in %s (%d bytes): client VmHWM %d MiB, server VmHWM %d MiB",
			rows, name, res.Steps[0].Push.Bytes, res.PeakRSS>>20, server>>20)
		srv.stop(t)
	}
	if peaks["chunks"] == 0 {
		t.Skip("no VmHWM here")
	}
	// Measured (200k rows, no -race, 2 cores): one request 164 MiB,
	// chunks 44 MiB (also 44 MiB for 1M rows).
	if peaks["chunks"]*2 > peaks["one request"] || peaks["chunks"] > 64<<20 {
		t.Fatalf("client peak in chunks %d MiB, in one request %d MiB: want at most half, and at most 64 MiB",
			peaks["chunks"]>>20, peaks["one request"]>>20)
	}
}

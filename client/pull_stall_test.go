package client_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// stallBody passes a response body on up to its first after bytes, then
// stalls (stalled is closed) until release is closed: a server that
// stops sending mid-answer.
type stallBody struct {
	io.ReadCloser
	left     int
	once     sync.Once
	stalled  chan struct{}
	released chan struct{}
}

func (b *stallBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		b.once.Do(func() { close(b.stalled) })
		<-b.released
		return b.ReadCloser.Read(p)
	}
	n, err := b.ReadCloser.Read(p[:min(len(p), b.left)])
	b.left -= n
	return n, err
}

// TestPullStallSparesWriters: a pull over 256 KiB is applied while it
// downloads. An application transaction holds a tracked table when the
// pull starts, for a while: the pull's transaction waits for the node's
// writers (PostgreSQL: LockForMerge; SQLite: its write lock), then
// applies what came and waits on the network, the answer stalled
// mid-stream. An application write issued then must complete while the
// answer is still stalled: the transaction's wait on the network,
// locks held, is bounded by its own work, whatever the wait for the
// locks (it counted as work, and the application's writers then waited
// as long again on the network). The pull then completes once the answer
// does, and nothing is lost. Nodes on both databases.
func TestPullStallSparesWriters(t *testing.T) {
	t.Parallel()
	const (
		// Few large rows: the fixed pull's work before and during the
		// stall (what bounds its wait on the network) is short.
		todos = 160
		// The application holds its table for longer than the stall
		// lasts: before the fix, the pull waited as long on the network. The
		// hold stays below the SQLite DSN's busy_timeout (20 s), and the
		// stall leaves the fixed pull room under a loaded machine (its
		// write waited 0.5-1.1 s beside CPU spinners, load 5-7).
		hold  = 7 * time.Second
		stall = 5 * time.Second
	)
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := synctest.NewServer(t, dbtest.KindSQLite, nil)
			a := synctest.NewClient(t, srv, "a", nil)
			l := insertList(t, a.DB, "a")
			insertTodos(t, a.DB, l, strings.Repeat("t", 4000), todos) // about 650 KB of answer
			if _, err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}

			tr := &transport{}
			var applyOnce sync.Once
			applying := make(chan struct{})
			b := synctest.NewClientWith(t, srv, "b", synctest.ClientDB(t, kind, "testmodels", testmodels.CreateSchema, synctest.Models()),
				testmodels.CreateSchema, synctest.Models(), &client.Config{
					HTTPClient: tr.client(),
					ChunkSize:  10, // chunks of about 40 KB: several in the answer's first part
					OnProgress: func(p dbsync.Progress) {
						if p.Op == "pull" && p.Phase == "apply" {
							applyOnce.Do(func() { close(applying) })
						}
					},
				})
			client.SetLogLockWait(b.Client, time.Minute)
			body := &stallBody{left: 320 << 10, stalled: make(chan struct{}), released: make(chan struct{})}
			var release sync.Once
			releaseBody := func() { release.Do(func() { close(body.released) }) }
			t.Cleanup(releaseBody)
			tr.setHook(func(r *http.Request, _ []byte, forward func() (*http.Response, error)) (*http.Response, error) {
				resp, err := forward()
				if err == nil && endpoint(r) == "pull" {
					body.ReadCloser = resp.Body
					resp.Body = body
				}
				return resp, err
			})

			app, err := b.DB.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer app.Rollback()
			insertList(t, app, "app") // the application holds lists (and the log)
			pulled := make(chan error, 1)
			go func() {
				_, err := b.Pull(ctx)
				pulled <- err
			}()
			select {
			case <-body.stalled: // the answer's first part is in: its apply started
			case <-time.After(30 * time.Second):
				t.Fatal("the pull's answer never reached its stall")
			}
			time.Sleep(hold) // the pull waits for the application's transaction
			if err := app.Commit(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-applying: // the pull holds the node's writers out
			case <-time.After(30 * time.Second):
				t.Fatal("the pull never applied a chunk")
			}
			wrote := make(chan error, 1)
			issued := time.Now()
			go func() {
				_, err := b.DB.NewInsert().Model(&testmodels.List{Name: "during"}).Exec(ctx)
				wrote <- err
			}()
			var writeErr error
			select {
			case writeErr = <-wrote:
			case <-time.After(stall):
				t.Errorf("an application write waited for a pull stalled on the network (the answer stalled %s)", stall)
				releaseBody()
				writeErr = <-wrote
			}
			if writeErr != nil {
				t.Fatalf("the application's write during the stall: %v", writeErr)
			}
			t.Logf("the application's write waited %s", time.Since(issued).Round(time.Millisecond))
			releaseBody()
			if err := <-pulled; err != nil {
				t.Fatalf("pull: %v", err)
			}
			if n := count(t, b.DB, "todos", ""); n != todos {
				t.Fatalf("b holds %d todos, want %d", n, todos)
			}
			if _, err := b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Pull(ctx); err != nil {
				t.Fatal(err)
			}
			if n := count(t, a.DB, "lists", "name IN ('app', 'during')"); n != 2 {
				t.Fatalf("a holds %d of b's lists app and during, want 2", n)
			}
		})
	}
}

package server_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
	"github.com/go-dbsync/dbsync/server"
)

// TestPushCopyRecordedMeanwhileLookupCut: two copies of one push reach
// two server processes on one PostgreSQL database (a client that resent
// it behind a load balancer). The second copy passes its look-up of the
// push id while the first is being applied, waits for the version lock,
// and finds the push id recorded when it records it: the first copy was
// applied. It looks the id up again to answer duplicate; when that
// look-up fails (its connections cut), the answer used to be 409
// push_abandoned, a refusal for good, on which a client drops the
// attempt and pushes its operations again under a new push id: the push
// applied twice. The answer is now an internal error, which the client
// resends, and the resend is answered duplicate with the first copy's
// version. (PostgreSQL only: a SQLite server's look-up reads through a
// connection no fault here cuts.)
func TestPushCopyRecordedMeanwhileLookupCut(t *testing.T) {
	t.Parallel()
	u := dbtest.PostgresSchemaURL(t)
	dbA, err := dbtest.OpenPostgres(u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dbA.Close() })
	cutter := dbtest.NewCutter(t, u)
	dbB := cutter.DB
	if err := testmodels.CreateSchema(ctx, dbA); err != nil {
		t.Fatal(err)
	}
	inA, release := make(chan struct{}), make(chan struct{})
	var holdA atomic.Bool
	newSrv := func(db *bun.DB, cfg *server.Config) *server.Server {
		reg, err := dbsync.Track(db, synctest.Models()...)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := server.New(ctx, db, reg, synctest.OpenConfig(cfg))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Close() })
		return srv
	}
	a := newSrv(dbA, &server.Config{BeforePush: func(context.Context, bun.Tx, *server.PushInfo) error {
		if holdA.CompareAndSwap(true, false) {
			close(inA)
			<-release
		}
		return nil
	}})
	b := newSrv(dbB, nil)

	reg, err := a.Register(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	node := reg.Node.NodeID
	if _, err := a.Push(ctx, node, newPush(nil).list(models.Insert, 1, "one").Ptr()); err != nil {
		t.Fatal(err)
	}
	req := newPush(ptr(1)).list(models.Insert, 2, "two").Ptr()

	holdA.Store(true)
	type answer struct {
		resp *protocol.PushResponse
		err  error
	}
	fromA := make(chan answer, 1)
	go func() {
		resp, err := a.Push(ctx, node, req)
		fromA <- answer{resp, err}
	}()
	<-inA // the first copy holds the version lock, its push id recorded, uncommitted
	// The second copy's look-up after its failed record is cut.
	recorded := false
	cut := func(q string) bool {
		if strings.Contains(q, "INSERT INTO sync_pushes") {
			recorded = true
			return false
		}
		return recorded && strings.Contains(q, "sync_pushes")
	}
	cutter.CutAt(cut)
	fromB := make(chan answer, 1)
	go func() {
		resp, err := b.Push(ctx, node, req)
		fromB <- answer{resp, err}
	}()
	// Until the second copy waits for the version lock.
	for deadline := time.Now().Add(hangGuard); ; {
		waiting, err := cutter.LockWaits(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case got := <-fromB:
			close(release)
			t.Fatalf("the second copy was answered before it waited for the version lock: %+v %v", got.resp, got.err)
		default:
		}
		if time.Now().After(deadline) {
			close(release)
			t.Fatal("the second copy never waited for the version lock")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	first := <-fromA
	if first.err != nil || first.resp.NewVersionID != 2 {
		t.Fatalf("first copy: %+v %v, want version 2", first.resp, first.err)
	}
	second := <-fromB
	if cutter.Armed() {
		t.Fatalf("the second copy's look-up after its record was never cut (answer %+v %v)", second.resp, second.err)
	}
	if second.err == nil {
		if !second.resp.Duplicate || second.resp.NewVersionID != 2 {
			t.Fatalf("second copy: %+v, want the duplicate of version 2", second.resp)
		}
	} else if errors.Is(second.err, dbsync.ErrPushRejected) || dbsync.Code(second.err) != protocol.CodeInternal {
		t.Fatalf("second copy, its look-up cut: %v (code %s), want an internal error: the push was applied", second.err, dbsync.Code(second.err))
	}
	// The client resends it (its pool reconnects; a dead connection may
	// fail a request or two first).
	var resp *protocol.PushResponse
	for range 10 {
		if resp, err = b.Push(ctx, node, req); err == nil {
			break
		}
	}
	if err != nil || !resp.Duplicate || resp.NewVersionID != 2 {
		t.Fatalf("resend: %+v %v, want the duplicate of version 2", resp, err)
	}
	var versions int
	if err := dbA.NewRaw("SELECT count(*) FROM sync_versions").Scan(ctx, &versions); err != nil {
		t.Fatal(err)
	}
	if versions != 2 {
		t.Fatalf("%d versions, want 2", versions)
	}
}

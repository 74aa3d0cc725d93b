package server_test

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestScopeKeyStep: on a server with scopes, a push may not take a
// table's integer keys more than 2^32 above the greatest key the server
// has used: a node's project at the top of int64, in its own scope, would
// leave no key for any other node's inserts (merge.md K1), whose pulls
// would fail for good. Refused as a bad request (400 over HTTP), nothing
// written, whole and chunked; a key within the step is accepted.
func TestScopeKeyStep(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprint(kind, "/chunked=", chunked), func(t *testing.T) {
				t.Parallel()
				f := newScopedFixture(t, kind)
				ann, cid := f.registerAs("ann"), f.registerAs("cid")
				if err := f.pushFn(ann, chunked)(newPush(nil).project(models.Insert, 1, "ann", "a")); err != nil {
					t.Fatal(err)
				}
				before := f.state()
				top := newPush(ptr(f.latest())).project(models.Insert, math.MaxInt64, "cid", "top")
				if err := f.pushFn(cid, chunked)(top); !errors.Is(err, dbsync.ErrBadRequest) {
					t.Fatalf("cid's project at the top of int64: %v, want ErrBadRequest", err)
				}
				f.mustUnchanged(before, "a key at the top of int64")
				if !chunked {
					status, eb, _ := httpPush(t, f.Server, cid, &top.req)
					if status != http.StatusBadRequest || eb.Error.Code != protocol.CodeBadRequest {
						t.Fatalf("HTTP push of a key at the top of int64: %d %+v", status, eb)
					}
					f.mustUnchanged(before, "HTTP push of a key at the top of int64")
				}
				// A task inserted with it, under a project within the step:
				// the task's key is checked in its own table.
				far := newPush(ptr(f.latest())).project(models.Insert, 1+1<<32, "cid", "far").task(models.Insert, 3+1<<32, 1+1<<32, "t")
				if err := f.pushFn(cid, chunked)(far); !errors.Is(err, dbsync.ErrBadRequest) {
					t.Fatalf("a task 2^32+2 above the tasks' greatest key: %v, want ErrBadRequest", err)
				}
				f.mustUnchanged(before, "a task past the step")
				if err := f.pushFn(cid, chunked)(newPush(ptr(f.latest())).project(models.Insert, 1+1<<32, "cid", "far")); err != nil {
					t.Fatalf("a key 2^32 above the greatest: %v", err)
				}
			})
		}
	}
}

package server_test

import (
	"encoding/json"
	"sync"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestPushCopiesAtOnce sends copies of one push at once (a node retrying
// while its first request is still in flight): one is applied, every
// other is answered as its duplicate with the same version, whether it
// saw the push id recorded before the version lock or only under it (its
// insert of the push id then finds the record).
func TestPushCopiesAtOnce(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kind, nil)
			a, b := f.register(), f.register()
			if _, err := f.Srv.Push(ctx, b.id, newPush(nil).list(models.Insert, 1, "home").Ptr()); err != nil {
				t.Fatal(err)
			}
			p := newPush(ptr(1)).list(models.Insert, 2, "work").todo(models.Insert, 1, 2, "milk")
			raw, err := json.Marshal(p.req)
			if err != nil {
				t.Fatal(err)
			}
			const copies = 8
			resps := make([]*protocol.PushResponse, copies)
			var wg sync.WaitGroup
			for i := range resps {
				wg.Go(func() {
					var req protocol.PushRequest // each copy decoded, as the server receives it
					if err := json.Unmarshal(raw, &req); err != nil {
						t.Error(err)
						return
					}
					resp, err := f.Srv.Push(ctx, a.id, &req)
					if err != nil {
						t.Errorf("copy %d: %v", i, err)
					}
					resps[i] = resp
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			applied := 0
			for i, r := range resps {
				if r.NewVersionID != 2 {
					t.Fatalf("copy %d answered %+v, want version 2", i, r)
				}
				if !r.Duplicate {
					applied++
				}
			}
			if st := f.state(); applied != 1 || st.Versions != 2 || st.Operations != 3 || st.Pushes != 2 {
				t.Fatalf("%d copies applied, %d versions, %d operations, %d push ids; want 1, 2, 3, 2", applied, st.Versions, st.Operations, st.Pushes)
			}
		})
	}
}

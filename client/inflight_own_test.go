package client_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
)

// TestRefusedResendCopyApplied: a node's push is cut on its way, its
// resend refused (unique_conflict: another node took the name meanwhile)
// and the attempt dropped (merge.md X1); the other node gives the name
// up and the cut copy arrives and is applied, a version of the node it
// never settled. The node is neither restored nor a copy: its next sync
// must not be refused as a node older than its own pushes.
func TestRefusedResendCopyApplied(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := newInFlight(t, kind)
			insertList(t, f.b.DB, "one-a")
			if _, err := f.b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			var uc *dbsync.UniqueConstraintError
			if _, err := f.a.Sync(ctx); !errors.As(err, &uc) {
				t.Fatalf("a's resend: %v, want a unique conflict", err)
			}
			execSQL(t, f.b.DB, "UPDATE lists SET name = 'one-b' WHERE name = 'one-a'")
			if _, err := f.b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if status, out := f.deliver(t); status != http.StatusOK {
				t.Fatalf("the copy: %d %s", status, out)
			}
			if _, err := f.a.Sync(ctx); err != nil {
				t.Fatalf("a's sync after its cut copy was applied: %v", err)
			}
			f.converged(t)
		})
	}
}

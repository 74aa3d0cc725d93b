package peer_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/peer"
)

// TestPurgeChildOfForgottenParent: b deletes folder F and purges the
// tombstone before a (which holds F, out of reach longer than the horizon)
// learns of it; a then adds a doc in F. b's sync with a, whichever node
// starts it, must not fail for ever on the doc's reference to a folder b
// forgot: a resynchronizes, drops F, and the doc follows it (a delete wins).
func TestPurgeChildOfForgottenParent(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a := cfgNode(t, kind, nil, nil, stressModels()...)
			b := cfgNode(t, kind, nil, nil, stressModels()...)
			f := uuid.New()
			insert(t, a, &Folder{ID: f, Name: "f"})
			mustSync(t, b, a.AsPeer())
			exec(t, b, "DELETE FROM folders WHERE id = ?", f)
			tick()
			if k, err := b.Purge(ctx, time.Millisecond); err != nil || k != 1 {
				t.Fatalf("purge: %d, %v; want 1 tombstone", k, err)
			}
			insert(t, a, &Doc{ID: uuid.New(), FolderID: f, Body: "d"})
			mustSync(t, b, a.AsPeer())
			mustSync(t, a, b.AsPeer())
			for i, n := range []*peer.Node{a, b} {
				if folders, docs := count(t, n, "folders"), count(t, n, "docs"); folders != 0 || docs != 0 {
					t.Errorf("node %d holds %d folders and %d docs, want none", i, folders, docs)
				}
			}
			sameDigests(t, a, b)
		})
	}
}

// TestPurgeRefusedRowDeletedOnWriter: a writes folder F, then b purges
// with a horizon after F's write, before F reached it (a was out of reach
// longer than the horizon). b refuses F (it cannot tell it from a row it
// deleted and forgot); F must not stay on a alone: the refusal travels
// back as a tombstone, and both nodes end without F.
func TestPurgeRefusedRowDeletedOnWriter(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a := cfgNode(t, kind, nil, nil, stressModels()...)
			b := cfgNode(t, kind, nil, nil, stressModels()...)
			g := uuid.New()
			insert(t, b, &Folder{ID: g, Name: "g"})
			exec(t, b, "DELETE FROM folders WHERE id = ?", g)
			mustSync(t, a, b.AsPeer())
			insert(t, a, &Folder{ID: uuid.New(), Name: "f"})
			tick()
			if k, err := b.Purge(ctx, time.Millisecond); err != nil || k != 1 {
				t.Fatalf("purge: %d, %v; want 1 tombstone", k, err)
			}
			for range 2 {
				mustSync(t, b, a.AsPeer())
				mustSync(t, a, b.AsPeer())
			}
			if fa, fb := count(t, a, "folders"), count(t, b, "folders"); fa != 0 || fb != 0 {
				t.Fatalf("folders: a holds %d, b %d; want none", fa, fb)
			}
			tick()
			for _, n := range []*peer.Node{a, b} {
				if _, err := n.Purge(ctx, time.Millisecond); err != nil {
					t.Fatal(err)
				}
			}
			sameDigests(t, a, b)
		})
	}
}

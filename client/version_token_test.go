package client_test

import (
	"context"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

// TestVersionTokensRecorded: whichever way a node comes to hold a version
// (its push answered, a pull, a repair, a reset), it records the
// server's token for it, and names its version by it.
func TestVersionTokensRecorded(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := synctest.NewLocalServer(t, kind, nil)
			a := synctest.NewClient(t, s, "a", nil)
			b := synctest.NewClient(t, s, "b", nil)
			steps := []struct {
				name string
				c    *synctest.Client
				run  func() error
			}{
				{"push", a, func() error { insertList(t, a.DB, "a"); _, err := a.Push(ctx); return err }},
				{"pull", b, func() error { _, err := b.Pull(ctx); return err }},
				{"repair", a, func() error { _, err := a.Repair(ctx, nil); return err }},
				{"reset", b, func() error {
					insertList(t, a.DB, "a 2")
					if _, err := a.Push(ctx); err != nil {
						return err
					}
					_, err := b.Reset(ctx)
					return err
				}},
			}
			for _, st := range steps {
				if err := st.run(); err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				var version int64
				var token *string
				if err := st.c.DB.NewRaw(`SELECT v.version_id, t.token FROM sync_versions v
LEFT JOIN sync_version_tokens t ON t.version_id = v.version_id ORDER BY v.version_id DESC LIMIT 1`).Scan(ctx, &version, &token); err != nil {
					t.Fatal(err)
				}
				var want string
				if err := s.DB.NewRaw("SELECT token FROM sync_version_tokens WHERE version_id = ?", version).Scan(ctx, &want); err != nil {
					t.Fatal(err)
				}
				if token == nil || *token != want {
					t.Fatalf("after a %s, %s holds version %d with token %v, want the server's %q", st.name, st.c.Name, version, token, want)
				}
			}
		})
	}
}

package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

// TestServerLostVersionsRemade: a node holds version 3; the server's
// database is restored from a backup taken at version 1, and another
// node's pushes number new versions as those lost (up to the node's
// version, or past it). The node's next pull, push (whole or chunked) or
// watch names its version by number and token, and is answered
// repair_needed: by number alone, the pull would bring only the versions
// after 3 (none, or the new 4) and the push be rebased on them, the node
// keeping the lost rows and missing the new versions 2 and 3, silently.
// After Repair the node holds the server's rows, and syncs on.
func TestServerLostVersionsRemade(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := []struct {
		name   string
		remade int // versions the other node creates after the restore: 2 up to the node's, 3 past it
		run    func(context.Context, *synctest.Client) error
		force  bool // the node holds a change not pushed: Repair discards it
		chunk  int  // Config.PushChunkOperations
	}{
		{name: "pull/past", remade: 3, run: func(ctx context.Context, c *synctest.Client) error { _, err := c.Pull(ctx); return err }},
		{name: "pull/equal", remade: 2, run: func(ctx context.Context, c *synctest.Client) error { _, err := c.Pull(ctx); return err }},
		{name: "push/past", remade: 3, force: true, run: pushOne},
		{name: "push/equal", remade: 2, force: true, run: pushOne},
		{name: "chunked/past", remade: 3, force: true, chunk: 2, run: pushOne},
		{name: "watch/past", remade: 3, run: watchOnce},
		{name: "watch/equal", remade: 2, run: watchOnce},
	}
	for _, kind := range dbtest.Kinds {
		for _, tc := range cases {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				s := synctest.NewServer(t, kind, nil)
				a := synctest.NewClient(t, s, "a", &client.Config{PushChunkOperations: tc.chunk})
				b := synctest.NewClient(t, s, "b", nil)
				relExec(t, a.DB, "INSERT INTO lists (name) VALUES ('a 1')")
				if _, err := a.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				if _, err := b.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				restore := synctest.Backup(t, s.DB) // at version 1
				for _, name := range []string{"a 2", "a 3"} {
					relExec(t, a.DB, "INSERT INTO lists (name) VALUES (?)", name)
					if _, err := a.Sync(ctx); err != nil {
						t.Fatal(err)
					}
				}
				restore()
				for i := range tc.remade {
					relExec(t, b.DB, "INSERT INTO lists (name) VALUES (?)", fmt.Sprintf("b %d", i+2))
					if _, err := b.Sync(ctx); err != nil {
						t.Fatal(err)
					}
				}
				var latest int64
				if err := s.DB.NewRaw("SELECT MAX(version_id) FROM sync_versions").Scan(ctx, &latest); err != nil || latest != int64(1+tc.remade) {
					t.Fatalf("the server's latest version %d (%v), want %d", latest, err, 1+tc.remade)
				}
				if tc.force {
					for i := range 3 {
						relExec(t, a.DB, "INSERT INTO lists (name) VALUES (?)", fmt.Sprintf("a 4.%d", i))
					}
				}
				if err := tc.run(ctx, a); !errors.Is(err, dbsync.ErrRepairNeeded) {
					t.Fatalf("the node holding a lost version 3: %v, want ErrRepairNeeded", err)
				}
				if _, err := a.Repair(ctx, &client.RepairOptions{Force: tc.force}); err != nil {
					t.Fatal(err)
				}
				if d := synctest.Diff(synctest.Dump(t, a.DB, a.Reg), synctest.Dump(t, s.DB, a.Reg)); d != "" {
					t.Fatalf("after Repair the node and the server differ:\n%s", d)
				}
				sameToken(t, a, s)
				// Repaired, the node syncs on with the server's versions.
				relExec(t, a.DB, "INSERT INTO lists (name) VALUES ('a 5')")
				for _, c := range []*synctest.Client{a, b, a} {
					if _, err := c.Sync(ctx); err != nil {
						t.Fatalf("%s: %v", c.Name, err)
					}
				}
				for _, c := range []*synctest.Client{a, b} {
					if d := synctest.Diff(synctest.Dump(t, c.DB, c.Reg), synctest.Dump(t, s.DB, c.Reg)); d != "" {
						t.Fatalf("%s and the server differ:\n%s", c.Name, d)
					}
					sameToken(t, c, s)
				}
			})
		}
	}
}

// sameToken checks that the node names its version with the server's
// token for that version.
func sameToken(t *testing.T, c *synctest.Client, s *synctest.Server) {
	t.Helper()
	ctx := context.Background()
	var version int64
	var token string
	if err := c.DB.NewRaw(`SELECT v.version_id, t.token FROM sync_versions v
LEFT JOIN sync_version_tokens t ON t.version_id = v.version_id ORDER BY v.version_id DESC LIMIT 1`).Scan(ctx, &version, &token); err != nil {
		t.Fatalf("%s: its latest version's token: %v", c.Name, err)
	}
	var want string
	if err := s.DB.NewRaw("SELECT token FROM sync_version_tokens WHERE version_id = ?", version).Scan(ctx, &want); err != nil || token != want {
		t.Fatalf("%s holds version %d with token %q, the server %q (%v)", c.Name, version, token, want, err)
	}
}

// pushOne pushes the node's changes.
func pushOne(ctx context.Context, c *synctest.Client) error {
	_, err := c.Push(ctx)
	return err
}

// watchOnce watches until Watch returns, for at most a few seconds.
func watchOnce(ctx context.Context, c *synctest.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return c.Watch(ctx, nil)
}

package peer_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
)

// TestInvalidUTF8Key: a node's row written by SQL with a text key that is
// not valid UTF-8 (SQLite stores any bytes as text) makes Sync fail with a
// *dbsync.ValueError naming the table and the key, whichever side starts
// it, until the application deletes or rewrites the row by SQL; then the
// rest syncs, and the delete of that row is not sent: its key, sent, would
// name the peer's row "\uFFFD(", which stays. Before, the feed read the
// row by a key bun's literal had changed (invalid bytes replaced), found
// none, took it for a row deleted meanwhile, and Sync succeeded: the row
// stayed on its node, never synced, and nothing said so.
func TestInvalidUTF8Key(t *testing.T) {
	t.Parallel()
	const bad = "CAST(X'C328' AS TEXT)" // "\xc3("
	cases := []struct {
		name, fix string
		want      []string
	}{
		{"deleted", "DELETE FROM countries WHERE code = " + bad, []string{"country ok fine", "country \uFFFD( replaced"}},
		{"rewritten", "UPDATE countries SET code = 'fixed' WHERE code = " + bad, []string{"country fixed bad", "country ok fine", "country \uFFFD( replaced"}},
	}
	for _, kind := range dbtest.Kinds {
		for _, tc := range cases {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				a, b := countryNode(t, dbtest.KindSQLite), countryNode(t, kind)
				exec(t, b, "INSERT INTO countries (code, name) VALUES ('\uFFFD(', 'replaced')")
				exec(t, a, "INSERT INTO countries (code, name) VALUES ('ok', 'fine')")
				exec(t, a, "INSERT INTO countries (code, name) VALUES ("+bad+", 'bad')")
				for _, step := range []struct {
					name string
					err  func() error
				}{
					{"a syncs with b", func() error { _, err := a.Sync(ctx, b.AsPeer()); return err }},
					{"b syncs with a", func() error { _, err := b.Sync(ctx, a.AsPeer()); return err }},
				} {
					var ve *dbsync.ValueError
					if err := step.err(); !errors.As(err, &ve) || ve.Table != "countries" || ve.Key != "\xc3(" {
						t.Fatalf("%s: %v; want a *dbsync.ValueError naming countries and the key", step.name, err)
					}
				}
				exec(t, a, tc.fix)
				syncBoth(t, a, b)
				syncBoth(t, a, b)
				if got := countryContents(t, b); !slices.Equal(got, tc.want) {
					t.Errorf("b holds %q, want %q", got, tc.want)
				}
				if got := countryContents(t, a); !slices.Equal(got, tc.want) {
					t.Errorf("a holds %q, want %q", got, tc.want)
				}
			})
		}
	}
}

package client_test

import (
	"context"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/merge"
)

// TestPoliciesNameTrackedTables: Config.Policies is keyed by table name; a
// key that names no tracked table (a typo, the model's Go name) would leave
// that table under the default policy without a word, so New refuses it,
// naming the key.
func TestPoliciesNameTrackedTables(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := synctest.ClientSQLite(t, "testmodels", testmodels.CreateSchema, synctest.Models())
	reg, err := dbsync.Track(db, synctest.Models()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"todo", "Todo", "todos "} {
		_, err := client.New(ctx, db, reg, &client.Config{URL: "http://127.0.0.1:1/sync",
			Policies: map[string]merge.Policy{"lists": merge.ServerWins, key: merge.ServerWins}})
		if err == nil || !strings.Contains(err.Error(), "Config.Policies") || !strings.Contains(err.Error(), `"`+key+`"`) {
			t.Fatalf("Policies key %q: New gave %v, want an error naming Config.Policies and the key", key, err)
		}
	}
	if _, err := client.New(ctx, db, reg, &client.Config{URL: "http://127.0.0.1:1/sync",
		Policies: map[string]merge.Policy{"lists": merge.ServerWins, "todos": merge.LastWriteWins("title")}}); err != nil {
		t.Fatalf("Policies of tracked tables: %v", err)
	}
}

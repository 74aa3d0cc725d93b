package e2e_test

import (
	"context"
	"math"
	"strconv"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// A float changed from 0 to -0 (and back) on a PostgreSQL node reads back
// with the new sign on the server and on the other nodes, though = calls
// the two equal: the node's capture logs it, and the server and the
// other node write -0 as PostgreSQL keeps it (bun's literal -0 is the
// integer 0). Before, the update was not logged, and a -0 that reached a
// database by another way was written as 0.
func TestZeroSignReachesNodes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := synctest.NewServer(t, dbtest.KindPostgres, nil)
	node := func(name string) *synctest.Client {
		return synctest.NewClientWith(t, s, name, synctest.ClientOn(t, dbtest.KindPostgres, testmodels.CreateSchema, synctest.Models()), testmodels.CreateSchema, synctest.Models(), nil)
	}
	a, b := node("a"), node("b")
	note := "00000000-0000-4000-8000-000000000001"
	run(t, a.DB, "INSERT INTO notes (id, body, created, score) VALUES (?, 'milk', now(), 0)", note)
	mustSync(t, a)
	mustSync(t, b)
	for _, v := range []string{"'-0'", "0"} {
		run(t, a.DB, "UPDATE notes SET score = "+v+" WHERE id = ?", note)
		mustSync(t, a)
		mustSync(t, b)
		for _, n := range []struct {
			name string
			c    *synctest.Client
		}{{"a", a}, {"b", b}} {
			var score float64
			if err := n.c.DB.NewRaw("SELECT score FROM notes WHERE id = ?", note).Scan(ctx, &score); err != nil {
				t.Fatal(err)
			}
			if score != 0 || math.Signbit(score) != (v == "'-0'") {
				t.Fatalf("after score = %s, %s reads %s", v, n.name, strconv.FormatFloat(score, 'g', -1, 64))
			}
		}
		var score float64
		if err := s.DB.NewRaw("SELECT score FROM notes WHERE id = ?", note).Scan(ctx, &score); err != nil {
			t.Fatal(err)
		}
		if math.Signbit(score) != (v == "'-0'") {
			t.Fatalf("after score = %s, the server reads %s", v, strconv.FormatFloat(score, 'g', -1, 64))
		}
	}
}

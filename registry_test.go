package dbsync_test

import (
	"reflect"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
)

// account has two bare unique columns and one named composite.
type account struct {
	bun.BaseModel `bun:"table:accounts"`

	ID     int64  `bun:"id,pk,autoincrement"`
	Email  string `bun:"email,notnull,unique"`
	Handle string `bun:"handle,notnull,unique"`
	Org    int64  `bun:"org,notnull,unique:org_seat"`
	Seat   int64  `bun:"seat,notnull,unique:org_seat"`
}

// TestTrackBareUniques: each bare `unique` tag is a constraint of its own,
// as bun creates it, not one constraint over all of them (which would let
// a row sharing only the email pass every unique check).
func TestTrackBareUniques(t *testing.T) {
	t.Parallel()
	reg, err := dbsync.Track(dbtest.SQLite(t), (*account)(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"email"}, {"handle"}, {"org", "seat"}}
	if got := reg.Table("accounts").Uniques; !reflect.DeepEqual(got, want) {
		t.Fatalf("Uniques = %v, want %v", got, want)
	}
}

package dbsync_test

import (
	"errors"
	"reflect"
	"strings"
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

// accountAgain is another model of account's table.
type accountAgain struct {
	bun.BaseModel `bun:"table:accounts"`

	ID int64 `bun:"id,pk,autoincrement"`
}

// TestTrackTwice: a table is tracked once. The same model twice (with
// the same or another direction, in one call or through Registry.Track)
// and two models of one table are refused with dbsync.ErrInvalidModel
// naming the table, and the registry keeps the first.
func TestTrackTwice(t *testing.T) {
	t.Parallel()
	db := dbtest.SQLite(t)
	for _, c := range []struct {
		name   string
		models []any
	}{
		{"same model", []any{(*account)(nil), (*account)(nil)}},
		{"same model, another direction", []any{(*account)(nil), dbsync.PullOnly((*account)(nil))}},
		{"same model, wrapped both times", []any{dbsync.PushOnly((*account)(nil)), dbsync.PushOnly((*account)(nil))}},
		{"two models of one table", []any{(*account)(nil), (*accountAgain)(nil)}},
	} {
		_, err := dbsync.Track(db, c.models...)
		if !errors.Is(err, dbsync.ErrInvalidModel) || !strings.Contains(err.Error(), "accounts") {
			t.Errorf("%s: %v, want dbsync.ErrInvalidModel naming accounts", c.name, err)
		}
	}
	reg, err := dbsync.Track(db, (*account)(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Track(dbsync.PullOnly((*account)(nil))); !errors.Is(err, dbsync.ErrInvalidModel) || !strings.Contains(err.Error(), "accounts") {
		t.Fatalf("Registry.Track of a tracked model: %v, want dbsync.ErrInvalidModel naming accounts", err)
	}
	if d := reg.Table("accounts").Direction; d != dbsync.DirectionBoth {
		t.Fatalf("direction %v after the refused Track, want DirectionBoth", d)
	}
}

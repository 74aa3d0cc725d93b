package store_test

import (
	"context"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/store"
)

// parkRow has a unique column of each kind Park handles: bounded text, a
// small integer, a nullable text, a UUID and a float.
type parkRow struct {
	bun.BaseModel `bun:"table:park_rows"`

	ID   string    `bun:"id,pk"`
	Code string    `bun:"code,type:varchar(20),notnull,unique"`
	Num  int16     `bun:"num,notnull,unique"`
	Tag  *string   `bun:"tag,unique"`
	Ref  uuid.UUID `bun:"ref,type:uuid,notnull,unique"`
	Rate float64   `bun:"rate,notnull,unique"`
}

// TestParkSwap: rows exchanging every unique value are parked, then
// written in place by key, on both databases; parked rows hold values no
// other row holds, fitted to each column (a varchar(20) with 30-character
// keys, a smallint with no room below its values).
func TestParkSwap(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		ctx := context.Background()
		if _, err := db.NewCreateTable().Model((*parkRow)(nil)).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		reg, err := dbsync.Track(db, (*parkRow)(nil))
		if err != nil {
			t.Fatal(err)
		}
		tbl := reg.Table("park_rows")
		tagA, tagB := "ta", "tb"
		keyA, keyB := strings.Repeat("a", 30), strings.Repeat("b", 30)
		a := parkRow{ID: keyA, Code: "A", Num: -32768, Tag: &tagA, Ref: uuid.New(), Rate: 1.5}
		b := parkRow{ID: keyB, Code: "B", Num: -32767, Tag: &tagB, Ref: uuid.New(), Rate: 2.5}
		if _, err := db.NewInsert().Model(&[]parkRow{a, b}).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		swapped := []parkRow{
			{ID: keyA, Code: b.Code, Num: b.Num, Tag: b.Tag, Ref: b.Ref, Rate: b.Rate},
			{ID: keyB, Code: a.Code, Num: a.Num, Tag: a.Tag, Ref: a.Ref, Rate: a.Rate},
		}
		rows := []reflect.Value{reflect.ValueOf(swapped[0]), reflect.ValueOf(swapped[1])}
		// Without parking, the database refuses the swap.
		err = db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			return store.Write(ctx, tx, tbl, rows, true)
		})
		if err == nil {
			t.Fatal("a swap written without parking was accepted: the test cannot tell parking works")
		}
		err = db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if err := store.Park(ctx, tx, tbl, []string{keyB, keyA}, rows); err != nil {
				return err
			}
			var parked []parkRow
			if err := tx.NewSelect().Model(&parked).Order("id").Scan(ctx); err != nil {
				return err
			}
			for i, p := range parked {
				// SQLite does not enforce varchar lengths: the whole token is kept.
				fits := len(p.Code) <= 20 || db.Dialect().Name().String() == "sqlite"
				if p.Tag != nil || !strings.HasPrefix(p.Code, "\x01") || !fits || p.Num <= -32767 ||
					p.Ref == a.Ref || p.Ref == b.Ref || p.Rate == a.Rate || p.Rate == b.Rate {
					t.Errorf("parked row %d: %q %+v", i, p.Code, p)
				}
			}
			if parked[0].Code == parked[1].Code || parked[0].Num == parked[1].Num || parked[0].Rate == parked[1].Rate {
				t.Errorf("parked rows share a placeholder: %+v", parked)
			}
			return store.Write(ctx, tx, tbl, rows, true)
		})
		if err != nil {
			t.Fatal(err)
		}
		var got []parkRow
		if err := db.NewSelect().Model(&got).Order("id").Scan(ctx); err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || !reflect.DeepEqual(got[0], swapped[0]) || !reflect.DeepEqual(got[1], swapped[1]) {
			t.Fatalf("after the swap: %+v, want %+v", got, swapped)
		}
	})
}

// parkText has one unique text column and one unique float column.
type parkText struct {
	bun.BaseModel `bun:"table:park_texts"`

	ID   string  `bun:"id,pk"`
	Code string  `bun:"code,notnull,unique"`
	Rate float64 `bun:"rate,notnull,unique"`
}

// swapPark creates rows, parks the first two (exchanging code and rate)
// and writes them in place; it returns the error of the whole.
func swapPark(t *testing.T, db *bun.DB, rows []parkText) error {
	t.Helper()
	ctx := context.Background()
	if _, err := db.NewCreateTable().Model((*parkText)(nil)).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	reg, err := dbsync.Track(db, (*parkText)(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.NewInsert().Model(&rows).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	a, b := rows[0], rows[1]
	a.Code, b.Code, a.Rate, b.Rate = b.Code, a.Code, b.Rate, a.Rate
	writes := []reflect.Value{reflect.ValueOf(a), reflect.ValueOf(b)}
	return parkWrite(db, reg.Table("park_texts"), []string{a.ID, b.ID}, writes)
}

// parkWrite parks the rows keys of tbl and writes writes, in one
// transaction.
func parkWrite(db *bun.DB, tbl *dbsync.Table, keys []string, writes []reflect.Value) error {
	return db.RunInTx(context.Background(), nil, func(ctx context.Context, tx bun.Tx) error {
		if err := store.Park(ctx, tx, tbl, keys, writes); err != nil {
			return err
		}
		return store.Write(ctx, tx, tbl, writes, true)
	})
}

// TestParkPlaceholderHeld: a row already holding the text a parked row
// would take (any node can push such a row) does not block the swap: the
// placeholder cannot be guessed in advance.
func TestParkPlaceholderHeld(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		err := swapPark(t, db, []parkText{
			{ID: "a", Code: "A", Rate: 1},
			{ID: "b", Code: "B", Rate: 2},
			{ID: "x", Code: "\x01dbsync-parked:a", Rate: 3},
			{ID: "y", Code: "\x01dbsync-parked:b", Rate: 4},
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestParkFloatMagnitude: float placeholders stay distinct where
// subtracting 1 no longer changes a value (beyond 2^53), and are found
// above the values when a row holds the most negative float.
func TestParkFloatMagnitude(t *testing.T) {
	t.Parallel()
	for name, rates := range map[string][2]float64{"large": {-1e17, -9e16}, "limit": {-math.MaxFloat64, 1}} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dbtest.Each(t, func(t *testing.T, db *bun.DB) {
				t.Parallel()
				err := swapPark(t, db, []parkText{
					{ID: "a", Code: "A", Rate: rates[0]},
					{ID: "b", Code: "B", Rate: rates[1]},
				})
				if err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

// parkOwner and parkEntry: entries unique per owner and day, a composite
// constraint whose columns have no placeholder (a time) or reference
// another table.
type parkOwner struct {
	bun.BaseModel `bun:"table:park_owners"`

	ID int64 `bun:"id,pk,autoincrement"`
}

type parkEntry struct {
	bun.BaseModel `bun:"table:park_entries"`

	ID      string     `bun:"id,pk"`
	OwnerID int64      `bun:"owner_id,notnull,unique:owner_day,unique:owner_note"`
	Day     time.Time  `bun:"day,notnull,unique:owner_day"`
	Slot    int32      `bun:"slot,notnull,unique:owner_day"`
	Note    string     `bun:"note,notnull,unique:owner_note"`
	Owner   *parkOwner `bun:"rel:belongs-to,join:owner_id=id"`
}

// TestParkComposite: a swap of days, slots and notes between two entries
// of one owner parks one column per constraint: never the time, for which
// there is no placeholder, nor the owner, which must keep referencing a
// row (the reference is checked at once here).
func TestParkComposite(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		ctx := context.Background()
		if _, err := db.NewCreateTable().Model((*parkOwner)(nil)).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := db.NewCreateTable().Model((*parkEntry)(nil)).WithForeignKeys().Exec(ctx); err != nil {
			t.Fatal(err)
		}
		reg, err := dbsync.Track(db, (*parkOwner)(nil), (*parkEntry)(nil))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.NewInsert().Model(&parkOwner{ID: 1}).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		d1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		d2 := d1.AddDate(0, 0, 1)
		rows := []parkEntry{{ID: "a", OwnerID: 1, Day: d1, Slot: 1, Note: "x"}, {ID: "b", OwnerID: 1, Day: d2, Slot: 2, Note: "y"}}
		if _, err := db.NewInsert().Model(&rows).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		a, b := rows[0], rows[1]
		a.Day, b.Day, a.Slot, b.Slot, a.Note, b.Note = d2, d1, 2, 1, "y", "x"
		writes := []reflect.Value{reflect.ValueOf(a), reflect.ValueOf(b)}
		tbl := reg.Table("park_entries")
		if err := parkWrite(db, tbl, []string{"a", "b"}, writes); err != nil {
			t.Fatal(err)
		}
		var got []parkEntry
		if err := db.NewSelect().Model(&got).Order("id").Scan(ctx); err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || !got[0].Day.Equal(d2) || !got[1].Day.Equal(d1) || got[0].Note != "y" || got[0].OwnerID != 1 {
			t.Fatalf("after the swap: %+v", got)
		}
	})
}

// parkTag has a nullable unique column.
type parkTag struct {
	bun.BaseModel `bun:"table:park_tags"`

	ID  string  `bun:"id,pk"`
	Tag *string `bun:"tag,unique"`
}

// TestParkNullsNotDistinct: on PostgreSQL 15, a nullable column whose
// unique constraint treats NULLs as equal is not parked as NULL (two
// parked rows, or a row already NULL, would collide).
func TestParkNullsNotDistinct(t *testing.T) {
	t.Parallel()
	db := dbtest.Open(t, dbtest.KindPostgres)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE park_tags (id text PRIMARY KEY, tag text UNIQUE NULLS NOT DISTINCT)`); err != nil {
		t.Fatal(err)
	}
	reg, err := dbsync.Track(db, (*parkTag)(nil))
	if err != nil {
		t.Fatal(err)
	}
	ta, tb := "A", "B"
	rows := []parkTag{{ID: "a", Tag: &ta}, {ID: "b", Tag: &tb}, {ID: "n"}}
	if _, err := db.NewInsert().Model(&rows).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	writes := []reflect.Value{reflect.ValueOf(parkTag{ID: "a", Tag: &tb}), reflect.ValueOf(parkTag{ID: "b", Tag: &ta})}
	tbl := reg.Table("park_tags")
	if err := parkWrite(db, tbl, []string{"a", "b"}, writes); err != nil {
		t.Fatal(err)
	}
}

// parkLimits has integer unique columns whose rows hold the limits of
// their types: a Go int16, and a Go int64 in a PostgreSQL integer.
type parkLimits struct {
	bun.BaseModel `bun:"table:park_limits"`

	ID    string `bun:"id,pk"`
	Small int16  `bun:"small,notnull,unique"`
	Mid   int64  `bun:"mid,type:integer,notnull,unique"`
}

// TestParkIntegerLimits: rows holding both limits of a column's type (any
// node can push them) leave no room beyond its values; the placeholders
// are then free values inside the range, sized to the database's column.
func TestParkIntegerLimits(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		ctx := context.Background()
		if _, err := db.NewCreateTable().Model((*parkLimits)(nil)).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		reg, err := dbsync.Track(db, (*parkLimits)(nil))
		if err != nil {
			t.Fatal(err)
		}
		rows := []parkLimits{
			{ID: "a", Small: -32768, Mid: -2147483648},
			{ID: "b", Small: 32767, Mid: 2147483647},
		}
		if _, err := db.NewInsert().Model(&rows).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		writes := []reflect.Value{
			reflect.ValueOf(parkLimits{ID: "a", Small: 32767, Mid: 2147483647}),
			reflect.ValueOf(parkLimits{ID: "b", Small: -32768, Mid: -2147483648}),
		}
		tbl := reg.Table("park_limits")
		if err := parkWrite(db, tbl, []string{"a", "b"}, writes); err != nil {
			t.Fatal(err)
		}
	})
}

// parkSlot is an item at a position of its list, positions checked to be
// non-negative (a common schema).
type parkSlot struct {
	bun.BaseModel `bun:"table:park_slots"`

	ID  string `bun:"id,pk"`
	Pos int64  `bun:"pos,notnull,unique"`
}

// TestParkCheckNonNegative: an integer placeholder goes above the values
// first, so that a CHECK (pos >= 0) does not refuse the parked rows.
func TestParkCheckNonNegative(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		ctx := context.Background()
		if _, err := db.ExecContext(ctx, `CREATE TABLE park_slots (id TEXT PRIMARY KEY, pos BIGINT NOT NULL UNIQUE CHECK (pos >= 0))`); err != nil {
			t.Fatal(err)
		}
		reg, err := dbsync.Track(db, (*parkSlot)(nil))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.NewInsert().Model(&[]parkSlot{{ID: "a", Pos: 0}, {ID: "b", Pos: 1}}).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		writes := []reflect.Value{reflect.ValueOf(parkSlot{ID: "a", Pos: 1}), reflect.ValueOf(parkSlot{ID: "b", Pos: 0})}
		if err := parkWrite(db, reg.Table("park_slots"), []string{"a", "b"}, writes); err != nil {
			t.Fatal(err)
		}
	})
}

package oplog_test

import (
	"math"
	"slices"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/oplog"
)

// zeroRow has float columns of both widths, and a float in a numeric
// column (PostgreSQL; REAL on SQLite, where bun reads no integer into a
// float).
type zeroRow struct {
	bun.BaseModel `bun:"table:zero_rows"`

	ID     int64   `bun:"id,pk,autoincrement"`
	Double float64 `bun:"double,notnull"`
	Single float32 `bun:"single,notnull"`
	Amount float64 `bun:"amount,notnull"`
}

// A float that changes sign at zero (0 to -0, and back) is an update
// whenever the node reads the other sign back, though = calls the two
// equal: PostgreSQL's float columns keep the sign, so it is logged there.
// SQLite's REAL columns store -0.0 as 0: nothing changed, nothing is
// logged. The same value written again is no update either way, nor is
// a numeric's new scale, which a float reads as the same number.
func TestCaptureZeroSign(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			db := dbtest.Open(t, kind)
			ctx := t.Context()
			ddl := "CREATE TABLE zero_rows (id INTEGER PRIMARY KEY AUTOINCREMENT, double REAL NOT NULL, single REAL NOT NULL, amount REAL NOT NULL)"
			negZero := "-0.0"
			if kind == dbtest.KindPostgres {
				ddl = "CREATE TABLE zero_rows (id BIGSERIAL PRIMARY KEY, double DOUBLE PRECISION NOT NULL, single REAL NOT NULL, amount NUMERIC NOT NULL)"
				negZero = "'-0'"
			}
			if _, err := db.ExecContext(ctx, ddl); err != nil {
				t.Fatal(err)
			}
			reg, err := dbsync.Track(db, (*zeroRow)(nil))
			if err != nil {
				t.Fatal(err)
			}
			b := &bundle{db: db}
			if b.reg, err = oplog.Install(ctx, db, reg, nil); err != nil {
				t.Fatal(err)
			}
			// read returns what the node reads back: the signs, and the
			// amount.
			type values struct {
				double, single bool
				amount         float64
			}
			read := func() values {
				t.Helper()
				var r zeroRow
				if err := db.NewSelect().Model(&r).Where("id = 1").Scan(ctx); err != nil {
					t.Fatal(err)
				}
				return values{math.Signbit(r.Double), math.Signbit(float64(r.Single)), r.Amount}
			}
			if _, err := db.ExecContext(ctx, "INSERT INTO zero_rows (double, single, amount) VALUES (0, 0, 1)"); err != nil {
				t.Fatal(err)
			}
			want := []string{"zero_rows:i:1"}
			last := read()
			for _, q := range []string{
				"UPDATE zero_rows SET double = " + negZero,
				"UPDATE zero_rows SET double = " + negZero,
				"UPDATE zero_rows SET single = " + negZero,
				"UPDATE zero_rows SET double = 0",
				"UPDATE zero_rows SET single = 0",
				"UPDATE zero_rows SET single = 0",
				"UPDATE zero_rows SET amount = 1.00",
				"UPDATE zero_rows SET amount = 0.00",
				"UPDATE zero_rows SET amount = 0",
			} {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
				if now := read(); now != last {
					want = append(want, "zero_rows:u:1")
					last = now
				}
			}
			if kind == dbtest.KindPostgres && len(want) != 6 {
				t.Fatalf("PostgreSQL read back %d changes, want 5", len(want)-1)
			}
			if got := b.logged(t); !slices.Equal(got, want) {
				t.Fatalf("logged %q, want %q", got, want)
			}
		})
	}
}

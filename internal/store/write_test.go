package store_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/schema"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/internal/testmodels"
)

// lowered is written as an SQL expression, lower('…'), which has no bound
// equivalent: rows holding one are written as literals.
type lowered string

func (l lowered) AppendQuery(gen schema.QueryGen, b []byte) ([]byte, error) {
	b = append(b, "lower("...)
	b = gen.Dialect().AppendString(b, string(l))
	return append(b, ')'), nil
}

var _ schema.QueryAppender = lowered("")

type exprRow struct {
	bun.BaseModel `bun:"table:expr_rows"`

	ID   int64    `bun:"id,pk"`
	Name *lowered `bun:"name"`
	N    int64    `bun:"n,notnull"`
}

// TestWriteInTx writes the same rows outside a transaction (multi-row
// literal INSERTs) and inside one (on SQLite, prepared statements of up
// to 100 rows, with bound values): the database holds the same values, of
// the same types, either way, for every column kind, in every write mode.
func TestWriteInTx(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		t.Parallel()
		ctx := context.Background()
		if err := testmodels.CreateSchema(ctx, db); err != nil {
			t.Fatal(err)
		}
		if _, err := db.NewCreateTable().Model((*exprRow)(nil)).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		reg, err := dbsync.Track(db, append(testmodels.All(), (*exprRow)(nil))...)
		if err != nil {
			t.Fatal(err)
		}
		notes, exprs := reg.Table("notes"), reg.Table("expr_rows")
		f := func(x float64) *float64 { return &x }
		created := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("x", 3600))
		bodies := []string{"", "plain", "it's", "''", "héllo ✓", "bad \xff utf-8", strings.Repeat("long ", 200)}
		scores := []*float64{nil, f(0), f(3), f(0.1), f(-1.5), f(1e300), f(math.SmallestNonzeroFloat64), f(123456.789)}
		datas := [][]byte{nil, {}, {0, 1, 255}, []byte("text")}
		var ns []testmodels.Note
		for i := range 250 {
			n := testmodels.Note{
				ID:      uuid.New(),
				Body:    bodies[i%len(bodies)],
				Created: created.Add(time.Duration(i) * time.Second),
				Data:    datas[i%len(datas)],
				Score:   scores[i%len(scores)],
				Count:   []int32{0, 1, -1, math.MaxInt32, math.MinInt32}[i%5],
			}
			if i%3 == 0 {
				n.Tag = sql.NullString{String: fmt.Sprint("tag ", i), Valid: true}
			}
			if i%2 == 0 {
				n.Meta = json.RawMessage(fmt.Sprintf(`{"i": %d, "s": "it's"}`, i))
			}
			ns = append(ns, n)
		}
		var es []exprRow
		for i := range 10 {
			es = append(es, exprRow{ID: int64(i + 1), N: int64(i)})
			if i == 4 || i == 7 {
				name := lowered(fmt.Sprint("NAME", i))
				es[i].Name = &name // rows bound, then written as literals from here
			}
		}
		noteRows := values(ns)
		exprRows := values(es)
		snapshot := func(inTx bool) string {
			t.Helper()
			for _, tbl := range []*dbsync.Table{notes, exprs} {
				if err := store.DeleteAll(ctx, db, tbl); err != nil {
					t.Fatal(err)
				}
			}
			write := func(ctx context.Context, db bun.IDB) error {
				if err := store.Write(ctx, db, notes, noteRows[:150], false); err != nil {
					return err
				}
				if err := store.Write(ctx, db, notes, noteRows[100:200], true); err != nil {
					return err
				}
				inserted, err := store.WriteReporting(ctx, db, notes, noteRows[180:])
				if err != nil {
					return err
				}
				if len(inserted) != 50 {
					return fmt.Errorf("%d rows reported inserted, want 50", len(inserted))
				}
				return store.Write(ctx, db, exprs, exprRows, true)
			}
			if inTx {
				err = db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error { return write(ctx, tx) })
			} else {
				err = write(ctx, db)
			}
			if err != nil {
				t.Fatal(err)
			}
			return dump(t, db, "notes", "id") + dump(t, db, "expr_rows", "id")
		}
		literal, inTx := snapshot(false), snapshot(true)
		if literal != inTx {
			t.Fatalf("rows differ:\nliteral:\n%s\nin a transaction:\n%s", literal, inTx)
		}
		// A value bun cannot write fails the same way in both.
		bad := values([]testmodels.Note{{ID: uuid.New(), Body: "nul \x00 byte"}})
		errOut := store.Write(ctx, db, notes, bad, false)
		errIn := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			return store.Write(ctx, tx, notes, bad, false)
		})
		if errOut == nil || errIn == nil {
			t.Fatalf("a NUL byte was written: %v, %v", errOut, errIn)
		}
	})
}

func values[T any](rows []T) []reflect.Value {
	out := make([]reflect.Value, len(rows))
	for i := range rows {
		out[i] = reflect.ValueOf(&rows[i]).Elem()
	}
	return out
}

// dump prints every row of a table, each column with its storage type on
// SQLite.
func dump(t *testing.T, db *bun.DB, table, order string) string {
	t.Helper()
	ctx := context.Background()
	rows, err := db.DB.QueryContext(ctx, fmt.Sprintf("SELECT * FROM %s ORDER BY %s", table, order))
	if err != nil {
		t.Fatal(err)
	}
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%#v\n", vals)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if dialect.MustOf(db) == dialect.SQLite {
		var exprs []string
		for _, c := range cols {
			exprs = append(exprs, fmt.Sprintf("typeof(%q)", c))
		}
		q := fmt.Sprintf("SELECT group_concat(%s, ',') FROM %s", strings.Join(exprs, " || ' ' || "), table)
		var types string
		if err := db.DB.QueryRowContext(ctx, q).Scan(&types); err != nil {
			t.Fatal(err)
		}
		b.WriteString(types + "\n")
	}
	return b.String()
}

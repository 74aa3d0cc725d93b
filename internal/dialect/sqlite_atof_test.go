package dialect_test

import (
	"context"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// TestSQLiteReads: dialect.SQLiteReads reads a literal as the driver's
// SQLite does, bit for bit: floats of every exponent (random bits),
// short decimals, float32 literals and odd spellings. A writer relies on
// it to keep bun's literal only where SQLite reads it exactly; an update
// of the driver changing SQLite's reading fails here.
func TestSQLiteReads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := dbtest.SQLite(t)
	r := rand.New(rand.NewPCG(5, 6))
	// (No "-0": in SQL that is the negation of the integer 0, not a
	// literal SQLite reads as a float; writers leave zeros alone.)
	lits := []string{"0", "1", "-1", "0.1", "1e-300", "8.198266419197551e+254", "1.7976931348623157e+308",
		"5e-324", "2.2250738585072014e-308", "123456789012345678901234567890", "0.000000000000000000000000000001",
		"18446744073709551615", "18446744073709551616", "9007199254740993", "1.5e10000", "1e-10000"}
	for len(lits) < 20000 {
		switch len(lits) % 4 {
		case 0: // any finite double
			if x := math.Float64frombits(r.Uint64()); !math.IsNaN(x) && !math.IsInf(x, 0) {
				lits = append(lits, strconv.FormatFloat(x, 'g', -1, 64))
			}
		case 1: // a short decimal
			lits = append(lits, strconv.FormatFloat(float64(r.IntN(100000))/math.Pow(10, float64(r.IntN(8))), 'g', -1, 64))
		case 2: // a float32, as bun writes one
			if x := math.Float32frombits(r.Uint32()); !math.IsNaN(float64(x)) && !math.IsInf(float64(x), 0) {
				lits = append(lits, strconv.FormatFloat(float64(x), 'g', -1, 32))
			}
		case 3: // a 17-digit value of a moderate exponent
			lits = append(lits, strconv.FormatFloat((1+r.Float64())*math.Pow(10, float64(r.IntN(60)-30)), 'g', -1, 64))
		}
	}
	for start := 0; start < len(lits); start += 500 {
		part := lits[start:min(start+500, len(lits))]
		values := make([]string, len(part))
		for i, l := range part {
			values[i] = "(CAST(" + l + " AS REAL))"
		}
		var got []float64
		if err := db.NewRaw("SELECT column1 FROM (VALUES "+strings.Join(values, ", ")+")").Scan(ctx, &got); err != nil {
			t.Fatal(err)
		}
		for i, l := range part {
			want, ok := dialect.SQLiteReads([]byte(l))
			if !ok {
				t.Fatalf("SQLiteReads(%s): not read", l)
			}
			if math.Float64bits(want) != math.Float64bits(got[i]) {
				t.Errorf("SQLiteReads(%s) = %s, SQLite reads %s", l, strconv.FormatFloat(want, 'g', -1, 64), strconv.FormatFloat(got[i], 'g', -1, 64))
			}
		}
	}
	for _, bad := range []string{"", "-", ".", "e5", "1e", "1e+", "1x", "--1", "1.2.3", "NaN", "Inf"} {
		if _, ok := dialect.SQLiteReads([]byte(bad)); ok {
			t.Errorf("SQLiteReads(%q) read", bad)
		}
	}
}

package dialect_test

import (
	"context"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// TestAppendExactReal: SQLite evaluates AppendExactReal's expression to
// exactly its float, across the whole range (subnormals, the largest
// values, both signs), where it reads some shortest decimal literals as a
// neighbour.
func TestAppendExactReal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := dbtest.SQLite(t)
	r := rand.New(rand.NewPCG(1, 2))
	xs := []float64{1e-300, 8.198266419197551e+254, 0.1, -0.30000000000000004, 1, -1, 3,
		math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64, -math.SmallestNonzeroFloat64,
		0x1p-1022, 0x1.fffffffffffffp-1023, math.MaxFloat32, math.SmallestNonzeroFloat32, 1 << 62, 0x1p1023}
	for len(xs) < 3000 {
		if x := math.Float64frombits(r.Uint64()); x != 0 && !math.IsNaN(x) && !math.IsInf(x, 0) {
			xs = append(xs, x)
		}
	}
	literalWrong := 0
	for _, x := range xs {
		expr := string(dialect.AppendExactReal(nil, x))
		lit := strconv.FormatFloat(x, 'g', -1, 64)
		var got, fromLiteral float64
		var typ string
		if err := db.NewRaw("SELECT "+expr+", typeof("+expr+"), CAST("+lit+" AS REAL)").Scan(ctx, &got, &typ, &fromLiteral); err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		if got != x || typ != "real" {
			t.Errorf("%s (for %s) reads %s, a %s", expr, lit, strconv.FormatFloat(got, 'g', -1, 64), typ)
		}
		if fromLiteral != x {
			literalWrong++
		}
	}
	// What the expression is for: SQLite misreads literals.
	if literalWrong == 0 {
		t.Errorf("SQLite read all %d literals exactly", len(xs))
	}
}

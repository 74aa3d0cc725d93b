package dialect_test

import (
	"math"
	"reflect"
	"strconv"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// TestSQLiteArg checks that the value bound in place of each literal bun
// writes is stored exactly as the literal is: same storage class, same
// value read back.
func TestSQLiteArg(t *testing.T) {
	t.Parallel()
	db := dbtest.SQLite(t)
	ctx := t.Context()
	lits := []string{
		"NULL", "TRUE", "FALSE", "0", "-0", "42", "-7",
		"-9223372036854775808", "9223372036854775807", "9223372036854775808", "18446744073709551615",
		"0.1", "-1.5", "3", "123456.789", strconv.FormatFloat(math.MaxFloat64, 'f', -1, 64),
		strconv.FormatFloat(math.SmallestNonzeroFloat64, 'f', -1, 64),
		"''", "'x'", "'it''s'", "''''", "'a''''b'", "'héllo ✓'", "'NaN'", "'2026-01-02 03:04:05.123456+00:00'",
		"X''", "X'00ff10'",
	}
	for _, lit := range lits {
		v, ok := dialect.SQLiteArg([]byte(lit))
		if !ok {
			t.Errorf("%s: no binding", lit)
			continue
		}
		var wantType, gotType string
		var want, got any
		if err := db.DB.QueryRowContext(ctx, "SELECT typeof("+lit+"), "+lit).Scan(&wantType, &want); err != nil {
			t.Fatalf("%s: %v", lit, err)
		}
		if err := db.DB.QueryRowContext(ctx, "SELECT typeof(?1), ?1", v).Scan(&gotType, &got); err != nil {
			t.Fatalf("%s: %v", lit, err)
		}
		if gotType != wantType || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: bound %s %#v, literal %s %#v", lit, gotType, got, wantType, want)
		}
	}
	for _, lit := range []string{"", "?!(bun: string contains NUL)", "'a' || 'b'", "'abc", "'a'b'", "X'0g'", "X'0'",
		"1.", ".5", "-", "1e5", "abs(1)", "--1", "CURRENT_TIMESTAMP"} {
		if v, ok := dialect.SQLiteArg([]byte(lit)); ok {
			t.Errorf("%q: bound as %#v, want no binding", lit, v)
		}
	}
}

package dialect

import (
	"fmt"
	"hash/crc32"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// QuoteIdent quotes an SQL identifier (a table, column, trigger or function
// name) for both databases.
func QuoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// QuoteLiteral quotes an SQL string literal for both databases.
func QuoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9_]+`)

// ObjectName builds the name of an object dbsync creates for a table (a
// trigger, a trigger function, an index) from a prefix and the table's
// name: lower case letters, digits and underscores, at most max bytes. A
// table name that has to be cleaned or shortened gets the CRC-32 of the
// original name as a suffix, which another table's name may spell out:
// callers refuse such pairs ([ObjectNameClash]).
//
// The names are stored in databases: a caller's prefix and max must never
// change (oplog uses 63, PostgreSQL's limit; peer 55, leaving room for the
// suffixes of its SQLite triggers).
func ObjectName(prefix, table string, max int) string {
	clean := strings.ToLower(unsafeName.ReplaceAllString(table, "_"))
	name := prefix + clean
	if len(name) > max || clean != table {
		sum := fmt.Sprintf("_%08x", crc32.ChecksumIEEE([]byte(table)))
		if len(name) > max-len(sum) {
			name = name[:max-len(sum)]
		}
		name += sum
	}
	return name
}

// ObjectNameClash reports two of tables whose [ObjectName]s under prefix
// and max are the same, and that name: a name that had to be cleaned or
// shortened ends with a CRC-32 suffix, which another table's own name may
// spell out. The objects of the second would replace the first's.
func ObjectNameClash(prefix string, max int, tables []string) (a, b, name string, ok bool) {
	seen := make(map[string]string, len(tables))
	for _, t := range tables {
		n := ObjectName(prefix, t, max)
		if other, dup := seen[n]; dup {
			return other, t, n, true
		}
		seen[n] = t
	}
	return "", "", "", false
}

// NegativeZero is the literal of a float's negative zero that k keeps in
// a float column: bun writes -0, which both databases read as the integer
// 0 (PostgreSQL then stores 0, SQLite the integer 0). SQLite's REAL
// columns store -0.0 as 0 still; its columns without a type keep it.
func NegativeZero(k Kind) string {
	if k == Postgres {
		return "'-0'"
	}
	return "-0.0"
}

// AppendExactReal appends a SQLite expression that evaluates to exactly
// x, a finite float other than zero: SQLite's reading of a decimal
// literal is not correctly rounded at large exponents (1e-300 reads as
// 9.999999999999999e-301, 8.198266419197551e+254 as
// 8.19826641919755e+254), so a value written as bun writes it (its
// shortest decimal form) could be stored as a neighbour. x is m·2^e for
// an integer m below 2^53: the expression takes m as a REAL (exact) and
// scales it by powers of two written as integers (exact), each step exact
// as every intermediate lies between m and x.
func AppendExactReal(b []byte, x float64) []byte {
	frac, exp := math.Frexp(x)
	m := int64(frac * (1 << 53))
	e := exp - 53
	for m%2 == 0 && e < 0 {
		m /= 2
		e++
	}
	b = append(b, "(CAST("...)
	b = strconv.AppendInt(b, m, 10)
	b = append(b, " AS REAL)"...)
	op := " * "
	if e < 0 {
		op, e = " / ", -e
	}
	for e > 0 {
		step := min(e, 60)
		b = append(b, op...)
		b = strconv.AppendUint(b, uint64(1)<<step, 10)
		b = append(b, ".0"...)
		e -= step
	}
	return append(b, ')')
}

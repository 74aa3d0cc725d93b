package store

import (
	"fmt"
	"slices"
	"strings"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// UpdateChanged returns the SQL condition, in a row trigger of kind, that an
// update changed a tracked column of t other than its key: an UPDATE that
// changes none (a no-op, or one of columns the model does not hold) is
// not logged, so that it does not carry the node's stale values over
// other nodes' changes. An update that changes what the node reads back
// is one, though the column's = may call the values equal. On
// PostgreSQL values are compared as they are for classes whose equality
// is exact (int, bool, uuid, time, bytes), else as text in the C
// collation: a column type's = may be looser than its value (citext and
// case-insensitive collations ignore case, box compares areas, numeric
// ignores scale, jsonb numbers too) or missing (json). Floats compare
// with = and then by their sign at zero: = takes -0 for 0, and their text
// is no exact test (it is rounded under extra_float_digits < 1). On
// SQLite values compare with IS NOT, and text byte for byte: its REAL
// columns keep no -0.0 (they store it as 0).
func UpdateChanged(t *dbsync.Table, kind dialect.Kind) string {
	var conds []string
	for _, c := range t.Columns {
		if c == t.PK {
			continue
		}
		col := string(c.Field().SQLName)
		// Text compares byte for byte, whatever the column's collation
		// (NOCASE, a nondeterministic ICU one): a case-only edit is one.
		switch {
		case kind == dialect.SQLite:
			conds = append(conds, fmt.Sprintf("NEW.%s IS NOT OLD.%s COLLATE BINARY", col, col))
		case slices.Contains([]string{"int", "bool", "uuid", "time", "bytes"}, c.Class()):
			conds = append(conds, fmt.Sprintf("NEW.%s IS DISTINCT FROM OLD.%s", col, col))
		case c.Class() == "float":
			// A float's text at zero is "0" or "-0", whatever the
			// setting; a numeric has no -0. Only zeros are printed.
			conds = append(conds, fmt.Sprintf("NEW.%s IS DISTINCT FROM OLD.%s OR (NEW.%s = '0' AND (NEW.%s::text = '-0') IS DISTINCT FROM (OLD.%s::text = '-0'))", col, col, col, col, col))
		default:
			conds = append(conds, fmt.Sprintf(`NEW.%s::text COLLATE "C" IS DISTINCT FROM OLD.%s::text COLLATE "C"`, col, col))
		}
	}
	if len(conds) == 0 {
		return "FALSE"
	}
	return "(" + strings.Join(conds, " OR ") + ")"
}

package testmodels

import "strings"

// OddTextKeys returns text primary keys that sync tests write and expect
// every node to hold as written: empty and blank keys, keys that differ
// only in case, trailing spaces or Unicode normalization, long keys, SQL
// and bun placeholder syntax, control characters, and keys that read as
// numbers, NULL or JSON.
func OddTextKeys() []string {
	return []string{
		"", " ", "a ", "a", "A", " a", "  ",
		strings.Repeat("k", 2100), strings.Repeat("é", 1100),
		"'", "''", `\`, `\\`, `"`, "%", "_", "a%", "a_", "?", "??", "?0", "$1", "$$", ":name", "@p1",
		"a\nb", "\t", "\r\n", "\x01", "\x7f", "\u2028", "\ufeff",
		"😀", "👨‍👩‍👧", "\u00e9", "e\u0301", "\uFFFD",
		"null", "NULL", "0", "00", "-0", "+0", "0.0", "1e3", "1E3", "0x10", "1 ", " 1", "true",
		`{"a":1}`, `[1,2]`, `"q"`, "{}", "[]", "' OR 1=1 --", "); DROP TABLE t; --",
		"a/b", "a?b=c&d", "#x", "..", "a+b", "%2F",
	}
}

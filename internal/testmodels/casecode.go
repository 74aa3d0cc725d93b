package testmodels

import (
	"context"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// CaseCode has a text key whose collation ignores case: SQLite's NOCASE,
// a nondeterministic ICU collation on PostgreSQL (CreateCaseCodes).
type CaseCode struct {
	bun.BaseModel `bun:"table:case_codes"`
	Code          string `bun:"code,pk"`
	Name          string `bun:"name,notnull"`
}

// CreateCaseCodes creates CaseCode's table (and, on PostgreSQL, its
// collation) if they are missing.
func CreateCaseCodes(ctx context.Context, db bun.IDB) error {
	qs := []string{"CREATE TABLE IF NOT EXISTS case_codes (code TEXT COLLATE NOCASE PRIMARY KEY, name TEXT NOT NULL)"}
	if db.Dialect().Name() == dialect.PG {
		qs = []string{
			"CREATE COLLATION IF NOT EXISTS case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false)",
			"CREATE TABLE IF NOT EXISTS case_codes (code TEXT COLLATE case_insensitive PRIMARY KEY, name TEXT NOT NULL)",
		}
	}
	for _, q := range qs {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

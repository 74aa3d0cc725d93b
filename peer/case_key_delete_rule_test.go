package peer_test

import (
	"context"
	"testing"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
)

// Fam is a parent whose children (FamTag) have a text key that ignores case.
type Fam struct {
	bun.BaseModel `bun:"table:fams"`
	ID            string `bun:"id,pk"`
	Name          string `bun:"name,notnull"`
}

// TagNote references a FamTag.
type TagNote struct {
	bun.BaseModel `bun:"table:tag_notes"`
	ID            string  `bun:"id,pk"`
	TagCode       *string `bun:"tag_code"`
}

// FamTag references a Fam (ON DELETE SET NULL).
type FamTag struct {
	bun.BaseModel `bun:"table:tags"`
	Code          string  `bun:"code,pk"`
	FamID         *string `bun:"fam_id"`
}

func createFamTags(ctx context.Context, db bun.IDB) error {
	coll := "COLLATE NOCASE"
	var qs []string
	if db.Dialect().Name() == dialect.PG {
		coll = "COLLATE case_insensitive"
		qs = append(qs, "CREATE COLLATION IF NOT EXISTS case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
	}
	qs = append(qs,
		"CREATE TABLE IF NOT EXISTS fams (id TEXT PRIMARY KEY, name TEXT NOT NULL)",
		"CREATE TABLE IF NOT EXISTS tags (code TEXT "+coll+" PRIMARY KEY, fam_id TEXT REFERENCES fams (id) ON DELETE SET NULL)",
		"CREATE TABLE IF NOT EXISTS tag_notes (id TEXT PRIMARY KEY, tag_code TEXT "+coll+" REFERENCES tags (code) ON DELETE CASCADE ON UPDATE CASCADE)")
	for _, q := range qs {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// TestCaseOnlyKeyEditOfOrphan: a node respells a tag's key ("x" to "X",
// a case-only edit; a note references the tag) after another node
// deleted the tag's family. On the deleting node the delete rule turns
// the respelled write into a delete (its family is gone there): the tag
// and its note go there as on the editing node, which the family's
// delete reaches. Before, the respelling renamed the
// row in place after the delete skipped it (held under the old
// spelling): b held a live "X" under the tombstones of both spellings, a
// none, and the digests did not tell.
func TestCaseOnlyKeyEditOfOrphan(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			models := []any{(*Fam)(nil), (*FamTag)(nil), (*TagNote)(nil)}
			a := synctest.NewTemplateNode(t, kind, "fam_tags", createFamTags, models, nil)
			b := synctest.NewTemplateNode(t, kind, "fam_tags", createFamTags, models, nil)
			exec(t, a, "INSERT INTO fams (id, name) VALUES ('f', 'family')")
			exec(t, a, "INSERT INTO tags (code, fam_id) VALUES ('x', 'f')")
			exec(t, a, "INSERT INTO tag_notes (id, tag_code) VALUES ('n', 'x')")
			syncBoth(t, a, b)
			tick()
			exec(t, b, "DELETE FROM fams WHERE id = 'f'")
			tick()
			exec(t, a, "UPDATE tags SET code = 'X' WHERE code = 'x'")
			syncBoth(t, b, a)
			syncBoth(t, a, b)
			for name, n := range map[string]interface{ DB() *bun.DB }{"a": a, "b": b} {
				var rows []string
				if err := n.DB().NewRaw("SELECT code || ' ' || COALESCE(fam_id, '-') FROM tags ORDER BY code").Scan(ctx, &rows); err != nil {
					t.Fatal(err)
				}
				var notes []string
				if err := n.DB().NewRaw("SELECT id || ' ' || COALESCE(tag_code, '-') FROM tag_notes").Scan(ctx, &notes); err != nil {
					t.Fatal(err)
				}
				if len(notes) != 0 {
					t.Errorf("%s holds notes %q, want none: they reference the deleted tag", name, notes)
				}
				if len(rows) != 0 {
					t.Errorf("%s holds tags %q, want none: the family's delete won over the tag referencing it", name, rows)
				}
			}
			sameDigests(t, a, b)
		})
	}
}

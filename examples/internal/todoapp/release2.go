package todoapp

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/go-dbsync/dbsync"
)

// Release 2 of the application gives items a note: an additive schema
// change (a nullable column). A server and its nodes upgrade one at a
// time: a release-1 node keeps syncing with a release-2 server (it
// neither sees nor changes notes), and a node that upgrades receives the
// notes of its items with its next sync.

// TodoV2 is release 2's Todo.
type TodoV2 struct {
	bun.BaseModel `bun:"table:todos"`

	ID      uuid.UUID `bun:"id,pk,type:uuid"`
	ListID  uuid.UUID `bun:"list_id,notnull,type:uuid"`
	Title   string    `bun:"title,notnull"`
	Done    bool      `bun:"done,notnull"`
	Updated time.Time `bun:"updated,notnull"`
	Note    *string   `bun:"note"`

	List *List `bun:"rel:belongs-to,join:list_id=id,on_delete:CASCADE"`
}

// ModelsV2 are release 2's tracked models.
func ModelsV2() []any { return []any{(*List)(nil), (*Member)(nil), (*TodoV2)(nil)} }

// SetupV2 is Setup for release 2: it creates the tables, migrates a
// release-1 database (MigrateV2) and returns the registry of release 2's
// models.
func SetupV2(ctx context.Context, db *bun.DB) (*dbsync.Registry, error) {
	if _, err := Setup(ctx, db); err != nil {
		return nil, err
	}
	if err := MigrateV2(ctx, db); err != nil {
		return nil, err
	}
	return dbsync.Track(db, ModelsV2()...)
}

// MigrateV2 adds the note column to todos, unless it is there.
func MigrateV2(ctx context.Context, db bun.IDB) error {
	q := `SELECT count(*) FROM pragma_table_info('todos') WHERE name = 'note'`
	if db.Dialect().Name() == dialect.PG {
		q = `SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'todos' AND column_name = 'note'`
	}
	var n int
	if err := db.NewRaw(q).Scan(ctx, &n); err != nil {
		return fmt.Errorf("migrate to release 2: %w", err)
	}
	if n > 0 {
		return nil
	}
	if _, err := db.ExecContext(ctx, `ALTER TABLE todos ADD COLUMN note VARCHAR`); err != nil {
		return fmt.Errorf("migrate to release 2: %w", err)
	}
	return nil
}

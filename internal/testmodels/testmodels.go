// Package testmodels holds the bun models used by dbsync's own tests and
// benchmarks: lists and todos (integer keys, a foreign key with ON DELETE
// CASCADE, a unique column) and notes (UUID keys, every column kind).
package testmodels

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
)

// List is a parent table with an integer key and a unique name.
type List struct {
	bun.BaseModel `bun:"table:lists"`

	ID   int64  `bun:"id,pk,autoincrement"`
	Name string `bun:"name,notnull,unique"`
}

// Todo belongs to a list; deleting the list deletes its todos.
type Todo struct {
	bun.BaseModel `bun:"table:todos"`

	ID     int64  `bun:"id,pk,autoincrement"`
	ListID int64  `bun:"list_id,notnull"`
	Title  string `bun:"title,notnull"`
	Done   bool   `bun:"done,notnull,default:false"`
	List   *List  `bun:"rel:belongs-to,join:list_id=id,on_delete:CASCADE"`
}

// Note has a UUID key and one column of each kind the codec handles.
type Note struct {
	bun.BaseModel `bun:"table:notes"`

	ID      uuid.UUID       `bun:"id,pk,type:uuid"`
	Body    string          `bun:"body,notnull"`
	Created time.Time       `bun:"created,notnull"`
	Data    []byte          `bun:"data"`
	Score   *float64        `bun:"score"`
	Tag     sql.NullString  `bun:"tag"`
	Count   int32           `bun:"count,notnull,default:0"`
	Meta    json.RawMessage `bun:"meta,type:jsonb"`
}

// All returns the models in dependency order.
func All() []any { return []any{(*List)(nil), (*Todo)(nil), (*Note)(nil)} }

// CreateSchema creates the tables of All, with their foreign keys.
func CreateSchema(ctx context.Context, db bun.IDB) error {
	for _, m := range All() {
		if _, err := db.NewCreateTable().Model(m).IfNotExists().WithForeignKeys().Exec(ctx); err != nil {
			return fmt.Errorf("create %T: %w", m, err)
		}
	}
	return nil
}

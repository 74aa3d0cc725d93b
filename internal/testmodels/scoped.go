package testmodels

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
)

// Project is the root of a scoped (multi-user) schema: owned by a user,
// shared with others through members.
type Project struct {
	bun.BaseModel `bun:"table:projects"`

	ID      int64  `bun:"id,pk,autoincrement"`
	OwnerID string `bun:"owner_id,notnull"`
	Name    string `bun:"name,notnull"`
}

// Member shares a project with a user.
type Member struct {
	bun.BaseModel `bun:"table:members"`

	ID        int64    `bun:"id,pk,autoincrement"`
	ProjectID int64    `bun:"project_id,notnull"`
	UserID    string   `bun:"user_id,notnull"`
	Project   *Project `bun:"rel:belongs-to,join:project_id=id,on_delete:CASCADE"`
}

// Task belongs to a project; deleting the project deletes its tasks.
type Task struct {
	bun.BaseModel `bun:"table:tasks"`

	ID        int64    `bun:"id,pk,autoincrement"`
	ProjectID int64    `bun:"project_id,notnull"`
	Title     string   `bun:"title,notnull"`
	Project   *Project `bun:"rel:belongs-to,join:project_id=id,on_delete:CASCADE"`
}

// Tag is a table every user reads and none writes.
type Tag struct {
	bun.BaseModel `bun:"table:tags"`

	ID   int64  `bun:"id,pk,autoincrement"`
	Name string `bun:"name,notnull"`
}

// Scoped returns the models of the multi-user schema, in dependency order.
func Scoped() []any { return []any{(*Tag)(nil), (*Project)(nil), (*Member)(nil), (*Task)(nil)} }

// CreateScoped creates the tables of Scoped, with their foreign keys and
// the indexes the scope rules use.
func CreateScoped(ctx context.Context, db bun.IDB) error {
	for _, m := range Scoped() {
		if _, err := db.NewCreateTable().Model(m).IfNotExists().WithForeignKeys().Exec(ctx); err != nil {
			return fmt.Errorf("create %T: %w", m, err)
		}
	}
	for _, ix := range []struct{ name, table, col string }{
		{"projects_owner", "projects", "owner_id"},
		{"members_user", "members", "user_id"},
		{"members_project", "members", "project_id"},
		{"tasks_project", "tasks", "project_id"},
	} {
		if _, err := db.NewCreateIndex().IfNotExists().Index(ix.name).Table(ix.table).Column(ix.col).Exec(ctx); err != nil {
			return fmt.Errorf("create index %s: %w", ix.name, err)
		}
	}
	return nil
}

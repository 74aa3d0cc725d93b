package testmodels

import (
	"context"

	"github.com/uptrace/bun"
)

// TreeParent, TreeChild and TreeGrandchild are three levels, each
// referencing the one above ON DELETE CASCADE, for the tests of rows that
// move away from deleted parents (PostgreSQL fires CASCADE at once, even
// with the constraint deferred). Parent names are unique.
type TreeParent struct {
	bun.BaseModel `bun:"table:tree_parents"`

	ID   int64  `bun:"id,pk,autoincrement"`
	Name string `bun:"name,notnull,unique"`
}

// TreeChild belongs to a parent.
type TreeChild struct {
	bun.BaseModel `bun:"table:tree_children"`

	ID       int64       `bun:"id,pk,autoincrement"`
	ParentID int64       `bun:"parent_id,notnull"`
	Title    string      `bun:"title,notnull"`
	Parent   *TreeParent `bun:"rel:belongs-to,join:parent_id=id,on_delete:CASCADE"`
}

// TreeGrandchild belongs to a child.
type TreeGrandchild struct {
	bun.BaseModel `bun:"table:tree_grandchildren"`

	ID      int64      `bun:"id,pk,autoincrement"`
	ChildID int64      `bun:"child_id,notnull"`
	Title   string     `bun:"title,notnull"`
	Child   *TreeChild `bun:"rel:belongs-to,join:child_id=id,on_delete:CASCADE"`
}

// TreeNode references itself: a tree in one table.
type TreeNode struct {
	bun.BaseModel `bun:"table:tree_nodes"`

	ID       int64     `bun:"id,pk,autoincrement"`
	ParentID *int64    `bun:"parent_id"`
	Name     string    `bun:"name,notnull"`
	Parent   *TreeNode `bun:"rel:belongs-to,join:parent_id=id,on_delete:CASCADE"`
}

// Nodes returns the self-referencing model.
func Nodes() []any { return []any{(*TreeNode)(nil)} }

// CreateNodes creates tree_nodes with its foreign key.
func CreateNodes(ctx context.Context, db bun.IDB) error {
	_, err := db.NewCreateTable().Model((*TreeNode)(nil)).IfNotExists().WithForeignKeys().Exec(ctx)
	return err
}

// Tree returns the tree models, parents first.
func Tree() []any {
	return []any{(*TreeParent)(nil), (*TreeChild)(nil), (*TreeGrandchild)(nil)}
}

// CreateTree creates the tree tables with their foreign keys.
func CreateTree(ctx context.Context, db bun.IDB) error {
	for _, m := range Tree() {
		if _, err := db.NewCreateTable().Model(m).IfNotExists().WithForeignKeys().Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

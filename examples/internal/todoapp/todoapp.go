// Package todoapp is the shared part of the example to-do application:
// its bun models (lists owned by a user and shared with others through
// list_members, todos in lists; foreign keys between them, list names
// unique per owner, UUID keys so nodes never collide), the server's scope
// rules (each user's devices hold that user's lists and the lists shared
// with them), database opening and schema creation.
package todoapp

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/sqliteshim"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/server"
)

// List is a named to-do list of its owner (a user name, the principal
// the server bound the owner's devices to). Deleting a list deletes its
// items and memberships.
type List struct {
	bun.BaseModel `bun:"table:lists"`

	ID      uuid.UUID `bun:"id,pk,type:uuid"`
	OwnerID string    `bun:"owner_id,notnull,unique:lists_owner_name"`
	Name    string    `bun:"name,notnull,unique:lists_owner_name"`
}

// Member shares a list with a user: that user's devices receive the list
// and its items, and may edit them.
type Member struct {
	bun.BaseModel `bun:"table:list_members"`

	ID     uuid.UUID `bun:"id,pk,type:uuid"`
	ListID uuid.UUID `bun:"list_id,notnull,type:uuid"`
	UserID string    `bun:"user_id,notnull"`

	List *List `bun:"rel:belongs-to,join:list_id=id,on_delete:CASCADE"`
}

// Todo is an item of a list. Deleting a list deletes its items.
type Todo struct {
	bun.BaseModel `bun:"table:todos"`

	ID      uuid.UUID `bun:"id,pk,type:uuid"`
	ListID  uuid.UUID `bun:"list_id,notnull,type:uuid"`
	Title   string    `bun:"title,notnull"`
	Done    bool      `bun:"done,notnull"`
	Updated time.Time `bun:"updated,notnull"`

	List *List `bun:"rel:belongs-to,join:list_id=id,on_delete:CASCADE"`
}

// Models are the tracked models, parents first.
func Models() []any { return []any{(*List)(nil), (*Member)(nil), (*Todo)(nil)} }

// Scopes are the server's partial-sync rules: a list is its owner's and
// its members'; memberships and items follow their list. A device holds
// and may write only those rows; a member may edit a shared list's items
// and share it further, not take it over (change its owner).
func Scopes() server.Scopes {
	return server.Scopes{
		"lists":        server.AnyOf(server.OwnedBy("owner_id"), server.MemberOf("list_members", "list_id", "user_id")),
		"list_members": server.ThroughParent("list_id"),
		"todos":        server.ThroughParent("list_id"),
	}
}

// Open opens a database: a PostgreSQL URL (postgres://…) or a SQLite file
// path (optionally prefixed with sqlite:).
func Open(dsn string) (*bun.DB, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return nil, err
		}
		q := u.Query()
		if q.Get("default_query_exec_mode") == "" {
			q.Set("default_query_exec_mode", "simple_protocol")
		}
		u.RawQuery = q.Encode()
		sqldb, err := sql.Open("pgx", u.String())
		if err != nil {
			return nil, err
		}
		return bun.NewDB(sqldb, pgdialect.New()), nil
	}
	path := strings.TrimPrefix(dsn, "sqlite:")
	// WAL, a busy timeout, foreign keys on, and immediate transactions so
	// that concurrent writers wait rather than fail.
	sqldb, err := sql.Open(sqliteshim.ShimName, "file:"+path+
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=recursive_triggers(1)&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	return bun.NewDB(sqldb, sqlitedialect.New()), nil
}

// Setup creates the application's tables (if missing) and returns the
// registry of tracked models.
func Setup(ctx context.Context, db *bun.DB) (*dbsync.Registry, error) {
	for _, m := range Models() {
		if _, err := db.NewCreateTable().Model(m).IfNotExists().WithForeignKeys().Exec(ctx); err != nil {
			return nil, fmt.Errorf("create table: %w", err)
		}
	}
	return dbsync.Track(db, Models()...)
}

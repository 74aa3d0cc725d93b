// Command quickstart is the README's quick start: a dbsync server and one
// client in one process. The client writes, syncs, and the server holds
// the row.
//
//	go run ./examples/quickstart
//	go run ./examples/quickstart -server-db 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver, for PostgreSQL
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/sqliteshim"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/server"
)

// Todo is a tracked model: the same on the server and on every client.
type Todo struct {
	bun.BaseModel `bun:"table:todos"`

	ID    uuid.UUID `bun:"id,pk,type:uuid"`
	Title string    `bun:"title,notnull"`
	Done  bool      `bun:"done,notnull"`
}

func main() {
	serverDB := flag.String("server-db", "quickstart-server.db", "the server's database: a SQLite file or a postgres:// URL")
	clientDB := flag.String("client-db", "quickstart-client.db", "the client's SQLite file")
	addr := flag.String("addr", "127.0.0.1:8080", "the address the server listens on")
	flag.Parse()
	if err := run(context.Background(), *serverDB, *clientDB, *addr, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// openSQLite opens a SQLite file as dbsync needs it: WAL, a busy timeout,
// foreign keys and recursive triggers on (REPLACE's deletes are captured),
// and immediate transactions (writers wait, not fail).
func openSQLite(path string) (*bun.DB, error) {
	sqldb, err := sql.Open(sqliteshim.ShimName, "file:"+path+
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=recursive_triggers(1)&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	return bun.NewDB(sqldb, sqlitedialect.New()), nil
}

// openServerDB opens PostgreSQL (a postgres:// URL) with pgx, or a SQLite
// file.
func openServerDB(dsn string) (*bun.DB, error) {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return openSQLite(dsn)
	}
	sqldb, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, err
	}
	return bun.NewDB(sqldb, pgdialect.New()), nil
}

// token is what a client must show to register (the application would
// use its own login instead).
const token = "quickstart-token"

func run(ctx context.Context, serverDSN, clientPath, addr string, out io.Writer) error {
	// The server: its database and its tables (the application creates
	// them, as usual; dbsync adds its own sync_* tables and triggers).
	sdb, err := openServerDB(serverDSN)
	if err != nil {
		return err
	}
	defer sdb.Close()
	if _, err := sdb.NewCreateTable().Model((*Todo)(nil)).IfNotExists().Exec(ctx); err != nil {
		return err
	}
	reg, err := dbsync.Track(sdb, (*Todo)(nil)) // what to synchronize
	if err != nil {
		return err
	}
	srv, err := server.New(ctx, sdb, reg, &server.Config{ // sync tables + capture triggers
		// Who may register a node (required): the application checks the
		// caller's credentials, here a shared token; server.OpenRegistration
		// would let anyone in.
		AuthorizeRegister: func(ctx context.Context, info *server.RegisterInfo) (*server.Registration, error) {
			if info.Credentials != "Bearer "+token {
				return nil, errors.New("unknown token") // 403
			}
			return &server.Registration{}, nil
		},
	})
	if err != nil {
		return err
	}
	r := chi.NewRouter()
	r.Mount("/sync", handlers.New(srv, nil)) // register, push, pull, repair, query
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	// An http.Server with timeouts, so slow or idle clients cannot hold
	// connections open forever (use hs.ServeTLS in production).
	hs := handlers.NewHTTPServer(addr, r, nil)
	go func() {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Print(err)
		}
	}()
	defer hs.Close()
	defer srv.Close() // runs first: answers held watch requests

	// A client: the application's own SQLite file, with its own tables.
	cdb, err := openSQLite(clientPath)
	if err != nil {
		return err
	}
	defer cdb.Close()
	if _, err := cdb.NewCreateTable().Model((*Todo)(nil)).IfNotExists().Exec(ctx); err != nil {
		return err
	}
	creg, err := dbsync.Track(cdb, (*Todo)(nil))
	if err != nil {
		return err
	}
	c, err := client.New(ctx, cdb, creg, &client.Config{URL: "http://" + ln.Addr().String() + "/sync"})
	if err != nil {
		return err
	}
	if ok, err := c.IsRegistered(ctx); err != nil {
		return err
	} else if !ok {
		if _, err := c.RegisterWith(ctx, &client.RegisterOptions{Credentials: "Bearer " + token}); err != nil {
			return err
		}
	}

	// Write as you like, online or offline: models, bulk updates, raw SQL.
	// All captured.
	if _, err := cdb.NewInsert().Model(&Todo{ID: uuid.New(), Title: "milk"}).Exec(ctx); err != nil {
		return err
	}
	if _, err := cdb.ExecContext(ctx, "UPDATE todos SET done = true"); err != nil {
		return err
	}

	// Back online: push; if the server moved on, pull + merge, push again.
	res, err := c.Sync(ctx) // also c.Push, c.Pull, c.Repair, c.Query
	var uc *dbsync.UniqueConstraintError
	if errors.As(err, &uc) {
		// A unique value taken on both sides: change the rows named in
		// uc.Entries, then sync again.
		return fmt.Errorf("rename the rows %v, then sync again: %w", uc.Entries, err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "synced:", res) // e.g. "synced: pushed 1 operation(s); at version 1"
	return nil
}

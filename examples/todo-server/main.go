// Command todo-server is the sync server of the to-do example, for many
// users: each user's devices hold that user's lists and the lists shared
// with them (partial sync: server.Config.Scopes, todoapp.Scopes).
//
//	go run ./examples/todo-server -users alice:s3cret,bob:hunter2   # SQLite file todo-server.db
//	go run ./examples/todo-server -open -db postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//
// Who may register a node, as which user, must be chosen: -users (or
// TODO_USERS) gives each user a token, and a device registering with a
// token (todo -token) is bound to its user; -open lets anyone in as the
// user their token names (for trying it out). The database can also come
// from the TODO_DB environment variable. The server logs one line per
// sync procedure (the metrics hook) and seals direct writes to its
// database into a version every few seconds.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/examples/internal/todoapp"
	"github.com/go-dbsync/dbsync/handlers"
	"github.com/go-dbsync/dbsync/server"
)

func main() {
	if err := run(os.Args[1:]); errors.Is(err, flag.ErrHelp) {
		return // -h: the usage is printed
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "todo-server:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("todo-server", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	dsn := fs.String("db", envOr("TODO_DB", "todo-server.db"), "server database: a SQLite file or a postgres:// URL (env TODO_DB)")
	users := fs.String("users", os.Getenv("TODO_USERS"), "the users and their registration tokens, user:token,… (env TODO_USERS)")
	open := fs.Bool("open", false, "let anyone register a node, as the user its token names")
	proxies := fs.String("trusted-proxies", "", "address ranges (CIDR, comma-separated) of the reverse proxies in front: their X-Forwarded-For names the client the registration bound counts")
	v2 := fs.Bool("v2", false, "serve release 2 of the application (items get a note; migrates the database); release-1 clients keep syncing")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *proxies != "" {
		for _, p := range strings.Split(*proxies, ",") {
			if _, err := netip.ParsePrefix(p); err != nil {
				return fmt.Errorf("-trusted-proxies: %w", err)
			}
		}
	}
	authorize := todoapp.AnyUser
	switch {
	case *users != "":
		tokens, err := todoapp.ParseUsers(*users)
		if err != nil {
			return err
		}
		authorize = todoapp.UserTokens(tokens)
	case !*open:
		return errors.New("choose who may register nodes: -users alice:TOKEN,bob:TOKEN (or TODO_USERS), or -open for anyone")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	db, err := todoapp.Open(*dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	setup := todoapp.Setup
	if *v2 {
		setup = todoapp.SetupV2
	}
	reg, err := setup(ctx, db)
	if err != nil {
		return err
	}
	srv, err := server.New(ctx, db, reg, &server.Config{
		Logger:            log,
		AuthorizeRegister: authorize,
		Scopes:            todoapp.Scopes(),
		OnEvent: func(ctx context.Context, e dbsync.Event) {
			// A metrics hook: here a log line; in production a Prometheus
			// counter and histogram, or an OpenTelemetry instrument.
			log.InfoContext(ctx, "sync event", slog.String("op", e.Op), slog.Int64("node", e.NodeID),
				slog.Duration("duration", e.Duration), slog.Int64("operations", e.Operations), slog.Any("error", e.Err))
		},
	})
	if err != nil {
		return err
	}
	r := chi.NewRouter()
	if *proxies != "" {
		// Only behind proxies that set X-Forwarded-For: the client's
		// address is read from the hops they added, never from a header
		// a client sent (chi's RealIP would take that one).
		r.Use(middleware.ClientIPFromXFF(strings.Split(*proxies, ",")...))
	}
	r.Mount("/sync", handlers.New(srv, &handlers.Config{Logger: log}))
	hs := handlers.NewHTTPServer(*addr, r, nil)

	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if v, err := srv.Seal(ctx); err != nil {
					log.Warn("seal", slog.String("error", err.Error()))
				} else if v > 0 {
					log.Info("direct writes sealed", slog.Int64("version", v))
				}
			}
		}
	}()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = hs.Shutdown(shutdown)
	}()
	log.Info("todo-server listening", slog.String("url", "http://"+*addr+"/sync"), slog.String("db", *dsn))
	if err := hs.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

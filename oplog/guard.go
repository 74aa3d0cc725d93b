package oplog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
)

// ErrRefused is the cause recorded when [Guard] refuses a statement. The
// caller itself sees context.Canceled: a bun query hook can stop a statement
// only by cancelling its context.
var ErrRefused = errors.New("dbsync: statement refused: it would escape change capture")

// Guard is a bun query hook that protects the capture of tracked tables.
// Install it on the handle the application writes through:
//
//	db = db.WithQueryHook(oplog.NewGuard(reg, logger))
//
// It refuses (the statement never reaches the database, the caller gets
// context.Canceled and the reason is logged at error level):
//
//   - DROP TABLE of a tracked table (its rows would vanish without deletes
//     being logged);
//   - ALTER TABLE … RENAME of a tracked table or of one of its columns;
//   - ALTER TABLE … DISABLE TRIGGER (or ENABLE REPLICA TRIGGER) on a
//     tracked table (PostgreSQL), which stops its capture;
//   - DROP TRIGGER / DROP FUNCTION of dbsync's capture objects.
//
// Other ALTER TABLE statements on tracked tables are allowed with a warning:
// on SQLite a table rebuild drops its triggers. Run schema changes of
// tracked tables through [Migrate] (or client.Client.Migrate): the Guard
// lets every statement of its migration function through, and the capture
// is back before the migration commits.
//
// Raw SQL, bulk updates and cascades need no guard: the triggers capture
// them.
type Guard struct {
	tracked map[string]bool
	log     *slog.Logger
}

var _ bun.QueryHook = (*Guard)(nil)

// NewGuard returns a Guard for the registry's tables. A nil logger
// discards.
func NewGuard(reg *dbsync.Registry, logger *slog.Logger) *Guard {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Guard{tracked: map[string]bool{}, log: logger}
	for _, t := range reg.Tables() {
		g.tracked[strings.ToLower(t.Name)] = true
	}
	return g
}

// BeforeQuery implements bun.QueryHook.
func (g *Guard) BeforeQuery(ctx context.Context, e *bun.QueryEvent) context.Context {
	if ctx.Value(migrating{}) != nil {
		return ctx // Migrate re-installs the capture before it commits
	}
	reason, warn := g.Inspect(e.Query)
	if reason != "" {
		g.log.ErrorContext(ctx, "oplog: statement refused", slog.String("reason", reason), slog.String("query", truncate(e.Query)))
		c, cancel := context.WithCancelCause(ctx)
		cancel(fmt.Errorf("%w: %s", ErrRefused, reason))
		return c
	}
	if warn != "" {
		g.log.WarnContext(ctx, "oplog: "+warn, slog.String("query", truncate(e.Query)))
	}
	return ctx
}

// AfterQuery implements bun.QueryHook.
func (g *Guard) AfterQuery(context.Context, *bun.QueryEvent) {}

// Inspect classifies one SQL statement: a non-empty reason means it must be
// refused, a non-empty warning that it is allowed but worth a log line.
func (g *Guard) Inspect(query string) (reason, warning string) {
	w := words(query, 8)
	if len(w) < 3 {
		return "", ""
	}
	switch {
	case w[0] == "drop" && w[1] == "table":
		for _, name := range tableList(w[2:]) {
			if g.tracked[name] {
				return "DROP TABLE of tracked table " + name, ""
			}
		}
	case w[0] == "drop" && (w[1] == "trigger" || w[1] == "function"):
		for _, name := range w[2:] {
			if strings.HasPrefix(strings.TrimLeft(unqualify(name), "_"), "sync_") {
				return "dropping capture object " + name, ""
			}
		}
	case w[0] == "alter" && w[1] == "table":
		rest := w[2:]
		for len(rest) > 0 && (rest[0] == "if" || rest[0] == "exists" || rest[0] == "only") {
			rest = rest[1:]
		}
		if len(rest) == 0 || !g.tracked[unqualify(rest[0])] {
			return "", ""
		}
		for i, word := range rest[1:] {
			if word == "rename" {
				return "renaming tracked table " + unqualify(rest[0]) + " or its columns", ""
			}
			// DISABLE TRIGGER (ALL, USER or dbsync's) stops the capture;
			// ENABLE REPLICA TRIGGER keeps it to the replica role.
			if word == "disable" || word == "enable" && i+2 < len(rest) && rest[i+2] == "replica" {
				return "disabling triggers of tracked table " + unqualify(rest[0]), ""
			}
		}
		return "", "ALTER TABLE on tracked table " + unqualify(rest[0]) + " outside oplog.Migrate: run schema changes through it (client.Client.Migrate on a node), since a SQLite table rebuild drops the capture triggers"
	}
	return "", ""
}

// words returns the first n words of a statement, lowercased, with quotes
// removed, splitting on whitespace, commas, parentheses and semicolons.
func words(q string, n int) []string {
	var out []string
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			out = append(out, strings.ToLower(cur.String()))
			cur.Reset()
		}
	}
	for _, r := range q {
		if len(out) >= n {
			break
		}
		switch r {
		case ' ', '\t', '\n', '\r', ',', '(', ')', ';':
			flush()
		case '"', '`', '[', ']':
		default:
			cur.WriteRune(r)
		}
	}
	flush()
	if len(out) > n {
		out = out[:n]
	}
	return out
}

func tableList(w []string) []string {
	var out []string
	for _, x := range w {
		switch x {
		case "if", "exists", "cascade", "restrict":
			continue
		}
		out = append(out, unqualify(x))
	}
	return out
}

func unqualify(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[i+1:]
	}
	return name
}

func truncate(q string) string {
	if len(q) > 200 {
		return q[:200] + "…"
	}
	return q
}

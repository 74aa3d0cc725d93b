package oplog_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
	"github.com/go-dbsync/dbsync/models"
	"github.com/go-dbsync/dbsync/oplog"
)

// TestLogInTx logs the same operations through Log in a transaction
// (prepared statements on SQLite, unnest of arrays on PostgreSQL), in a
// transaction of dialect.ApplyTx (COPY on PostgreSQL) and through
// multi-row literals: the log holds the same entries, in the order given,
// each way.
func TestLogInTx(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := insertDB(t, kind, true)
			v := int64(3)
			rowIDs := []string{"1", "it's", `back\slash`, "héllo ✓", "", "{1,2}", `"q"`, "NULL",
				`\N`, "tab\there", "line\nbreak\r", `\.`, "emoji 🙂", strings.Repeat("long ", 400)}
			var ops []models.Operation
			for i := range 2500 {
				op := models.Operation{RowID: rowIDs[i%len(rowIDs)] + fmt.Sprint(i), ContentTypeID: int64(i % 4),
					Command: []models.Command{models.Insert, models.Update, models.Delete}[i%3]}
				if i%5 != 0 {
					op.VersionID = &v
				}
				ops = append(ops, op)
			}
			bad := append([]models.Operation{{RowID: "bad \xff utf-8", ContentTypeID: 1, Command: models.Insert}}, ops[:3]...)
			runInTx := func(ctx context.Context, fn func(ctx context.Context, tx bun.Tx) error) error {
				return db.RunInTx(ctx, nil, fn)
			}
			applyTx := func(ctx context.Context, fn func(ctx context.Context, tx bun.Tx) error) error {
				return dialect.ApplyTx(ctx, db, func(ctx context.Context, tx bun.Tx) error {
					if want := kind == dbtest.KindPostgres; dialect.CanCopy(ctx, tx) != want {
						t.Errorf("CanCopy in ApplyTx = %v, want %v", !want, want)
					}
					return fn(ctx, tx)
				})
			}
			type runner = func(ctx context.Context, fn func(ctx context.Context, tx bun.Tx) error) error
			logged := func(run runner, log func(ctx context.Context, db bun.IDB, ops []models.Operation) error, ops []models.Operation) []string {
				t.Helper()
				if _, err := db.ExecContext(ctx, "DELETE FROM sync_operations"); err != nil {
					t.Fatal(err)
				}
				if err := run(ctx, func(ctx context.Context, tx bun.Tx) error { return log(ctx, tx, ops) }); err != nil {
					t.Fatal(err)
				}
				rows, err := db.QueryContext(ctx, `SELECT row_id, content_type_id, command, version_id FROM sync_operations ORDER BY "order"`)
				if err != nil {
					t.Fatal(err)
				}
				defer rows.Close()
				var out []string
				for rows.Next() {
					var row, cmd string
					var ct int64
					var ver sql.NullInt64
					if err := rows.Scan(&row, &ct, &cmd, &ver); err != nil {
						t.Fatal(err)
					}
					out = append(out, fmt.Sprintf("%q %d %s %v", row, ct, cmd, ver))
				}
				if err := rows.Err(); err != nil {
					t.Fatal(err)
				}
				return out
			}
			for _, tc := range []struct {
				name string
				ops  []models.Operation
			}{{"plain", ops}, {"invalid UTF-8", bad}} {
				want := logged(runInTx, oplog.LogLiterals, tc.ops)
				for name, run := range map[string]runner{"RunInTx": runInTx, "ApplyTx": applyTx} {
					got := logged(run, oplog.Log, tc.ops)
					if len(got) != len(tc.ops) || fmt.Sprint(got) != fmt.Sprint(want) {
						t.Fatalf("%s in %s: Log wrote %d entries, literals %d; first differences:\n%s", tc.name, name, len(got), len(want), firstDiff(got, want))
					}
				}
			}
			if err := oplog.Log(ctx, db, []models.Operation{{RowID: "1", Command: "x"}}); err == nil {
				t.Fatal("an invalid command was logged")
			}
		})
	}
}

func firstDiff(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("entry %d: got %s, want %s", i, got[i], want[i])
		}
	}
	return "one is a prefix of the other"
}

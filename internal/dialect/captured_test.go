package dialect_test

import (
	"context"
	"slices"
	"testing"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/dialect"
)

// CapturedInto finds the tables with a trigger writing into a sync
// mode's log, in a PostgreSQL schema whose name needs quoting too (the
// capture functions name the log "schema".log), and no table whose
// triggers write elsewhere (another table of the peer's, or none).
func TestCapturedInto(t *testing.T) {
	ctx := t.Context()
	db := dbtest.Open(t, dbtest.KindPostgres)
	var current string
	if err := db.QueryRowContext(ctx, "SELECT current_schema()").Scan(&current); err != nil {
		t.Fatal(err)
	}
	schema := current + " two words"
	q := dialect.QuoteIdent(schema)
	t.Cleanup(func() { // t.Context() ends before cleanups run
		if _, err := db.ExecContext(context.Background(), "DROP SCHEMA IF EXISTS "+q+" CASCADE"); err != nil {
			t.Error(err)
		}
	})
	fn := func(name, body string) string {
		return "CREATE FUNCTION " + q + "." + name + "() RETURNS trigger LANGUAGE plpgsql AS $f$BEGIN " + body + " RETURN NULL; END$f$"
	}
	for _, s := range []string{
		"CREATE SCHEMA " + q,
		"CREATE TABLE " + q + ".captured (id int)",
		"CREATE TABLE " + q + ".elsewhere (id int)",
		"CREATE TABLE " + q + ".plain (id int)",
		fn("lww", "INSERT INTO "+q+".sync_lww (content_type_id, row_id) VALUES (1, '1');"),
		fn("feed", "INSERT INTO "+q+".sync_lww_feed (content_type_id) VALUES (1);"),
		"CREATE TRIGGER a AFTER INSERT ON " + q + ".captured FOR EACH ROW EXECUTE FUNCTION " + q + ".lww()",
		"CREATE TRIGGER a AFTER INSERT ON " + q + ".elsewhere FOR EACH ROW EXECUTE FUNCTION " + q + ".feed()",
	} {
		if _, err := db.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	got, err := dialect.CapturedInto(ctx, db, schema, nil, dialect.PeerVersions, []string{"captured", "elsewhere", "plain", "absent"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"captured"}) {
		t.Fatalf("captured into %s: %q, want [captured]", dialect.PeerVersions, got)
	}
	if got, err := dialect.CapturedInto(ctx, db, schema, nil, dialect.OperationsLog, []string{"captured"}); err != nil || len(got) != 0 {
		t.Fatalf("captured into %s: %q, %v, want none", dialect.OperationsLog, got, err)
	}
}

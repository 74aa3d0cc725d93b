package e2e_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/client"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/server"
)

// nullTypesRow has fields of database/sql's null types that bun's
// CreateTable does not know (not NullInt64, NullString, NullFloat64,
// NullBool, NullTime): it declares them VARCHAR on SQLite and jsonb on
// PostgreSQL. No type tags: as applications write them.
type nullTypesRow struct {
	bun.BaseModel `bun:"table:null_types_rows"`

	ID  int64              `bun:"id,pk,autoincrement"`
	N32 sql.NullInt32      `bun:"n32"`
	N16 sql.NullInt16      `bun:"n16"`
	NB  sql.NullByte       `bun:"nb"`
	G32 sql.Null[int32]    `bun:"g32"`
	GF  sql.Null[float64]  `bun:"gf"`
	GS  sql.Null[string]   `bun:"gs"`
	GT  sql.Null[bool]     `bun:"gt"`
	GM  sql.Null[[]string] `bun:"gm,type:jsonb"` // JSON: taken
}

// nullTypesCases are rows of null_types_rows: NULL, zero and other values.
func nullTypesCases() []*nullTypesRow {
	return []*nullTypesRow{
		{ID: 1},
		{ID: 2, N32: sql.NullInt32{Valid: true}, N16: sql.NullInt16{Valid: true}, NB: sql.NullByte{Valid: true},
			G32: sql.Null[int32]{Valid: true}, GF: sql.Null[float64]{Valid: true}, GS: sql.Null[string]{Valid: true}, GT: sql.Null[bool]{Valid: true}},
		{ID: 3, N32: sql.NullInt32{Int32: -2147483648, Valid: true}, N16: sql.NullInt16{Int16: 32767, Valid: true}, NB: sql.NullByte{Byte: 255, Valid: true},
			G32: sql.Null[int32]{V: 42, Valid: true}, GF: sql.Null[float64]{V: 0.1, Valid: true}, GS: sql.Null[string]{V: "x", Valid: true}, GT: sql.Null[bool]{V: true, Valid: true}},
	}
}

// TestSQLNullTypesInJSONColumns: a model with fields of database/sql's
// null types that bun's CreateTable declares jsonb on PostgreSQL
// (sql.NullInt32, sql.NullInt16, sql.NullByte, sql.Null[T] of a
// number, text or boolean) is refused where such a column is, by
// server.New, client.New and peer.New, with a *dbsync.ColumnTypeError
// naming the table, column, Go type and the type to declare; where none
// is (SQLite, whose VARCHAR keeps them), its values, NULL included,
// sync faithfully. Before, a PostgreSQL server took the model and
// answered each push of a value 500 (bun writes a NullInt32 as an
// integer literal, which jsonb refuses: SQLSTATE 42804), and a
// PostgreSQL node took it, though no value of those fields could be
// written there.
func TestSQLNullTypesInJSONColumns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	models := []any{(*nullTypesRow)(nil)}
	schema := synctest.CreateTables(models...)
	// The columns refused, with the type each wants.
	want := map[string][2]string{
		"n32": {"sql.NullInt32", "integer"}, "n16": {"sql.NullInt16", "smallint"}, "nb": {"sql.NullByte", "smallint"},
		"g32": {"sql.Null[int32]", "integer"}, "gf": {"sql.Null[float64]", "double precision"},
		"gs": {"sql.Null[string]", "text"}, "gt": {"sql.Null[bool]", "boolean"},
	}
	refused := func(t *testing.T, who string, err error) {
		t.Helper()
		if !errors.Is(err, dbsync.ErrInvalidModel) {
			t.Fatalf("%s: %v, want ErrInvalidModel", who, err)
		}
		got := map[string][2]string{}
		for _, e := range flatten(err) {
			var ce *dbsync.ColumnTypeError
			if !errors.As(e, &ce) {
				continue
			}
			if ce.Table != "null_types_rows" || ce.DBType != "jsonb" {
				t.Errorf("%s: %+v, want table null_types_rows, type jsonb", who, ce)
			}
			msg := ce.Error()
			if !strings.Contains(msg, fmt.Sprintf(`bun:"%s,type:%s"`, ce.Column, ce.Want)) || !strings.Contains(msg, ce.GoType) {
				t.Errorf("%s: %q does not name the Go type and the tag to write", who, msg)
			}
			got[ce.Column] = [2]string{ce.GoType, ce.Want}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: refused columns %v, want %v (%v)", who, got, want, err)
		}
	}
	// tracked opens a database of kind with the schema, and tracks the
	// models there.
	tracked := func(t *testing.T, kind string) (*bun.DB, *dbsync.Registry) {
		t.Helper()
		db := dbtest.Open(t, kind)
		if err := schema(ctx, db); err != nil {
			t.Fatal(err)
		}
		reg, err := dbsync.Track(db, models...)
		if err != nil {
			t.Fatal(err)
		}
		return db, reg
	}
	for _, c := range []struct{ server, node string }{
		{dbtest.KindPostgres, dbtest.KindSQLite},
		{dbtest.KindSQLite, dbtest.KindPostgres},
		{dbtest.KindSQLite, dbtest.KindSQLite},
	} {
		t.Run(c.server+"-server/"+c.node+"-node", func(t *testing.T) {
			t.Parallel()
			if c.server == dbtest.KindPostgres {
				db, reg := tracked(t, c.server)
				srv, err := server.New(ctx, db, reg, synctest.OpenConfig(nil))
				if err == nil {
					_ = srv.Close()
				}
				refused(t, "server.New", err)
				return
			}
			s := synctest.NewServerWith(t, synctest.TablesServerDB(t, c.server, models), schema, models, nil)
			if c.node == dbtest.KindPostgres {
				db, reg := tracked(t, c.node)
				_, err := client.New(ctx, db, reg, &client.Config{URL: s.URL})
				refused(t, "client.New", err)
				pdb, preg := tracked(t, c.node)
				_, err = peer.New(ctx, pdb, preg, nil)
				refused(t, "peer.New", err)
				return
			}
			a := synctest.NewClientWith(t, s, "a", synctest.TablesClientDB(t, c.node, models), schema, models, nil)
			b := synctest.NewClientWith(t, s, "b", synctest.TablesClientDB(t, c.node, models), schema, models, nil)
			rows := nullTypesCases()
			for _, r := range rows {
				if _, err := a.DB.NewInsert().Model(r).Exec(ctx); err != nil {
					t.Fatal(err)
				}
			}
			mustSync(t, a)
			mustSync(t, b)
			for _, n := range []struct {
				name string
				db   bun.IDB
			}{{"the server", s.DB}, {"b", b.DB}} {
				var got []*nullTypesRow
				if err := n.db.NewSelect().Model(&got).Order("id").Scan(ctx); err != nil {
					t.Fatal(err)
				}
				if len(got) != len(rows) {
					t.Fatalf("%s holds %d rows, want %d", n.name, len(got), len(rows))
				}
				for i, r := range rows {
					if !reflect.DeepEqual(got[i], r) {
						t.Errorf("%s reads %+v, a wrote %+v", n.name, *got[i], *r)
					}
				}
			}
		})
	}
}

// flatten returns the errors err joins (errors.Join), or err.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	if u := errors.Unwrap(err); u != nil {
		if _, ok := u.(interface{ Unwrap() []error }); ok {
			return flatten(u)
		}
	}
	return []error{err}
}

// tally is an application type written through driver.Valuer as an
// int64: bun's CreateTable declares it jsonb on PostgreSQL, which refuses
// the integer bun writes; dbsync cannot tell at startup what its values
// are.
type tally struct{ n int64 }

func (c tally) Value() (driver.Value, error) { return c.n, nil }

func (c *tally) Scan(src any) error {
	switch v := src.(type) {
	case int64:
		c.n = v
	case []byte:
		_, err := fmt.Sscan(string(v), &c.n)
		return err
	case string:
		_, err := fmt.Sscan(v, &c.n)
		return err
	default:
		return fmt.Errorf("tally: %T", src)
	}
	return nil
}

type tallyRow struct {
	bun.BaseModel `bun:"table:tally_rows"`

	ID int64 `bun:"id,pk,autoincrement"`
	T  tally `bun:"t"`
}

// TestValuerRefusedByJSONColumn: a value of an application's
// driver.Valuer type that the server's column refuses for its type (an
// int64 into the jsonb column bun's CreateTable declares for the struct)
// fails the push with bad_request, and the server writes nothing of it;
// a SQLite server takes and returns it. Before, the push was answered
// 500.
func TestValuerRefusedByJSONColumn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			models := []any{(*tallyRow)(nil)}
			schema := synctest.CreateTables(models...)
			s := synctest.NewServerWith(t, synctest.TablesServerDB(t, kind, models), schema, models, nil)
			a := synctest.NewClientWith(t, s, "a", synctest.TablesClientDB(t, dbtest.KindSQLite, models), schema, models, nil)
			b := synctest.NewClientWith(t, s, "b", synctest.TablesClientDB(t, dbtest.KindSQLite, models), schema, models, nil)
			if _, err := a.DB.NewInsert().Model(&tallyRow{ID: 1, T: tally{7}}).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			_, err := a.Sync(ctx)
			var n int
			if err := s.DB.NewSelect().Table("tally_rows").ColumnExpr("count(*)").Scan(ctx, &n); err != nil {
				t.Fatal(err)
			}
			if kind == dbtest.KindPostgres {
				var se *dbsync.ServerError
				if !errors.Is(err, dbsync.ErrBadRequest) || !errors.As(err, &se) || se.Status >= 500 {
					t.Fatalf("push of a value the column refuses: %v, want a 4xx bad_request", err)
				}
				if n != 0 {
					t.Fatalf("the server holds %d rows of the refused push", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			mustSync(t, b)
			var got tallyRow
			if err := b.DB.NewSelect().Model(&got).Where("id = 1").Scan(ctx); err != nil {
				t.Fatal(err)
			}
			if n != 1 || got.T != (tally{7}) {
				t.Fatalf("server rows %d, b reads %+v; want 1 and 7", n, got)
			}
		})
	}
}

// jsonTextRow keeps JSON text in database/sql null types of text, in
// json and jsonb columns the application declared: bun writes their
// values as text literals, which the columns take when they are JSON.
type jsonTextRow struct {
	bun.BaseModel `bun:"table:json_text_rows"`

	ID  int64            `bun:"id,pk,autoincrement"`
	NS  sql.NullString   `bun:"ns,type:jsonb"`
	GS  sql.Null[string] `bun:"gs,type:jsonb"`
	PNS *sql.NullString  `bun:"pns,type:json"`
}

// TestJSONTextInSQLNullString: a model keeping JSON text in an
// sql.NullString or an sql.Null[string] whose column it declares json or
// jsonb (type:jsonb) is taken by a PostgreSQL server and node, and its
// values, NULL included, sync faithfully, as they did before startup
// refused json columns of fields whose values are not JSON. Such a
// column is the application's choice (bun's CreateTable declares an
// sql.NullString varchar), and bun writes its values as text, as it
// writes a string's, which is taken. Before, server.New, client.New and
// peer.New refused it with a *dbsync.ColumnTypeError after an upgrade.
func TestJSONTextInSQLNullString(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	models := []any{(*jsonTextRow)(nil)}
	schema := synctest.CreateTables(models...)
	for _, c := range []struct{ server, node string }{
		{dbtest.KindPostgres, dbtest.KindPostgres},
		{dbtest.KindSQLite, dbtest.KindSQLite},
	} {
		t.Run(c.server+"-server/"+c.node+"-node", func(t *testing.T) {
			t.Parallel()
			s := synctest.NewServerWith(t, synctest.TablesServerDB(t, c.server, models), schema, models, nil)
			a := synctest.NewClientWith(t, s, "a", synctest.TablesClientDB(t, c.node, models), schema, models, nil)
			b := synctest.NewClientWith(t, s, "b", synctest.TablesClientDB(t, c.node, models), schema, models, nil)
			pdb := dbtest.Open(t, c.node)
			if err := schema(ctx, pdb); err != nil {
				t.Fatal(err)
			}
			preg, err := dbsync.Track(pdb, models...)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := peer.New(ctx, pdb, preg, nil); err != nil {
				t.Fatalf("peer.New: %v", err)
			}
			rows := []*jsonTextRow{
				{ID: 1},
				{ID: 2, NS: sql.NullString{String: `{"a":1}`, Valid: true}, GS: sql.Null[string]{V: `[1,2]`, Valid: true},
					PNS: &sql.NullString{String: `"x"`, Valid: true}},
			}
			for _, r := range rows {
				if _, err := a.DB.NewInsert().Model(r).Exec(ctx); err != nil {
					t.Fatal(err)
				}
			}
			mustSync(t, a)
			mustSync(t, b)
			var got []*jsonTextRow
			if err := b.DB.NewSelect().Model(&got).Order("id").Scan(ctx); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(rows) || got[1].NS.String != `{"a": 1}` && got[1].NS.String != `{"a":1}` || !got[1].GS.Valid || got[0].NS.Valid {
				for _, g := range got {
					t.Logf("%+v", *g)
				}
				t.Fatalf("b reads %d rows, want %d as a wrote them", len(got), len(rows))
			}
		})
	}
}

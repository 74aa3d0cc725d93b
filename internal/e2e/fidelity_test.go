package e2e_test

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/synctest"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/peer/peerhttp"
	"github.com/go-dbsync/dbsync/stream"
)

// fidelityRow has one column of each Go type the codec carries.
type fidelityRow struct {
	bun.BaseModel `bun:"table:fidelity_rows"`

	ID   int64           `bun:"id,pk,autoincrement"`
	I8   int8            `bun:"i8"`
	I16  int16           `bun:"i16"`
	I32  int32           `bun:"i32"`
	I64  int64           `bun:"i64"`
	U8   uint8           `bun:"u8"`
	U16  uint16          `bun:"u16"`
	U32  uint32          `bun:"u32"`
	U64  uint64          `bun:"u64"`
	F32  float32         `bun:"f32"`
	F64  float64         `bun:"f64"`
	PF   *float64        `bun:"pf"`
	NF   sql.NullFloat64 `bun:"nf"`
	CF   celsius         `bun:"cf"`
	S    string          `bun:"s"`
	NS   sql.NullString  `bun:"ns"`
	PS   *string         `bun:"ps"`
	NZS  string          `bun:"nzs,nullzero"`
	NZI  int64           `bun:"nzi,nullzero"`
	Bs   []byte          `bun:"bs"`
	T    time.Time       `bun:"t"`
	PT   *time.Time      `bun:"pt"`
	Bo   bool            `bun:"bo"`
	U    uuid.UUID       `bun:"u,type:uuid"`
	PU   *uuid.UUID      `bun:"pu,type:uuid"`
	J    json.RawMessage `bun:"j,type:jsonb"`
	M    map[string]any  `bun:"m"`
	L    []string        `bun:"l"`
	IP   *netip.Addr     `bun:"ip,type:text"`
	Cust cents           `bun:"cust,type:text"`
	Blob rawBlob         `bun:"blob,type:bytea"`
	At   timeVal         `bun:"at,type:timestamp"`
	Rat  ratio           `bun:"rat,type:double precision"`
	// database/sql null types bun's CreateTable declares jsonb on
	// PostgreSQL, which refuses their values (ColumnTypeError): declared
	// with their values' type, as the error says.
	N32 sql.NullInt32    `bun:"n32,type:integer"`
	N16 sql.NullInt16    `bun:"n16,type:smallint"`
	NB  sql.NullByte     `bun:"nb,type:smallint"`
	G32 sql.Null[int32]  `bun:"g32,type:integer"`
	GS  sql.Null[string] `bun:"gs,type:text"`
}

// cents is an application type written through driver.Valuer.
type cents struct{ n int64 }

func (c cents) Value() (driver.Value, error) { return strconv.FormatInt(c.n, 10) + "c", nil }

func (c *cents) Scan(src any) error {
	var s string
	switch v := src.(type) {
	case nil:
		c.n = 0
		return nil
	case string:
		s = v
	case []byte:
		s = string(v)
	default:
		return fmt.Errorf("cents: %T", src)
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(s, "c"), 10, 64)
	c.n = n
	return err
}

// rawBlob is an application type whose driver value is a []byte.
type rawBlob struct{ b []byte }

func (r rawBlob) Value() (driver.Value, error) {
	if r.b == nil {
		return nil, nil
	}
	return r.b, nil
}

func (r *rawBlob) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		r.b = nil
	case []byte:
		r.b = bytes.Clone(v)
	case string:
		r.b = []byte(v)
	default:
		return fmt.Errorf("rawBlob: %T", src)
	}
	return nil
}

// timeVal is an application type whose driver value is a time.Time, and
// which scans only one (as lib/pq's NullTime).
type timeVal struct{ t time.Time }

func (s timeVal) Value() (driver.Value, error) {
	if s.t.IsZero() {
		return nil, nil
	}
	return s.t, nil
}

func (s *timeVal) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		s.t = time.Time{}
	case time.Time:
		s.t = v
	default:
		return fmt.Errorf("timeVal: %T", src)
	}
	return nil
}

// ratio is an application type whose driver value is a float64, and
// which scans only one.
type ratio struct{ f float64 }

func (r ratio) Value() (driver.Value, error) { return r.f, nil }

func (r *ratio) Scan(src any) error {
	f, ok := src.(float64)
	if !ok {
		return fmt.Errorf("ratio: %T", src)
	}
	r.f = f
	return nil
}

// celsius is a named float type.
type celsius float64

func fp(f float64) *float64 { return &f }
func sp(s string) *string   { return &s }

// show renders each field for comparison: floats with their sign, times
// with their offset, byte slices nil or not.
func show(r *fidelityRow) map[string]string {
	out := map[string]string{}
	v := reflect.ValueOf(r).Elem()
	for i := 1; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		if f.Name == "ID" {
			continue
		}
		fv := v.Field(i)
		var s string
		switch x := fv.Interface().(type) {
		case float32:
			s = strconv.FormatFloat(float64(x), 'g', -1, 32) + fmt.Sprint(math.Signbit(float64(x)))
		case float64:
			s = strconv.FormatFloat(x, 'g', -1, 64) + fmt.Sprint(math.Signbit(x))
		case *float64:
			if x == nil {
				s = "nil"
			} else {
				s = strconv.FormatFloat(*x, 'g', -1, 64) + fmt.Sprint(math.Signbit(*x))
			}
		case *string:
			if x == nil {
				s = "nil"
			} else {
				s = strconv.Quote(*x)
			}
		case []byte:
			s = fmt.Sprintf("%v %q", x == nil, x)
		case json.RawMessage:
			// As a value: PostgreSQL's jsonb keeps neither the order of
			// members nor white space (documented).
			var v any
			d := json.NewDecoder(strings.NewReader(string(x)))
			d.UseNumber()
			if err := d.Decode(&v); err != nil {
				s = fmt.Sprintf("%q: %v", x, err)
			} else {
				s = fmt.Sprintf("%#v", v)
			}
		case time.Time:
			s = x.Format(time.RFC3339Nano)
		case timeVal:
			s = x.t.UTC().Format(time.RFC3339Nano)
		case *time.Time:
			if x == nil {
				s = "nil"
			} else {
				s = x.Format(time.RFC3339Nano)
			}
		default:
			s = fmt.Sprintf("%#v", x)
		}
		out[f.Name] = s
	}
	return out
}

// fidelityCase is a row of fidelity_rows: set fills it in.
type fidelityCase struct {
	name string
	set  func(r *fidelityRow)
}

// fidelityCases are the rows of TestFidelityMatrix and
// TestFidelityMatrixPeers, with id 1, 2, …
func fidelityCases() []fidelityCase {
	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	kolkata := time.FixedZone("IST", 5*3600+1800)
	return []fidelityCase{
		{"zero", func(r *fidelityRow) {}},
		{"int min", func(r *fidelityRow) {
			r.I8, r.I16, r.I32, r.I64 = math.MinInt8, math.MinInt16, math.MinInt32, math.MinInt64
		}},
		{"int max", func(r *fidelityRow) {
			r.I8, r.I16, r.I32, r.I64 = math.MaxInt8, math.MaxInt16, math.MaxInt32, math.MaxInt64
		}},
		// bun's PostgreSQL types for uint8, uint16 and uint32 are
		// smallint, smallint and integer: their upper halves are refused
		// there (TestPushValueTheDatabaseRefuses).
		{"uint", func(r *fidelityRow) { r.U8, r.U16, r.U32, r.U64 = 127, math.MaxInt16, math.MaxInt32, math.MaxInt64 }},
		{"float 0.1", func(r *fidelityRow) { r.F32, r.F64, r.PF = 0.1, 0.1, fp(0.1) }},
		{"float max", func(r *fidelityRow) { r.F32, r.F64, r.PF = math.MaxFloat32, math.MaxFloat64, fp(-math.MaxFloat64) }},
		{"float subnormal", func(r *fidelityRow) {
			r.F32, r.F64, r.PF = math.SmallestNonzeroFloat32, math.SmallestNonzeroFloat64, fp(-math.SmallestNonzeroFloat64)
		}},
		{"float large exponents", func(r *fidelityRow) {
			r.F32, r.F64, r.PF = -3.4e38, 1e-300, fp(8.198266419197551e+254)
			r.NF, r.CF = sql.NullFloat64{Float64: 3.6444328485385262e+270, Valid: true}, -5.3998273292446114e-179
		}},
		{"float digits", func(r *fidelityRow) { r.F32, r.F64, r.PF = 16777217, 0.30000000000000004, fp(-1.0709721554941248e-193) }},
		{"long string", func(r *fidelityRow) { r.S = strings.Repeat("äbc😀", 100000) }},
		{"string specials", func(r *fidelityRow) {
			r.S, r.NS, r.PS = "a\u2028b\u2029c\x01\x7f'\"\\", sql.NullString{String: "😀", Valid: true}, sp("\u00e9 e\u0301")
		}},
		{"string empty not null", func(r *fidelityRow) { r.S, r.NS, r.PS = "", sql.NullString{Valid: true}, sp("") }},
		{"nullzero set", func(r *fidelityRow) { r.NZS, r.NZI = "x", -5 }},
		{"bytes empty", func(r *fidelityRow) { r.Bs = []byte{} }},
		{"bytes all", func(r *fidelityRow) { r.Bs = allBytes }},
		{"time zone ns", func(r *fidelityRow) { r.T = time.Date(2026, 3, 4, 5, 6, 7, 123456789, kolkata) }},
		{"time year 5", func(r *fidelityRow) { r.T = time.Date(5, 1, 2, 3, 4, 5, 0, time.UTC) }},
		{"time year 9999", func(r *fidelityRow) { r.T = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC) }},
		{"time monotonic", func(r *fidelityRow) { now := time.Now(); r.T, r.PT = now, &now }},
		{"bool true", func(r *fidelityRow) { r.Bo = true }},
		{"uuid", func(r *fidelityRow) { u := uuid.MustParse("ffffffff-ffff-4fff-bfff-ffffffffffff"); r.U, r.PU = u, &u }},
		{"uuid nil pointer", func(r *fidelityRow) { u := uuid.Nil; r.PU = &u }},
		{"json object", func(r *fidelityRow) {
			r.J = json.RawMessage(`{"b":1.50,"a":[12345678901234567890123, 2.50],"c":"\u2028"}`)
			r.M = map[string]any{"x": 1.5, "y": "z"}
			r.L = []string{"a", ""}
		}},
		// A JSON number in a SQLite column of NUMERIC affinity (jsonb)
		// is stored as a number, which bun does not read into a
		// json.RawMessage: not here.
		{"json string", func(r *fidelityRow) { r.J = json.RawMessage(`"123"`); r.L = []string{} }},
		{"json null", func(r *fidelityRow) { r.J = json.RawMessage(`null`) }},
		{"ip", func(r *fidelityRow) { ip := netip.MustParseAddr("fe80::1%eth0"); r.IP = &ip }},
		{"custom", func(r *fidelityRow) { r.Cust = cents{-42} }},
		// Before, a driver value []byte arrived as its base64 text.
		{"custom bytes", func(r *fidelityRow) { r.Blob = rawBlob{[]byte("hello")} }},
		{"custom binary", func(r *fidelityRow) { r.Blob = rawBlob{allBytes} }},
		// Before, a driver value time.Time was scanned as its text.
		// Before, a whole float64 driver value (2, written 2) was
		// scanned as an int64.
		{"custom float", func(r *fidelityRow) { r.Rat = ratio{2} }},
		{"custom float fraction", func(r *fidelityRow) { r.Rat = ratio{-0.5} }},
		{"custom time", func(r *fidelityRow) { r.At = timeVal{time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)} }},
		{"sql null types", func(r *fidelityRow) {
			r.N32, r.N16, r.NB = sql.NullInt32{Int32: math.MinInt32, Valid: true}, sql.NullInt16{Int16: math.MaxInt16, Valid: true}, sql.NullByte{Byte: 255, Valid: true}
			r.G32, r.GS = sql.Null[int32]{V: math.MaxInt32, Valid: true}, sql.Null[string]{V: "x", Valid: true}
		}},
		{"sql null types zero", func(r *fidelityRow) {
			r.N32, r.N16, r.NB = sql.NullInt32{Valid: true}, sql.NullInt16{Valid: true}, sql.NullByte{Valid: true}
			r.G32, r.GS = sql.Null[int32]{Valid: true}, sql.Null[string]{Valid: true}
		}},
	}
}

// TestFidelityMatrix writes a row of every column type the codec carries,
// with edge values, on a node, and reads it back on the server and on
// another node (by pull and by repair), for every pair of databases
// (server, writing node, reading node): each must read what the writer
// reads back from its own database. Values a database itself changes on
// the writer (bun writes times in UTC to the microsecond, SQLite's REAL
// keeps no -0: TestZeroSignReachesNodes) travel as the writer reads
// them. Before, a float that SQLite reads back from bun's literal as a
// neighbouring value (1e-300 as 9.999999999999999e-301: SQLite's reading
// of decimal literals is not correctly rounded at large exponents)
// arrived so on a SQLite server or node.
func TestFidelityMatrix(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := fidelityCases()
	for _, server := range dbtest.Kinds {
		for _, ak := range dbtest.Kinds {
			for _, bk := range dbtest.Kinds {
				t.Run(server+"/"+ak+"/"+bk, func(t *testing.T) {
					t.Parallel()
					models := []any{(*fidelityRow)(nil)}
					schema := synctest.CreateTables(models...)
					s := synctest.NewServerWith(t, synctest.TablesServerDB(t, server, models), schema, models, nil)
					a := synctest.NewClientWith(t, s, "a", synctest.TablesClientDB(t, ak, models), schema, models, nil)
					b := synctest.NewClientWith(t, s, "b", synctest.TablesClientDB(t, bk, models), schema, models, nil)
					for i, c := range cases {
						r := &fidelityRow{ID: int64(i + 1)}
						c.set(r)
						if _, err := a.DB.NewInsert().Model(r).Exec(ctx); err != nil {
							t.Fatalf("%s: insert on a: %v", c.name, err)
						}
					}
					mustSync(t, a)
					mustSync(t, b)
					check := func(how string) {
						t.Helper()
						want := readFidelity(t, a.DB)
						for _, n := range []struct {
							name string
							db   bun.IDB
						}{{"the server", s.DB}, {"b", b.DB}} {
							got := readFidelity(t, n.db)
							for i, c := range cases {
								id := int64(i + 1)
								if got[id] == nil {
									t.Errorf("%s: %s lacks the row (%s)", c.name, n.name, how)
									continue
								}
								w := show(want[id])
								for k, v := range show(got[id]) {
									if w[k] != v {
										t.Errorf("%s: %s reads %s = %.200s (%s), a reads %.200s", c.name, n.name, k, v, how, w[k])
									}
								}
							}
						}
					}
					check("pull")
					if _, err := b.Repair(ctx, nil); err != nil {
						t.Fatal(err)
					}
					check("repair")
				})
			}
		}
	}
}

// TestFidelityMatrixPeers is TestFidelityMatrix for the peer mode, over
// peerhttp on loopback and over stream sync on a loopback TCP
// connection: the rows written on one node read the same on a peer of
// each kind of database, after a sync.
func TestFidelityMatrixPeers(t *testing.T) {
	t.Parallel()
	cases := fidelityCases()
	secret := []byte("the mesh secret")
	syncs := []struct {
		name string
		sync func(ctx context.Context, t *testing.T, a, b *peer.Node) error
	}{
		{"peerhttp", func(ctx context.Context, t *testing.T, a, b *peer.Node) error {
			srv := httptest.NewServer(peerhttp.NewHandler(a, &peerhttp.Config{Secret: secret}))
			t.Cleanup(srv.Close)
			_, err := b.Sync(ctx, &peerhttp.Peer{URL: srv.URL, Secret: secret, Self: b})
			return err
		}},
		{"stream", func(ctx context.Context, t *testing.T, a, b *peer.Node) error {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(ctx)
			served := make(chan error, 1)
			go func() { served <- stream.Serve(ctx, ln, a, &stream.Config{Secret: secret}) }()
			defer func() {
				cancel()
				<-served
			}()
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				return err
			}
			_, err = stream.Sync(ctx, conn, b, &stream.Config{Secret: secret})
			return err
		}},
	}
	for _, via := range syncs {
		for _, ak := range dbtest.Kinds {
			for _, bk := range dbtest.Kinds {
				t.Run(via.name+"/"+ak+"/"+bk, func(t *testing.T) {
					t.Parallel()
					ctx := context.Background()
					models := []any{(*fidelityRow)(nil)}
					schema := synctest.CreateTables(models...)
					a := synctest.NewNodeWith(t, synctest.NodeDB(t, ak, "fidelity", schema), models, nil)
					b := synctest.NewNodeWith(t, synctest.NodeDB(t, bk, "fidelity", schema), models, nil)
					for i, c := range cases {
						r := &fidelityRow{ID: int64(i + 1)}
						c.set(r)
						if _, err := a.DB().NewInsert().Model(r).Exec(ctx); err != nil {
							t.Fatalf("%s: insert on a: %v", c.name, err)
						}
					}
					if err := via.sync(ctx, t, a, b); err != nil {
						t.Fatal(err)
					}
					want, got := readFidelity(t, a.DB()), readFidelity(t, b.DB())
					for i, c := range cases {
						id := int64(i + 1)
						if got[id] == nil {
							t.Errorf("%s: b lacks the row", c.name)
							continue
						}
						w := show(want[id])
						for k, v := range show(got[id]) {
							if w[k] != v {
								t.Errorf("%s: b reads %s = %.200s, a reads %.200s", c.name, k, v, w[k])
							}
						}
					}
				})
			}
		}
	}
}

// readFidelity reads the rows of fidelity_rows by id.
func readFidelity(t *testing.T, db bun.IDB) map[int64]*fidelityRow {
	t.Helper()
	var rows []*fidelityRow
	if err := db.NewSelect().Model(&rows).Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := make(map[int64]*fidelityRow, len(rows))
	for _, r := range rows {
		out[r.ID] = r
	}
	return out
}

// envLocalZoneChild marks the child process of TestLocalZoneSecondsOffset.
const envLocalZoneChild = "DBSYNC_TEST_LOCAL_ZONE_CHILD"

// A time read in a local zone whose offset has seconds (Amsterdam's
// local mean time, +00:19:32 until 1937: pgx returns a timestamptz in
// time.Local) reaches the server and the other nodes as the same
// instant. Before, the row carried the offset rounded to "+00:19", and
// the time arrived 32 seconds off (64 on a node pulling it from a
// PostgreSQL server in the same zone). The test runs itself in a child
// process with TZ=Europe/Amsterdam (time.Local is a process-wide
// setting), with each database kind as the server.
func TestLocalZoneSecondsOffset(t *testing.T) {
	t.Parallel()
	if os.Getenv(envLocalZoneChild) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLocalZoneSecondsOffset$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), envLocalZoneChild+"=1", "TZ=Europe/Amsterdam")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("child with TZ=Europe/Amsterdam: %v\n%s", err, out)
		}
		return
	}
	if _, off := time.Date(1900, 1, 1, 0, 0, 0, 0, time.Local).Zone(); off%60 == 0 {
		t.Fatalf("time.Local %s has no seconds in its 1900 offset (%d s)", time.Local, off)
	}
	ctx := context.Background()
	at := time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			s := synctest.NewServer(t, kind, nil)
			a := synctest.NewClientWith(t, s, "a", synctest.ClientOn(t, dbtest.KindPostgres, testmodels.CreateSchema, synctest.Models()), testmodels.CreateSchema, synctest.Models(), nil)
			b := synctest.NewClient(t, s, "b", nil)
			note := &testmodels.Note{ID: uuid.New(), Body: "old", Created: at}
			if _, err := a.DB.NewInsert().Model(note).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			mustSync(t, a)
			mustSync(t, b)
			for _, n := range []struct {
				name string
				db   bun.IDB
			}{{"a", a.DB}, {"the server", s.DB}, {"b", b.DB}} {
				var got testmodels.Note
				if err := n.db.NewSelect().Model(&got).Where("id = ?", note.ID).Scan(ctx); err != nil {
					t.Fatal(err)
				}
				if !got.Created.Equal(at) {
					t.Errorf("%s reads created %s, want %s", n.name, got.Created.UTC(), at)
				}
			}
		})
	}
}

// A row pulled onto a node holds its floats as the application's own
// writes would store them: saving the pulled row again unchanged (a bun
// UPDATE of every column) logs nothing. SQLite stores a float32 that bun
// writes ("0.1") as the double nearest its decimal, not as the float32's
// own double (0.10000000149011612): a pull writing the latter would have
// made the same values a change.
func TestPulledFloatsSavedAgainUnchanged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, kind := range dbtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			models := []any{(*fidelityRow)(nil)}
			schema := synctest.CreateTables(models...)
			s := synctest.NewServerWith(t, synctest.TablesServerDB(t, kind, models), schema, models, nil)
			a := synctest.NewClientWith(t, s, "a", synctest.TablesClientDB(t, kind, models), schema, models, nil)
			b := synctest.NewClientWith(t, s, "b", synctest.TablesClientDB(t, kind, models), schema, models, nil)
			r := &fidelityRow{ID: 1, F32: 0.1, F64: 0.1, PF: fp(1.5e-7)}
			if _, err := a.DB.NewInsert().Model(r).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			mustSync(t, a)
			mustSync(t, b)
			got := new(fidelityRow)
			if err := b.DB.NewSelect().Model(got).Where("id = 1").Scan(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := b.DB.NewUpdate().Model(got).WherePK().Exec(ctx); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := b.DB.NewRaw("SELECT count(*) FROM sync_operations").Scan(ctx, &n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Fatalf("saving the pulled row unchanged logged %d operations, want none", n)
			}
		})
	}
}

package dbsync_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/internal/dbtest"
	"github.com/go-dbsync/dbsync/internal/store"
	"github.com/go-dbsync/dbsync/internal/testmodels"
	"github.com/go-dbsync/dbsync/protocol"
)

// codecTables returns the tracked tables of testmodels (the registry does
// not touch the database).
func codecTables(t testing.TB) (lists, todos, notes *dbsync.Table) {
	t.Helper()
	reg, err := dbsync.Track(dbtest.SQLite(t), testmodels.All()...)
	if err != nil {
		t.Fatal(err)
	}
	return reg.Table("lists"), reg.Table("todos"), reg.Table("notes")
}

// codecEncode returns the JSON object of a model (a pointer to a struct).
func codecEncode(t testing.TB, tb *dbsync.Table, model any) []byte {
	t.Helper()
	b, err := tb.Codec().AppendRow(nil, reflect.ValueOf(model).Elem())
	if err != nil {
		t.Fatalf("AppendRow(%+v): %v", model, err)
	}
	if !json.Valid(b) {
		t.Fatalf("AppendRow wrote invalid JSON %s", b)
	}
	return b
}

// codecDecode parses and decodes one JSON object; it returns a pointer to a
// model struct.
func codecDecode(tb *dbsync.Table, data []byte) (any, error) {
	row, err := protocol.ParseRow(data)
	if err != nil {
		return nil, err
	}
	v, err := tb.Codec().DecodeRow(row)
	if err != nil {
		return nil, err
	}
	return v.Interface(), nil
}

// codecCompact returns the compact form of a JSON value, or the value itself
// when it is not valid.
func codecCompact(raw []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

// codecSameJSON reports whether two JSON values are equal as values (a database
// may reorder object members and change spacing). No value is JSON null:
// bun stores a nil json.RawMessage as a JSON null.
func codecSameJSON(a, b []byte) bool {
	if a == nil {
		a = []byte("null")
	}
	if b == nil {
		b = []byte("null")
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// codecNoteDiff describes how two notes differ, or returns "". Times must be the
// same instant; with sameOffset, also at the same UTC offset. Meta must be
// the same JSON value; with exactJSON, the same compact text.
func codecNoteDiff(got, want *testmodels.Note, sameOffset, exactJSON bool) string {
	var diffs []string
	add := func(field string, g, w any) { diffs = append(diffs, fmt.Sprintf("%s: got %v, want %v", field, g, w)) }
	if got.ID != want.ID {
		add("ID", got.ID, want.ID)
	}
	if got.Body != want.Body {
		add("Body", fmt.Sprintf("%q", got.Body), fmt.Sprintf("%q", want.Body))
	}
	_, go1 := got.Created.Zone()
	_, wo := want.Created.Zone()
	if !got.Created.Equal(want.Created) || sameOffset && go1 != wo {
		add("Created", got.Created, want.Created)
	}
	if !bytes.Equal(got.Data, want.Data) || (got.Data == nil) != (want.Data == nil) {
		add("Data", fmt.Sprintf("%#v", got.Data), fmt.Sprintf("%#v", want.Data))
	}
	if (got.Score == nil) != (want.Score == nil) || got.Score != nil && *got.Score != *want.Score {
		add("Score", codecFmtPtr(got.Score), codecFmtPtr(want.Score))
	}
	if got.Tag != want.Tag {
		add("Tag", got.Tag, want.Tag)
	}
	if got.Count != want.Count {
		add("Count", got.Count, want.Count)
	}
	metaOK := codecSameJSON(got.Meta, want.Meta)
	if exactJSON {
		metaOK = (got.Meta == nil) == (want.Meta == nil) && codecCompact(got.Meta) == codecCompact(want.Meta)
	}
	if !metaOK {
		add("Meta", string(got.Meta), string(want.Meta))
	}
	return strings.Join(diffs, "; ")
}

func codecFmtPtr(p *float64) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

// codecModelDiff compares two decoded models of the same table.
func codecModelDiff(got, want any) string {
	if n, ok := got.(*testmodels.Note); ok {
		return codecNoteDiff(n, want.(*testmodels.Note), true, true)
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Sprintf("got %+v, want %+v", got, want)
	}
	return ""
}

func codecAllBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func codecPtr[T any](v T) *T { return &v }

func TestRowRoundTripNote(t *testing.T) {
	t.Parallel()
	_, _, notes := codecTables(t)
	india := time.FixedZone("IST", 5*3600+30*60)
	tests := []struct {
		name string
		note testmodels.Note
	}{
		{"Full", testmodels.Note{
			ID:      uuid.MustParse("6F9619FF-8B86-D011-B42D-00C04FC964FF"),
			Body:    "body",
			Created: time.Date(2024, 2, 29, 23, 59, 59, 123456789, india),
			Data:    codecAllBytes(),
			Score:   codecPtr(1.5),
			Tag:     sql.NullString{String: "tag", Valid: true},
			Count:   math.MaxInt32,
			Meta:    json.RawMessage(`{"a":[1,2.5,"x",null,true],"b":{"c":{}}}`),
		}},
		{"Nulls", testmodels.Note{
			ID:      uuid.Nil,
			Created: time.Date(1970, 1, 1, 0, 0, 0, 1, time.UTC),
			Count:   math.MinInt32,
		}},
		{"Empty", testmodels.Note{
			ID:      uuid.Max,
			Created: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("", 23*3600+59*60)),
			Data:    []byte{},
			Score:   codecPtr(0.0),
			Tag:     sql.NullString{Valid: true},
			Meta:    json.RawMessage(`""`),
		}},
		{"Extremes", testmodels.Note{
			ID:      uuid.New(),
			Created: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
			Data:    []byte{0},
			Score:   codecPtr(-math.MaxFloat64),
			Count:   -1,
			Meta:    json.RawMessage(`[]`),
		}},
		// A zone whose offset has seconds (local mean time: Amsterdam's
		// until 1937, every zone's before 1900), as a driver returns a
		// time in time.Local (pgx a timestamptz): RFC 3339 has no seconds
		// in offsets. Before, the row carried "+00:19", 32 s off.
		{"SecondsOffset", testmodels.Note{
			Created: time.Date(1900, 1, 1, 0, 0, 0, 5000, time.FixedZone("LMT", 19*60+32)),
		}},
		{"NegativeSecondsOffset", testmodels.Note{
			Created: time.Date(1880, 6, 1, 12, 0, 0, 0, time.FixedZone("LMT", -(4*3600+56*60+2))),
		}},
		{"Tiny", testmodels.Note{
			Created: time.Date(2000, 1, 1, 0, 0, 0, 0, time.FixedZone("", 3600)),
			Score:   codecPtr(math.SmallestNonzeroFloat64),
			Meta:    json.RawMessage(`-0.5e-7`),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data := codecEncode(t, notes, &tc.note)
			got, err := codecDecode(notes, data)
			if err != nil {
				t.Fatalf("decode %s: %v", data, err)
			}
			// A time whose offset has seconds arrives in UTC.
			_, off := tc.note.Created.Zone()
			if d := codecNoteDiff(got.(*testmodels.Note), &tc.note, off%60 == 0, true); d != "" {
				t.Fatalf("round trip of %s: %s", data, d)
			}
			// The encoding is canonical: encoding the result again gives the
			// same bytes.
			if again := codecEncode(t, notes, got); !bytes.Equal(again, data) {
				t.Fatalf("encoded again %s, first %s", again, data)
			}
			// EncodeRow gives the same columns, from a pointer or a value.
			for _, model := range []any{&tc.note, tc.note} {
				row, err := notes.Codec().EncodeRow(model)
				if err != nil {
					t.Fatal(err)
				}
				want, _ := protocol.ParseRow(data)
				if len(row) != len(want) || len(row) != len(notes.Columns) {
					t.Fatalf("EncodeRow: %d columns, want %d", len(row), len(notes.Columns))
				}
				for k, v := range want {
					if !bytes.Equal(row[k], v) {
						t.Fatalf("EncodeRow %s = %s, want %s", k, row[k], v)
					}
				}
			}
		})
	}
}

// TestRowWireForm pins the canonical wire form of each column kind.
func TestRowWireForm(t *testing.T) {
	t.Parallel()
	_, todos, notes := codecTables(t)
	note := &testmodels.Note{
		ID:      uuid.MustParse("6F9619FF-8B86-D011-B42D-00C04FC964FF"),
		Body:    "a\"b\\c\n\x01</script>é",
		Created: time.Date(2024, 1, 2, 3, 4, 5, 60, time.FixedZone("", -7*3600)),
		Data:    []byte{0, 1, 0xfe, 0xff},
		Tag:     sql.NullString{String: "t", Valid: true},
		Count:   -7,
		Meta:    json.RawMessage("{ \"k\" :\n [ 1 , 2 ] }"),
	}
	want := `{"id":"6f9619ff-8b86-d011-b42d-00c04fc964ff","body":"a\"b\\c\n\u0001</script>é",` +
		`"created":"2024-01-02T03:04:05.00000006-07:00","data":"AAH+/w==","score":null,"tag":"t",` +
		`"count":-7,"meta":{"k":[1,2]}}`
	if got := codecEncode(t, notes, note); string(got) != want {
		t.Fatalf("notes row\n got %s\nwant %s", got, want)
	}
	note.Meta = json.RawMessage("null") // a JSON null is a NULL column
	n, err := codecDecode(notes, codecEncode(t, notes, note))
	if err != nil || n.(*testmodels.Note).Meta != nil {
		t.Fatalf("meta JSON null decoded to %q (%v), want nil", n.(*testmodels.Note).Meta, err)
	}
	todo := &testmodels.Todo{ID: math.MinInt64, ListID: math.MaxInt64, Title: "", Done: true, List: &testmodels.List{ID: 1}}
	if got, want := string(codecEncode(t, todos, todo)), `{"id":-9223372036854775808,"list_id":9223372036854775807,"title":"","done":true}`; got != want {
		t.Fatalf("todos row\n got %s\nwant %s", got, want)
	}
}

func TestRowRoundTripTodo(t *testing.T) {
	t.Parallel()
	_, todos, _ := codecTables(t)
	for _, todo := range []testmodels.Todo{
		{ID: 1, ListID: 2, Title: "milk"},
		{ID: math.MaxInt64, ListID: math.MinInt64, Title: "x", Done: true},
		{},
	} {
		data := codecEncode(t, todos, &todo)
		got, err := codecDecode(todos, data)
		if err != nil {
			t.Fatalf("decode %s: %v", data, err)
		}
		if !reflect.DeepEqual(got, &todo) {
			t.Fatalf("round trip of %s: got %+v, want %+v", data, got, todo)
		}
	}
}

func TestRowStrings(t *testing.T) {
	t.Parallel()
	_, todos, _ := codecTables(t)
	var control strings.Builder
	for c := range 0x20 {
		control.WriteByte(byte(c))
	}
	control.WriteByte(0x7f)
	for _, s := range []string{
		"", `"`, `\`, `\"`, `"\\"`, `\u0041`, "'single'", "</script>&<>",
		control.String(),
		"é ß 中文 😀 \U0010FFFF \uFFFD",
		"\u2028\u2029", "e\u0301", "\u200d", "\x00\x00",
		strings.Repeat(`\"x`, 1000),
	} {
		todo := &testmodels.Todo{ID: 1, Title: s}
		data := codecEncode(t, todos, todo)
		// encoding/json reads the same string.
		var std struct {
			Title string `json:"title"`
		}
		if err := json.Unmarshal(data, &std); err != nil || std.Title != s {
			t.Fatalf("encoding/json reads %q (%v) from %s, want %q", std.Title, err, data, s)
		}
		got, err := codecDecode(todos, data)
		if err != nil {
			t.Fatalf("decode %s: %v", data, err)
		}
		if got.(*testmodels.Todo).Title != s {
			t.Fatalf("decoded %q, want %q", got.(*testmodels.Todo).Title, s)
		}
	}
	// Strings written by other JSON encoders.
	for raw, want := range map[string]string{
		`"\u00e9\ud83d\ude00"`: "é😀",
		`"\/\b\f\n\r\t"`:       "/\b\f\n\r\t",
		`"\u0000"`:             "\x00",
		`"é"`:                  "é",
		`"\uFFFD\ufffd"`:       "\uFFFD\uFFFD",
		`"\\ud800"`:            `\ud800`, // an escaped backslash, not an escape
	} {
		got, err := codecDecode(todos, []byte(`{"id":1,"list_id":1,"title":`+raw+`,"done":false}`))
		if err != nil {
			t.Fatalf("decode title %s: %v", raw, err)
		}
		if got.(*testmodels.Todo).Title != want {
			t.Fatalf("title %s decoded to %q, want %q", raw, got.(*testmodels.Todo).Title, want)
		}
	}
	// Text encoding/json would alter (to U+FFFD) is refused, naming the
	// row and column, in every kind of column that holds text.
	_, _, notes := codecTables(t)
	for _, raw := range []string{
		`"\uD800"`, `"\udc00"`, `"a\ud83dx"`, `"\ud83d\u0041"`, `"\ude00\ud83d"`, "\"\xff\"", "\"a\xc3\"", "\"\xed\xa0\x80\"",
	} {
		_, err := codecDecode(todos, []byte(`{"id":7,"list_id":1,"title":`+raw+`,"done":false}`))
		var ve *dbsync.ValueError
		if !errors.As(err, &ve) || ve.Table != "todos" || ve.Key != "7" || ve.Column != "title" || !errors.Is(err, dbsync.ErrBadRequest) {
			t.Fatalf("title %s: %v, want a bad request naming todos 7 title", raw, err)
		}
		for col, val := range map[string]string{"tag": raw, "meta": `{"k":` + raw + `}`, "body": raw} {
			_, err := codecDecode(notes, codecNoteJSON(map[string]string{col: val}, ""))
			if !errors.As(err, &ve) || ve.Column != col || !errors.Is(err, dbsync.ErrBadRequest) {
				t.Fatalf("notes.%s %s: %v, want a bad request naming the column", col, val, err)
			}
		}
	}
}

// codecValidNote is a notes row in which the tests replace one column.
var codecValidNote = map[string]string{
	"id":      `"6f9619ff-8b86-d011-b42d-00c04fc964ff"`,
	"body":    `"b"`,
	"created": `"2024-01-02T03:04:05Z"`,
	"data":    `"AAE="`,
	"score":   `1.5`,
	"tag":     `"t"`,
	"count":   `3`,
	"meta":    `{"a":1}`,
}

func codecNoteJSON(set map[string]string, drop string) []byte {
	var b strings.Builder
	b.WriteByte('{')
	first := true
	for _, k := range []string{"id", "body", "created", "data", "score", "tag", "count", "meta", "extra"} {
		v, ok := codecValidNote[k]
		if s, over := set[k]; over {
			v, ok = s, true
		}
		if !ok || k == drop {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		fmt.Fprintf(&b, "%q:%s", k, v)
	}
	b.WriteByte('}')
	return []byte(b.String())
}

func TestDecodeRowErrors(t *testing.T) {
	t.Parallel()
	_, todos, notes := codecTables(t)
	if _, err := codecDecode(notes, codecNoteJSON(nil, "")); err != nil {
		t.Fatalf("the valid note: %v", err)
	}
	tests := []struct {
		column, value string
	}{
		{"count", `"5"`},         // a string for an integer
		{"count", `1.5`},         // a float for an integer
		{"count", `1e3`},         // an exponent
		{"count", `2147483648`},  // out of int32
		{"count", `-2147483649`}, // out of int32
		{"count", `true`},
		{"count", `[]`},
		{"id", `"xyz"`}, // a bad UUID
		{"id", `"6f9619ff-8b86-d011-b42d-00c04fc964f"`},
		{"id", `42`},
		{"created", `"yesterday"`}, // bad times
		{"created", `"2024-01-02T03:04:05"`},
		{"created", `"2024-01-02 03:04:05Z"`},
		{"created", `"2024-13-02T03:04:05Z"`},
		{"created", `1704164645`},
		{"data", `"!!!"`}, // not base64
		{"data", `"AAE"`},
		{"data", `[0,1]`},
		{"data", `1`},
		{"score", `"1.5"`},
		{"score", `1e400`},
		{"score", `true`},
		{"tag", `5`},
		{"body", `5`},
		{"body", `["b"]`},
		{"body", `{}`},
	}
	for _, tc := range tests {
		data := codecNoteJSON(map[string]string{tc.column: tc.value}, "")
		_, err := codecDecode(notes, data)
		if !errors.Is(err, dbsync.ErrBadRequest) || errors.Is(err, dbsync.ErrUnknownColumn) {
			t.Errorf("%s = %s: %v, want ErrBadRequest", tc.column, tc.value, err)
		} else if !strings.Contains(err.Error(), "notes."+tc.column) {
			t.Errorf("%s = %s: error %q does not name the column", tc.column, tc.value, err)
		}
	}
	for _, v := range []string{`"true"`, `1`, `0`} {
		_, err := codecDecode(todos, []byte(`{"id":1,"list_id":1,"title":"t","done":`+v+`}`))
		if !errors.Is(err, dbsync.ErrBadRequest) {
			t.Errorf("done = %s: %v, want ErrBadRequest", v, err)
		}
	}
	// Unknown and missing columns.
	_, err := codecDecode(notes, codecNoteJSON(map[string]string{"extra": "1"}, ""))
	if !errors.Is(err, dbsync.ErrUnknownColumn) || !errors.Is(err, dbsync.ErrBadRequest) {
		t.Errorf("unknown column: %v, want ErrUnknownColumn", err)
	}
	if _, err := codecDecode(todos, []byte(`{"id":1,"list_id":1,"title":"t","done":false,"list":null}`)); !errors.Is(err, dbsync.ErrUnknownColumn) {
		t.Errorf("relation as a column: %v, want ErrUnknownColumn", err)
	}
	for _, col := range notes.Columns {
		_, err := codecDecode(notes, codecNoteJSON(nil, col.Name))
		if !errors.Is(err, dbsync.ErrBadRequest) || errors.Is(err, dbsync.ErrUnknownColumn) {
			t.Errorf("missing column %s: %v, want ErrBadRequest", col.Name, err)
		}
	}
	// null is the zero value for columns that cannot be NULL.
	got, err := codecDecode(notes, codecNoteJSON(map[string]string{"body": "null", "count": "null", "id": "null"}, ""))
	if err != nil {
		t.Fatal(err)
	}
	if n := got.(*testmodels.Note); n.Body != "" || n.Count != 0 || n.ID != uuid.Nil {
		t.Fatalf("nulls decoded to %+v", n)
	}
}

func TestEncodeRowErrors(t *testing.T) {
	t.Parallel()
	lists, _, notes := codecTables(t)
	now := time.Now()
	for name, note := range map[string]*testmodels.Note{
		"NaN":          {Created: now, Score: codecPtr(math.NaN())},
		"+Inf":         {Created: now, Score: codecPtr(math.Inf(1))},
		"-Inf":         {Created: now, Score: codecPtr(math.Inf(-1))},
		"InvalidUTF8":  {Created: now, Body: "ok\xffok"},
		"InvalidTag":   {Created: now, Tag: sql.NullString{String: "\xc3", Valid: true}},
		"InvalidJSON":  {Created: now, Meta: json.RawMessage(`{"a":`)},
		"Year10000":    {Created: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		"YearMinusOne": {Created: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
		// The server takes UTC years 1-9999: refused here, not there.
		"Year0":          {Created: time.Date(0, 6, 1, 0, 0, 0, 0, time.UTC)},
		"Year0InUTC":     {Created: time.Date(1, 1, 1, 0, 30, 0, 0, time.FixedZone("", 3600))},
		"Year10000InUTC": {Created: time.Date(9999, 12, 31, 23, 59, 59, 0, time.FixedZone("", -3600))},
	} {
		var ve *dbsync.ValueError
		if b, err := notes.Codec().AppendRow(nil, reflect.ValueOf(note).Elem()); err == nil {
			t.Errorf("%s: AppendRow wrote %s, want an error", name, b)
		} else if !errors.As(err, &ve) || ve.Table != "notes" || ve.Key != note.ID.String() || ve.Column == "" {
			t.Errorf("%s: error %q is not a *dbsync.ValueError naming the row and column", name, err)
		}
		if _, err := notes.Codec().EncodeRow(note); err == nil {
			t.Errorf("%s: EncodeRow succeeded", name)
		}
	}
	if _, err := lists.Codec().EncodeRow(&testmodels.List{Name: "\xff"}); err == nil {
		t.Error("lists: invalid UTF-8 name encoded")
	}
}

func TestParseRow(t *testing.T) {
	t.Parallel()
	row, err := protocol.ParseRow([]byte(" \t\r\n{ \"a\" : 1 , \"b\":[1,{\"c\":\"d\"}],\"c\":null,\"d\":true,\"e\":false," +
		"\"f\":-1.5e-3,\"g\":\"\\u00e9\\n\\\"\",\"\\u0068\":{} ,\"\":\"\"}\n "))
	if err != nil {
		t.Fatal(err)
	}
	want := protocol.Row{
		"a": []byte(`1`), "b": []byte(`[1,{"c":"d"}]`), "c": []byte(`null`), "d": []byte(`true`), "e": []byte(`false`),
		"f": []byte(`-1.5e-3`), "g": []byte(`"\u00e9\n\""`), "h": []byte(`{}`), "": []byte(`""`),
	}
	if len(row) != len(want) {
		t.Fatalf("ParseRow: %d members, want %d: %q", len(row), len(want), row)
	}
	for k, v := range want {
		if !bytes.Equal(row[k], v) {
			t.Errorf("ParseRow[%q] = %s, want %s", k, row[k], v)
		}
	}
	if row, err := protocol.ParseRow([]byte(`{}`)); err != nil || len(row) != 0 {
		t.Fatalf("ParseRow({}) = %v, %v", row, err)
	}
	nested := func(depth int) string {
		return `{"a":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`
	}
	if _, err := protocol.ParseRow([]byte(nested(20))); err != nil {
		t.Fatalf("20 nested arrays: %v", err)
	}

	bad := []string{
		"", " ", "{", "}", "[]", "null", `"a"`, "1",
		`{"a"`, `{"a":`, `{"a":1`, `{"a":1,`, `{"a":"x`, `{"a":"x\`,
		`{"a":1,}`, `{,}`, `{"a":1,,"b":2}`, `{"a" 1}`, `{"a"::1}`,
		`{"a":1}x`, `{"a":1}}`, `{"a":1} {}`, `{"a":1},`,
		`{a:1}`, `{'a':1}`, `{"a":'x'}`, `{1:1}`, `{null:1}`,
		`{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":+1}`, `{"a":1e}`, `{"a":-}`, `{"a":0x10}`,
		`{"a":tru}`, `{"a":True}`, `{"a":nul}`, `{"a":NaN}`, `{"a":Infinity}`, `{"a":undefined}`,
		`{"a":"\q"}`, `{"a":"\u00"}`, `{"a":"\u00zz"}`, `{"a":"\x41"}`, `{"a":"\'"}`, `{"\q":1}`, `{"a\u12":1}`,
		"{\"a\":\"x\ny\"}", "{\"a\":\"\x00\"}", "{\"a\x01\":1}",
		`{"a":[1,]}`, `{"a":[1 2]}`, `{"a":[,1]}`, `{"a":[}`, `{"a":{"b"}}`, `{"a":{"b":1,}}`, `{"a":{"b":1]}`,
		`{"a":{1:2}}`, `{"a":[1}`, `{"a":{"b":"\q"}}`, `{"a":["\u12"]}`,
		"\xef\xbb\xbf{}", // a byte order mark
		nested(1000),
		nested(100000),
		`{"a":1,"a":2}`,      // duplicate keys
		`{"a":1,"\u0061":2}`, // the same key, escaped
	}
	for _, s := range bad {
		if row, err := protocol.ParseRow([]byte(s)); !errors.Is(err, dbsync.ErrBadRequest) {
			t.Errorf("ParseRow(%.60q) = %q, %v; want ErrBadRequest", s, row, err)
		}
	}
}

func TestKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw  string
		want string
		ok   bool
	}{
		{`"abc"`, "abc", true},
		{` "x" `, "x", true},
		{`""`, "", true},
		{`"a\"b"`, `a"b`, true},
		{`"\u0041"`, "A", true},
		{`123`, "123", true},
		{`-5`, "-5", true},
		{`0`, "0", true},
		{`null`, "", false},
		{`true`, "", false},
		{`{}`, "", false},
		{`[1]`, "", false},
		{``, "", false},
		{`"unterminated`, "", false},
	}
	for _, tc := range tests {
		if got, ok := protocol.Key(json.RawMessage(tc.raw)); got != tc.want || ok != tc.ok {
			t.Errorf("Key(%s) = %q, %v; want %q, %v", tc.raw, got, ok, tc.want, tc.ok)
		}
	}
}

func TestRowKeys(t *testing.T) {
	t.Parallel()
	lists, todos, notes := codecTables(t)
	const canon = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
	good := []struct {
		table *dbsync.Table
		id    string // the JSON of the id column
		want  string
	}{
		{todos, `42`, "42"},
		{todos, `-9223372036854775808`, "-9223372036854775808"},
		{todos, `"42"`, "42"},
		{todos, `"042"`, "42"},
		{todos, `"+42"`, "42"},
		{todos, `-0`, "0"},
		{lists, `7`, "7"},
		{notes, `"` + canon + `"`, canon},
		{notes, `"6F9619FF-8B86-D011-B42D-00C04FC964FF"`, canon},
		{notes, `"6f9619ff8b86d011b42d00c04fc964ff"`, canon},
		{notes, `"{6f9619ff-8b86-d011-b42d-00c04fc964ff}"`, canon},
		{notes, `"urn:uuid:6f9619ff-8b86-d011-b42d-00c04fc964ff"`, canon},
	}
	for _, tc := range good {
		row := protocol.Row{tc.table.PK.Name: json.RawMessage(tc.id)}
		if got, err := tc.table.RowKey(row); err != nil || got != tc.want {
			t.Errorf("%s RowKey(id %s) = %q, %v; want %q", tc.table.Name, tc.id, got, err, tc.want)
		}
		k, _ := protocol.Key(json.RawMessage(tc.id))
		if got, err := tc.table.CanonicalKey(k); err != nil || got != tc.want {
			t.Errorf("%s CanonicalKey(%q) = %q, %v; want %q", tc.table.Name, k, got, err, tc.want)
		}
	}
	bad := []struct {
		table *dbsync.Table
		id    string
	}{
		{todos, `1.5`}, {todos, `1e3`}, {todos, `"abc"`}, {todos, `""`}, {todos, `null`}, {todos, `true`},
		{todos, `9223372036854775808`}, {todos, `"4 2"`},
		{notes, `"nope"`}, {notes, `""`}, {notes, `null`}, {notes, `1`}, {notes, `"6f9619ff-8b86-d011-b42d-00c04fc964f"`},
	}
	for _, tc := range bad {
		row := protocol.Row{tc.table.PK.Name: json.RawMessage(tc.id)}
		if got, err := tc.table.RowKey(row); !errors.Is(err, dbsync.ErrBadRequest) {
			t.Errorf("%s RowKey(id %s) = %q, %v; want ErrBadRequest", tc.table.Name, tc.id, got, err)
		}
	}
	if _, err := todos.RowKey(protocol.Row{"title": json.RawMessage(`"x"`)}); !errors.Is(err, dbsync.ErrBadRequest) {
		t.Errorf("RowKey without the key column: %v", err)
	}
	for _, tc := range []struct {
		table *dbsync.Table
		key   string
	}{{todos, "4.2"}, {todos, ""}, {todos, "x"}, {todos, "9223372036854775808"}, {notes, "nope"}, {notes, ""}} {
		if got, err := tc.table.CanonicalKey(tc.key); !errors.Is(err, dbsync.ErrBadRequest) {
			t.Errorf("%s CanonicalKey(%q) = %q, %v; want ErrBadRequest", tc.table.Name, tc.key, got, err)
		}
	}
}

func TestParseKey(t *testing.T) {
	t.Parallel()
	_, todos, notes := codecTables(t)
	if v, err := todos.ParseKey("42"); err != nil || v != int64(42) {
		t.Errorf("todos ParseKey(42) = %#v, %v", v, err)
	}
	if v, err := notes.ParseKey("6F9619FF-8B86-D011-B42D-00C04FC964FF"); err != nil || v != "6f9619ff-8b86-d011-b42d-00c04fc964ff" {
		t.Errorf("notes ParseKey = %#v, %v", v, err)
	}
	for _, tc := range []struct {
		table *dbsync.Table
		key   string
	}{{todos, "x"}, {todos, "1.0"}, {todos, ""}, {notes, "x"}, {notes, ""}} {
		if v, err := tc.table.ParseKey(tc.key); !errors.Is(err, dbsync.ErrBadRequest) {
			t.Errorf("%s ParseKey(%q) = %#v, %v; want ErrBadRequest", tc.table.Name, tc.key, v, err)
		}
	}
	// ParseKey undoes KeyOf.
	todo := testmodels.Todo{ID: -17}
	if v, err := todos.ParseKey(todos.Codec().KeyOf(reflect.ValueOf(todo))); err != nil || v != int64(-17) {
		t.Errorf("ParseKey(KeyOf) = %#v, %v", v, err)
	}
}

// TestRowAcrossDatabases carries notes from one database to the other kind
// through the codec: bun read, AppendRow, ParseRow, DecodeRow, store.Write.
func TestRowAcrossDatabases(t *testing.T) {
	t.Parallel()
	other := map[string]string{dbtest.KindSQLite: dbtest.KindPostgres, dbtest.KindPostgres: dbtest.KindSQLite}
	for _, kind := range dbtest.Kinds {
		t.Run(kind+"_to_"+other[kind], func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			src, dst := dbtest.Open(t, kind), dbtest.Open(t, other[kind])
			tables := map[*bun.DB]*dbsync.Table{}
			for _, db := range []*bun.DB{src, dst} {
				if err := testmodels.CreateSchema(ctx, db); err != nil {
					t.Fatal(err)
				}
				reg, err := dbsync.Track(db, testmodels.All()...)
				if err != nil {
					t.Fatal(err)
				}
				tables[db] = reg.Table("notes")
			}
			// PostgreSQL keeps microseconds.
			created := time.Date(2024, 2, 29, 23, 59, 59, 123456000, time.FixedZone("", 5*3600+30*60))
			in := []testmodels.Note{
				{
					ID: uuid.New(), Body: "full \"'\\\x01é😀", Created: created, Data: codecAllBytes(),
					Score: codecPtr(0.1), Tag: sql.NullString{String: "t", Valid: true}, Count: math.MinInt32,
					Meta: json.RawMessage(`{"z":[1,2.5,"x",null,true,{"q":"\u00e9"}],"a":{}}`),
				},
				{ID: uuid.New(), Body: "nulls", Created: time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), Count: math.MaxInt32},
			}
			if _, err := src.NewInsert().Model(&in).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			var read []testmodels.Note
			if err := src.NewSelect().Model(&read).Order("body").Scan(ctx); err != nil {
				t.Fatal(err)
			}
			if len(read) != len(in) {
				t.Fatalf("read %d notes, want %d", len(read), len(in))
			}
			for i := range read {
				if d := codecNoteDiff(&read[i], &in[i], false, false); d != "" {
					t.Fatalf("%s changed the note: %s", kind, d)
				}
				data, err := tables[src].Codec().AppendRow(nil, reflect.ValueOf(read[i]))
				if err != nil {
					t.Fatal(err)
				}
				row, err := protocol.ParseRow(data)
				if err != nil {
					t.Fatal(err)
				}
				v, err := tables[dst].Codec().DecodeRow(row)
				if err != nil {
					t.Fatal(err)
				}
				if err := store.Write(ctx, dst, tables[dst], []reflect.Value{v.Elem()}, false); err != nil {
					t.Fatal(err)
				}
				got := &testmodels.Note{ID: read[i].ID}
				if err := dst.NewSelect().Model(got).WherePK().Scan(ctx); err != nil {
					t.Fatal(err)
				}
				if d := codecNoteDiff(got, &read[i], false, false); d != "" {
					t.Fatalf("note %q after %s → %s: %s (wire form %s)", read[i].Body, kind, other[kind], d, data)
				}
			}
		})
	}
}

func FuzzParseRow(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":1}`, ` {"a" : [1, {"b": null}], "c": "\u00e9\n"} `, `{"a":1,"a":2}`,
		`{"a":"\q"}`, `{"a":"\u00"}`, `{"a":[1,]}`, `{"a":01}`, `{"a":1}x`, `[]`, "{\"a\":\"\xff\"}",
		`{"a":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		row, err := protocol.ParseRow(data)
		if err != nil {
			if !errors.Is(err, dbsync.ErrBadRequest) {
				t.Fatalf("ParseRow(%q): %v, not ErrBadRequest", data, err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("ParseRow accepted %q, which is not valid JSON", data)
		}
		var std map[string]json.RawMessage
		if err := json.Unmarshal(data, &std); err != nil {
			t.Fatalf("ParseRow accepted %q, which is not a JSON object: %v", data, err)
		}
		if len(std) != len(row) {
			t.Fatalf("ParseRow(%q) has %d members, encoding/json %d", data, len(row), len(std))
		}
		for k, v := range std {
			if !bytes.Equal(row[k], v) {
				t.Fatalf("ParseRow(%q)[%q] = %q, encoding/json %q", data, k, row[k], v)
			}
		}
	})
}

func FuzzDecodeRow(f *testing.F) {
	lists, todos, notes := codecTables(f)
	tables := []*dbsync.Table{lists, todos, notes}
	seed := func(i byte, data []byte) { f.Add(append([]byte{i}, data...)) }
	seed(0, []byte(`{"id":1,"name":"home"}`))
	seed(1, []byte(`{"id":-1,"list_id":0,"title":"\u00e9\"","done":true}`))
	seed(1, []byte(`{"id":1,"list_id":1,"title":null,"done":null}`))
	seed(2, codecNoteJSON(nil, ""))
	seed(2, codecNoteJSON(map[string]string{"created": `"2024-01-02T03:04:05.123456789+05:30"`, "meta": `[1, {"a" : null}]`, "data": `null`}, ""))
	seed(2, codecNoteJSON(map[string]string{"created": `"2024-01-02T03:04:05+00:00"`, "id": `"6F9619FF8B86D011B42D00C04FC964FF"`, "score": "-0"}, ""))
	seed(2, codecNoteJSON(map[string]string{"tag": "null", "score": "null", "meta": "null", "body": `"\ud800"`}, ""))
	seed(2, codecNoteJSON(map[string]string{"tag": `"\ud83d\ude00\udc00"`, "meta": "{\"a\":\"\xff\"}", "body": `"\\ud800\uFFFD"`}, ""))
	seed(1, []byte("{\"id\":1,\"list_id\":1,\"title\":\"a\xc3\",\"done\":false}"))
	full := &testmodels.Note{ID: uuid.New(), Created: time.Now(), Data: codecAllBytes(), Score: codecPtr(math.Pi), Meta: json.RawMessage(`{"x":"y"}`)}
	seed(2, codecEncode(f, notes, full))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		tb := tables[int(data[0])%len(tables)]
		first, err := codecDecode(tb, data[1:])
		if err != nil {
			if !errors.Is(err, dbsync.ErrBadRequest) {
				t.Fatalf("decode %q: %v, not ErrBadRequest", data[1:], err)
			}
			return
		}
		enc, err := tb.Codec().AppendRow(nil, reflect.ValueOf(first).Elem())
		if err != nil {
			t.Fatalf("decoded %q into %+v, which does not encode: %v", data[1:], first, err)
		}
		// Text is decoded as sent or refused, never altered to U+FFFD.
		if in := data[1:]; !utf8.Valid(in) {
			t.Fatalf("decoded %q, which is not valid UTF-8", in)
		} else if bytes.Contains(enc, []byte("\uFFFD")) && !bytes.Contains(in, []byte("\uFFFD")) && !bytes.Contains(bytes.ToLower(in), []byte(`\ufffd`)) {
			t.Fatalf("decoding %q made up a U+FFFD: %s", in, enc)
		}
		second, err := codecDecode(tb, enc)
		if err != nil {
			t.Fatalf("encoded %+v as %s, which does not decode: %v", first, enc, err)
		}
		if d := codecModelDiff(second, first); d != "" {
			t.Fatalf("%s: codecDecode(codecEncode(x)) != x: %s", enc, d)
		}
		again, err := tb.Codec().AppendRow(nil, reflect.ValueOf(second).Elem())
		if err != nil || !bytes.Equal(again, enc) {
			t.Fatalf("encoded again %s (%v), first %s", again, err, enc)
		}
	})
}

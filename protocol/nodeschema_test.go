package protocol_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/internal/wire"
	"github.com/go-dbsync/dbsync/protocol"
)

// The text form reads back to the schema it was written from, and is
// the only form of that schema: anything else is refused.
func TestParseNodeSchema(t *testing.T) {
	t.Parallel()
	schema := &protocol.NodeSchema{Tables: []protocol.SchemaTable{
		{Name: "todos", KeyKind: protocol.KeyUUID, Columns: []protocol.SchemaColumn{{"id", "uuid"}, {"title", "string"}, {"done", "bool"}}},
		{Name: "my table", KeyKind: protocol.KeyInt, Columns: []protocol.SchemaColumn{{"id", "int"}}},
	}}
	schema.Normalize()
	text := schema.String()
	if text != "1;my%20table:i:id=int;todos:u:id=uuid,done=bool,title=string" {
		t.Fatalf("text form %q", text)
	}
	back, err := protocol.ParseNodeSchema(text)
	if err != nil || back.String() != text || back.Fingerprint() != schema.Fingerprint() {
		t.Fatalf("read back %v, %v", back, err)
	}
	for _, bad := range []string{
		"", "2;t:i:id=int", "1;t", "1;t:x:id=int", "1;t:i:", "1;t:i:id", "1;t:i:id=Int",
		"1;b:i:id=int;a:i:id=int", "1;a:i:id=int;a:i:id=int", // tables out of order, twice
		"1;t:i:id=int,b=int,a=int", "1;t:i:id=int,a=int,a=int", "1;t:i:id=int,id=int",
		"1;t%:i:id=int", "1;t%2:i:id=int", "1;t%61:i:id=int", "1;t%2a:i:id=int", "1;t t:i:id=int",
		"1;" + strings.Repeat("x", protocol.MaxSchemaBytes),
	} {
		if _, err := protocol.ParseNodeSchema(bad); !errors.Is(err, wire.ErrBadRequest) {
			t.Errorf("%q: got %v, want a bad request", bad, err)
		}
	}
}

// FuzzParseNodeSchema: what ParseNodeSchema accepts is written back as it
// was (one text per schema), and it never panics.
func FuzzParseNodeSchema(f *testing.F) {
	for _, s := range []string{"1", "1;todos:u:id=uuid,done=bool,title=string", "1;a%20b:t:k=string", "1;t:i:id=int,a=int"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		s, err := protocol.ParseNodeSchema(text)
		if err != nil {
			return
		}
		if got := s.String(); got != text {
			t.Fatalf("%q read back as %q", text, got)
		}
	})
}

// TestNullableText: the text form of the nullable columns reads back as
// written, names escaped, and malformed text is a bad request.
func TestNullableText(t *testing.T) {
	t.Parallel()
	n := protocol.Nullable{"todos": {"note": true, "a b": false}, "lists": {}, "notes": {"score": false}}
	text := n.String()
	if want := "1;notes:score;todos:a%20b,note!"; text != want {
		t.Fatalf("text %q, want %q", text, want)
	}
	back, err := protocol.ParseNullable(text)
	if nn, ok := back["todos"]["a b"]; err != nil || !ok || nn || !back["todos"]["note"] || back["notes"]["score"] || len(back) != 2 {
		t.Fatalf("parsed %v, %v", back, err)
	}
	if none, err := protocol.ParseNullable("1"); err != nil || len(none) != 0 {
		t.Fatalf("\"1\": %v, %v; want none", none, err)
	}
	for _, bad := range []string{"", "2;t:c", "1;t", "1;t:", "1;t:c;t:d", "1;t:a b"} {
		if _, err := protocol.ParseNullable(bad); !errors.Is(err, wire.ErrBadRequest) {
			t.Errorf("%q: %v, want a bad request", bad, err)
		}
	}
}

// TestNullableTextOneForm: one nullability has one text form, as a
// schema announcement has. A column named twice (its marks disagreeing:
// the later one used to win unseen), columns or tables out of order, are
// refused with 400 bad_request, not read.
func TestNullableTextOneForm(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		"1;items:price!,price", // twice, the later mark would win
		"1;items:price,price!",
		"1;items:price,price",
		"1;items:price,blob",       // columns out of order
		"1;todos:note;items:price", // tables out of order
		"1;items:blob;items:price", // a table twice
		"1;items:blob,price;",      // an empty table
	} {
		if n, err := protocol.ParseNullable(bad); !errors.Is(err, wire.ErrBadRequest) {
			t.Errorf("%q: read as %v (%v), want a bad request", bad, n, err)
		}
	}
	for _, good := range []string{"1", "1;items:blob,price!", "1;items:price;todos:a%20b,note!"} {
		if n, err := protocol.ParseNullable(good); err != nil || n.String() != good {
			t.Errorf("%q: %v, %v", good, n, err)
		}
	}
}

// FuzzParseNullable: ParseNullable never panics, and what it accepts
// is the one text form of what it read.
func FuzzParseNullable(f *testing.F) {
	for _, s := range []string{"1", "1;notes:score;todos:a%20b,note!", "1;t:c!,c", "1;t:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		n, err := protocol.ParseNullable(text)
		if err != nil {
			return
		}
		if got := n.String(); got != text {
			t.Fatalf("%q accepted, but its text form is %q", text, got)
		}
	})
}

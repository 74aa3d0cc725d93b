package protocol_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/protocol"
)

func int64p(v int64) *int64 { return &v }

func TestPushRequestJSON(t *testing.T) {
	t.Parallel()
	req := &protocol.PushRequest{
		PushID:             "0b9b7f0e-6c8c-4a35-9f0f-6f2f3c1b8e55",
		LatestVersionID:    int64p(41),
		LatestVersionToken: "4IQMNDTC2ZQYJCO2PH7OGQ2PFB",
		OwnVersionID:       int64p(39),
		Operations: []protocol.Operation{
			{Order: 12, Table: "lists", RowID: "3", Command: "i"},
			{Order: 14, Table: "to\"dos", RowID: "4", Command: "d", VersionID: int64p(2)},
		},
		Payload: protocol.Payload{"lists": {json.RawMessage(`{"id":3,"name":"g\u00e9 \"x\""}`)}},
	}
	b, err := req.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	// encoding/json agrees with the fast encoder.
	var viaStd map[string]any
	if err := json.Unmarshal(b, &viaStd); err != nil {
		t.Fatalf("fast encoding is not valid JSON: %v\n%s", err, b)
	}
	got, err := protocol.DecodePushRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(normalizePush(got), normalizePush(req)) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, req)
	}
	var viaUnmarshal protocol.PushRequest
	if err := json.Unmarshal(b, &viaUnmarshal); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(normalizePush(&viaUnmarshal), normalizePush(req)) {
		t.Fatalf("json.Unmarshal round trip: %+v", viaUnmarshal)
	}
	for _, bad := range []string{
		``, `[]`, `{"push_id": 3}`, `{"latest_version_id": "x"}`, `{"latest_version_token": 3}`, `{"own_version_id": "1"}`, `{"operations": {}}`,
		`{"operations": [{"order": "1"}]}`, `{"payload": {"t": [1]}}`, `{"payload": {"t": [{}], "t": []}}`,
		`{"push_id": "a"} x`, `{"push_id": "a"`,
	} {
		if _, err := protocol.DecodePushRequest([]byte(bad)); !errors.Is(err, dbsync.ErrBadRequest) {
			t.Errorf("DecodePushRequest(%q) = %v, want ErrBadRequest", bad, err)
		}
	}
}

func normalizePush(p *protocol.PushRequest) string {
	ops := p.Operations
	if ops == nil {
		ops = []protocol.Operation{}
	}
	b, _ := json.Marshal(struct {
		ID  string
		V   *int64
		Ops []protocol.Operation
		P   map[string][]string
	}{p.PushID, p.LatestVersionID, ops, rowsAsStrings(p.Payload)})
	return string(b)
}

func rowsAsStrings(p protocol.Payload) map[string][]string {
	out := map[string][]string{}
	for t, rows := range p {
		for _, r := range rows {
			var v any
			_ = json.Unmarshal(r, &v)
			b, _ := json.Marshal(v)
			out[t] = append(out[t], string(b))
		}
	}
	return out
}

func TestMessageJSON(t *testing.T) {
	t.Parallel()
	msgs := []*protocol.Message{
		{Type: protocol.MsgHeader, LatestVersionID: int64p(4), Push: &protocol.PushStatus{PushID: "p", VersionID: int64p(3)}, MaxKeys: map[string]int64{"lists": 9}},
		{Type: protocol.MsgVersions, Versions: []protocol.Version{{VersionID: 3, NodeID: int64p(1)}}},
		{Type: protocol.MsgChunk, Operations: []protocol.Operation{{Order: 1, Table: "lists", RowID: "1", Command: "u", VersionID: int64p(3)}},
			Payload: protocol.Payload{"lists": {json.RawMessage(`{"id":1,"name":"a"}`)}}},
		{Type: protocol.MsgRows, Table: "lists", Rows: []json.RawMessage{json.RawMessage(`{"id":1,"name":"a"}`)}},
		{Type: protocol.MsgEnd, OperationCount: 1, RowCount: 1},
		{Type: protocol.MsgEnd, RowCount: 2, ScopeOutCount: 3, ScopeInCount: 4},
		{Type: protocol.MsgError, Error: &protocol.ErrorDetail{Code: "internal", Message: "x"}},
	}
	for _, m := range msgs {
		b, err := protocol.AppendMessage(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(b) {
			t.Fatalf("%s line is not valid JSON: %s", m.Type, b)
		}
		got, err := protocol.ParseMessage(b)
		if err != nil {
			t.Fatalf("%s: %v", m.Type, err)
		}
		want, _ := json.Marshal(m)
		have, _ := json.Marshal(got)
		if string(want) != string(have) {
			t.Fatalf("%s round trip:\n got %s\nwant %s", m.Type, have, want)
		}
	}
	if _, err := protocol.ParseMessage([]byte(`{"rows": 3}`)); !errors.Is(err, dbsync.ErrBadRequest) {
		t.Fatalf("bad line: %v", err)
	}
}

// FuzzDecodePushRequest: never panics; what decodes re-encodes to JSON that
// decodes to the same request, and is valid for encoding/json.
// TestDecodeOperationsRuns decodes operations whose tables and commands
// repeat, in runs and not, written plainly and escaped: each gets its
// own (decodeOperations reuses the strings of a run).
func TestDecodeOperationsRuns(t *testing.T) {
	t.Parallel()
	body := `{"push_id":"p","operations":[` +
		`{"order":1,"table":"a","row_id":"1","command":"i"},` +
		`{"order":2,"table":"a","row_id":"2","command":"i"},` +
		`{"order":3,"table":"b","row_id":"1","command":"u"},` +
		`{"order":4,"table":"\u0061","row_id":"3","command":"\u0064"},` +
		`{"order":5,"table":"a\"","row_id":"4","command":"i"},` +
		`{"order":6,"row_id":"5"}],"payload":{}}`
	req, err := protocol.DecodePushRequest([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []protocol.Operation{
		{Order: 1, Table: "a", RowID: "1", Command: "i"},
		{Order: 2, Table: "a", RowID: "2", Command: "i"},
		{Order: 3, Table: "b", RowID: "1", Command: "u"},
		{Order: 4, Table: "a", RowID: "3", Command: "d"},
		{Order: 5, Table: "a\"", RowID: "4", Command: "i"},
		{Order: 6, RowID: "5"},
	}
	if !reflect.DeepEqual(req.Operations, want) {
		t.Fatalf("got %+v\nwant %+v", req.Operations, want)
	}
}

func FuzzDecodePushRequest(f *testing.F) {
	f.Add([]byte(`{"push_id":"x","latest_version_id":1,"operations":[{"order":1,"table":"t","row_id":"1","command":"i"}],"payload":{"t":[{"id":1}]}}`))
	f.Add([]byte(`{"push_id":"x","latest_version_id":null,"operations":[],"payload":{}}`))
	f.Add([]byte(`{"push_id":"x","latest_version_id":2,"latest_version_token":"4IQMNDTC2ZQYJCO2PH7OGQ2PFB","operations":[],"payload":{}}`))
	f.Add([]byte(`{"push_id":"x","latest_version_id":5,"own_version_id":4,"operations":[],"payload":{}}`))
	f.Add([]byte(`{"payload":{"t":[{"a":[1,{"b":"\u00e9\n"}]}]}}`))
	f.Add([]byte(`{"operations":[{"order":-0,"version_id":null}]}`))
	f.Add([]byte(`{"operations":[{"table":"t","command":"i"},{"table":"t","command":"i"},{"table":"\u0074","command":"u"},{"table":"t\"","command":"d"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := protocol.DecodePushRequest(data)
		if err != nil {
			if !errors.Is(err, dbsync.ErrBadRequest) && !errors.Is(err, dbsync.ErrUnknownColumn) {
				t.Fatalf("error %v does not wrap ErrBadRequest", err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		b, err := req.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(b) {
			t.Fatalf("re-encoding is invalid JSON: %s", b)
		}
		again, err := protocol.DecodePushRequest(b)
		if err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		if normalizePush(again) != normalizePush(req) {
			t.Fatalf("round trip changed the request")
		}
	})
}

// parseMessageSeeds are FuzzParseMessage's seeds: a line of every type,
// and every field of a stream line (TestParseMessageSeeds checks both).
var parseMessageSeeds = []string{
	`{"type":"header","latest_version_id":3,"push":{"push_id":"p","version_id":null},"max_keys":{"a":1}}`,
	`{"type":"header","latest_version_id":3,"tables":["t","u"],"scoped":["t","u"],"held_read":true}`,
	`{"type":"header","latest_version_id":3,"latest_version_token":"4IQMNDTC2ZQYJCO2PH7OGQ2PFB"}`,
	`{"type":"header","latest_version_id":3,"node_version_id":2}`,
	`{"type":"versions","versions":[{"version_id":1,"node_id":2,"created":"2026-01-02T03:04:05Z"},{"version_id":2,"node_id":null,"created":"2026-01-02T03:04:05.5Z"}]}`,
	`{"type":"versions","versions":[{"version_id":3,"node_id":2,"created":"2026-01-02T03:04:05Z","token":"4IQMNDTC2ZQYJCO2PH7OGQ2PFB"}]}`,
	`{"type":"chunk","operations":[{"order":1,"table":"t","row_id":"1","command":"u"}],"payload":{"t":[{"id":1}]}}`,
	`{"type":"rows","table":"t","rows":[{"id":1}]}`,
	`{"type":"scope_out","table":"t","keys":["1","2"]}`,
	`{"type":"scope_in","table":"t","rows":[{"id":1}]}`,
	`{"type":"backfill","table":"t","rows":[{"id":1,"note":"n"},{"id":2,"note":null}]}`,
	`{"type":"end","operation_count":1,"row_count":2}`,
	`{"type":"end","operation_count":1,"row_count":2,"backfill_count":3,"scope_out_count":4,"scope_in_count":5}`,
	`{"type":"error","error":{"code":"internal","message":"internal error (request r)"}}`,
}

// TestParseMessageSeeds: the seeds of FuzzParseMessage parse, name every
// line type, and name every field of protocol.Message (read from its JSON
// tags), so that a new field gets a seed.
func TestParseMessageSeeds(t *testing.T) {
	types := map[string]bool{}
	fields := map[string]bool{}
	for _, seed := range parseMessageSeeds {
		m, err := protocol.ParseMessage([]byte(seed))
		if err != nil {
			t.Fatalf("seed %s: %v", seed, err)
		}
		types[m.Type] = true
		var keys map[string]json.RawMessage
		if err := json.Unmarshal([]byte(seed), &keys); err != nil {
			t.Fatal(err)
		}
		for k := range keys {
			fields[k] = true
		}
	}
	for _, typ := range []string{protocol.MsgHeader, protocol.MsgVersions, protocol.MsgChunk, protocol.MsgRows, protocol.MsgEnd,
		protocol.MsgScopeOut, protocol.MsgScopeIn, protocol.MsgBackfill, protocol.MsgError} {
		if !types[typ] {
			t.Errorf("no seed of a %s line", typ)
		}
	}
	mt := reflect.TypeFor[protocol.Message]()
	for i := range mt.NumField() {
		name, _, _ := strings.Cut(mt.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" && !fields[name] {
			t.Errorf("no seed of FuzzParseMessage has the field %q (Message.%s)", name, mt.Field(i).Name)
		}
	}
}

// FuzzParseMessage: never panics; accepted lines are valid JSON objects
// with a type.
func FuzzParseMessage(f *testing.F) {
	for _, seed := range parseMessageSeeds {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := protocol.ParseMessage(line)
		if err != nil {
			return
		}
		if !json.Valid(line) || m.Type == "" {
			t.Fatalf("accepted %q", line)
		}
		b, err := protocol.AppendMessage(nil, m)
		if err != nil {
			return // e.g. a versions line whose time cannot be re-encoded
		}
		if _, err := protocol.ParseMessage(b); err != nil {
			t.Fatalf("re-encoded line %s does not parse: %v", b, err)
		}
	})
}

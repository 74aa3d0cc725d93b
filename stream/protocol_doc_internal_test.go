package stream

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/peer"
)

// The stream section of docs/protocol.md, checked against the code: its
// frame types are the ones ReadFrame takes, and its worked session is
// what this package's MACs, keys and frames give.

func streamDoc(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	start := strings.Index(s, "\n## Stream mode")
	if start < 0 {
		t.Fatal(`docs/protocol.md has no "## Stream mode" section`)
	}
	s = s[start+1:]
	if end := strings.Index(s, "\n## "); end >= 0 {
		s = s[:end]
	}
	return s
}

// TestProtocolDocFrameTypes: the table of frame types lists exactly the
// types ReadFrame accepts.
func TestProtocolDocFrameTypes(t *testing.T) {
	t.Parallel()
	var code []string
	for b := range 256 {
		if _, _, err := ReadFrame(bytes.NewReader([]byte{0, 0, 0, 1, byte(b)}), 16); err == nil {
			code = append(code, string(rune(b)))
		}
	}
	var doc []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(.)` \\| [A-Z]+ \\|").FindAllStringSubmatch(streamDoc(t), -1) {
		doc = append(doc, m[1])
	}
	slices.Sort(doc)
	if !slices.Equal(code, doc) {
		t.Fatalf("frame types: ReadFrame takes %q, docs/protocol.md's table lists %q", code, doc)
	}
}

// TestProtocolDocSession: the worked session of docs/protocol.md, frame by
// frame, with its proofs, keys and MACs as this package computes them.
func TestProtocolDocSession(t *testing.T) {
	t.Parallel()
	const (
		a, na  = "11111111-1111-4111-8111-111111111111", "0123456789abcdef0123456789abcdef"
		b, nb  = "22222222-2222-4222-8222-222222222222", "fedcba9876543210fedcba9876543210"
		schema = "9f86d081884c7d659a2feaa0c55ad015"
		epochA = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
		row    = "33333333-3333-4333-8333-333333333333"
		hlc    = 1795435200000 << 16 // 2026-11-23T12:00:00Z, counter 0
	)
	s := &session{cfg: Config{Secret: []byte("mesh secret")}}
	keyAB, keyBA := s.frameKey(na, nb, a, b), s.frameKey(nb, na, b, a)
	js := func(v any) []byte {
		p, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	batch := peer.Batch{Changes: []peer.Change{{Table: "notes", ID: row, HLC: hlc, Node: a,
		Row: json.RawMessage(`{"id":"` + row + `","title":"buy milk"}`), Seq: 1}}, Last: 1, Epoch: epochA}
	frames := []struct {
		dir string
		typ byte
		v   any
		key []byte
		seq uint64
	}{
		{"A→B", frameHello, hello{Version: Version, Node: a, Nonce: na, Schema: schema}, nil, 0},
		{"B→A", frameHello, hello{Version: Version, Node: b, Nonce: nb, Schema: schema}, nil, 0},
		{"A→B", frameAuth, auth{MAC: s.mac(na, nb, a, b)}, nil, 0},
		{"B→A", frameAuth, auth{MAC: s.mac(nb, na, b, a)}, nil, 0},
		{"A→B", frameCursor, peer.Position{}, keyAB, 0},
		{"B→A", frameCursor, peer.Position{}, keyBA, 0},
		{"A→B", frameBatch, batch, keyAB, 1},
		{"A→B", frameDone, struct{}{}, keyAB, 2},
		{"B→A", frameDone, struct{}{}, keyBA, 1},
		{"B→A", frameCommit, commit{Applied: 1}, keyBA, 2},
		{"A→B", frameCommit, commit{Applied: 0}, keyAB, 3},
	}
	var block strings.Builder
	block.WriteString("```\n")
	for _, f := range frames {
		payload := js(f.v)
		var mac []byte
		if f.key != nil {
			mac = frameMAC(f.key, f.seq, f.typ, payload)
		}
		var wire bytes.Buffer
		if err := WriteFrame(&wire, f.typ, append(append([]byte(nil), payload...), mac...)); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&block, "%s  %x %c %s\n", f.dir, wire.Bytes()[:4], f.typ, payload)
		if mac != nil {
			fmt.Fprintf(&block, "     mac[%d] %x\n", f.seq, mac)
		}
	}
	block.WriteString("```")
	if os.Getenv("DBSYNC_PRINT_DOC") != "" {
		t.Logf("\n%s\nkey A→B %x\nkey B→A %x", block.String(), keyAB, keyBA)
	}
	doc := streamDoc(t)
	helloA := js(frames[0].v)
	for _, want := range []string{block.String(), hex.EncodeToString(keyAB), hex.EncodeToString(keyBA),
		fmt.Sprintf("`00 00 00 %02x 48` then the\n%d bytes of A's HELLO JSON", len(helloA)+1, len(helloA))} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/protocol.md's stream section does not show\n%s", want)
		}
	}
	// The limits the section states.
	for _, want := range []string{
		fmt.Sprintf("version `%d`", Version),
		fmt.Sprintf("%d bytes (4 KiB)", maxPreAuthFrame),
		fmt.Sprintf("%d bytes (64 MiB)", DefaultMaxFrame),
		fmt.Sprintf("%d-byte", macSize),
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/protocol.md's stream section does not say %q", want)
		}
	}
}

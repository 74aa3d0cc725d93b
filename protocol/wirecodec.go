package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/go-dbsync/dbsync/internal/wire"
)

// Fast JSON for the protocol's bulky messages. encoding/json validates and
// copies every raw row several times; these functions write rows as they
// are and read them without copying (the values alias the input).

func parseInt(v []byte, what string) (int64, error) {
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: want an integer, got %.40s", wire.ErrBadRequest, what, v)
	}
	return n, nil
}

func parseOptInt(v []byte, what string) (*int64, error) {
	if wire.IsNull(v) {
		return nil, nil
	}
	n, err := parseInt(v, what)
	if err != nil {
		return nil, err
	}
	return &n, nil
}

func parseString(v []byte, what string) (string, error) {
	s, err := wire.Unquote(v)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", wire.ErrBadRequest, what, err)
	}
	return s, nil
}

// parseOptString is parseString reading null as "".
func parseOptString(v []byte, what string) (string, error) {
	if wire.IsNull(v) {
		return "", nil
	}
	return parseString(v, what)
}

// memo is parseString remembering the last string it decoded, returned
// again for the same JSON text.
type memo struct {
	raw []byte
	s   string
}

func (m *memo) parse(v []byte, what string) (string, error) {
	if m.raw != nil && bytes.Equal(v, m.raw) {
		return m.s, nil
	}
	s, err := parseString(v, what)
	if err != nil {
		return "", err
	}
	m.raw, m.s = v, s
	return s, nil
}

// decodeOperations reads a JSON array of operations.
func decodeOperations(data []byte) ([]Operation, error) {
	if wire.IsNull(bytes.TrimSpace(data)) {
		return nil, nil
	}
	// One allocation for the operations of most chunks and pushes: an
	// operation takes some 60 bytes of JSON, rarely fewer than 48 (this
	// over-allocates by a quarter at most), and a chunk holds 10,000 by
	// default. Capped: padding a body (whitespace) must not buy memory
	// beyond what its operations take.
	ops := make([]Operation, 0, min(len(data)/48, 1<<14))
	// Operations name few tables and commands, mostly in runs: each is
	// decoded once per run, the operations sharing its string.
	var table, command memo
	err := wire.ForEachElement(data, func(elem []byte) error {
		var op Operation
		err := wire.ForEachMemberBytes(elem, func(key, v []byte) error {
			var err error
			switch string(key) {
			case "order":
				op.Order, err = parseInt(v, "operation order")
			case "table":
				op.Table, err = table.parse(v, "operation table")
			case "row_id":
				op.RowID, err = parseString(v, "operation row_id")
			case "command":
				var c string
				c, err = command.parse(v, "operation command")
				op.Command = Command(c)
			case "version_id":
				op.VersionID, err = parseOptInt(v, "operation version_id")
			}
			return err
		})
		if err != nil {
			return err
		}
		ops = append(ops, op)
		return nil
	})
	return ops, err
}

func appendOperations(b []byte, ops []Operation) []byte {
	b = append(b, '[')
	for i, op := range ops {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"order":`...)
		b = strconv.AppendInt(b, op.Order, 10)
		b = append(b, `,"table":`...)
		b = wire.AppendString(b, op.Table)
		b = append(b, `,"row_id":`...)
		b = wire.AppendString(b, op.RowID)
		b = append(b, `,"command":`...)
		b = wire.AppendString(b, string(op.Command))
		if op.VersionID != nil {
			b = append(b, `,"version_id":`...)
			b = strconv.AppendInt(b, *op.VersionID, 10)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

// decodeRows reads a JSON array of row objects without copying them.
func decodeRows(data []byte) ([]json.RawMessage, error) {
	if wire.IsNull(bytes.TrimSpace(data)) {
		return nil, nil
	}
	rows := []json.RawMessage{}
	err := wire.ForEachElement(data, func(elem []byte) error {
		if len(elem) == 0 || elem[0] != '{' {
			return fmt.Errorf("%w: a row must be a JSON object", wire.ErrBadRequest)
		}
		rows = append(rows, elem)
		return nil
	})
	return rows, err
}

func appendRows(b []byte, rows []json.RawMessage) []byte {
	size := 2 + len(rows)
	for _, r := range rows {
		size += len(r)
	}
	b = slices.Grow(b, size) // one copy of what is there, not one per doubling
	b = append(b, '[')
	for i, r := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r...)
	}
	return append(b, ']')
}

func decodePayload(data []byte) (Payload, error) {
	if wire.IsNull(bytes.TrimSpace(data)) {
		return nil, nil
	}
	p := Payload{}
	err := wire.ForEachMember(data, func(table string, v []byte) error {
		if _, dup := p[table]; dup {
			return fmt.Errorf("%w: payload names table %q twice", wire.ErrBadRequest, table)
		}
		rows, err := decodeRows(v)
		if err != nil {
			return err
		}
		p[table] = rows
		return nil
	})
	return p, err
}

func appendPayload(b []byte, p Payload, order []string) []byte {
	b = append(b, '{')
	first := true
	write := func(table string) {
		rows, ok := p[table]
		if !ok {
			return
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = wire.AppendString(b, table)
		b = append(b, ':')
		b = appendRows(b, rows)
	}
	seen := map[string]bool{}
	for _, t := range order {
		seen[t] = true
		write(t)
	}
	for t := range p {
		if !seen[t] {
			write(t)
		}
	}
	return append(b, '}')
}

// sizeHint is about the size of the JSON of a push or chunk with ops and
// payload (more when strings need escapes): its buffer is allocated
// once, not grown by copies of several megabytes.
func sizeHint(ops []Operation, payload Payload) int {
	n := 256
	for _, op := range ops {
		n += 84 + len(op.Table) + len(op.RowID) // 64 and the order's 20 digits at most
		if op.VersionID != nil {
			n += 36
		}
	}
	for table, rows := range payload {
		n += 4 + len(table)
		for _, raw := range rows {
			n += len(raw) + 1
		}
	}
	return n
}

// MarshalJSON encodes a push request without re-validating its rows.
func (p *PushRequest) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, sizeHint(p.Operations, p.Payload))
	b = append(b, `{"push_id":`...)
	b = wire.AppendString(b, p.PushID)
	b = append(b, `,"latest_version_id":`...)
	if p.LatestVersionID == nil {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendInt(b, *p.LatestVersionID, 10)
	}
	if p.LatestVersionToken != "" {
		b = append(b, `,"latest_version_token":`...)
		b = wire.AppendString(b, p.LatestVersionToken)
	}
	if p.OwnVersionID != nil {
		b = append(b, `,"own_version_id":`...)
		b = strconv.AppendInt(b, *p.OwnVersionID, 10)
	}
	b = append(b, `,"operations":`...)
	b = appendOperations(b, p.Operations)
	b = append(b, `,"payload":`...)
	b = appendPayload(b, p.Payload, nil)
	return append(b, '}'), nil
}

// UnmarshalJSON decodes a push request (a copy of data: see
// DecodePushRequest to avoid it). Unknown fields are ignored.
func (p *PushRequest) UnmarshalJSON(data []byte) error {
	return p.decode(bytes.Clone(data))
}

// DecodePushRequest decodes a push request whose rows alias data: data
// must not change while the request is in use.
func DecodePushRequest(data []byte) (*PushRequest, error) {
	p := &PushRequest{}
	if err := p.decode(data); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *PushRequest) decode(data []byte) error {
	*p = PushRequest{}
	return wire.ForEachMember(data, func(key string, v []byte) error {
		var err error
		switch key {
		case "push_id":
			p.PushID, err = parseString(v, "push_id")
		case "latest_version_id":
			p.LatestVersionID, err = parseOptInt(v, "latest_version_id")
		case "latest_version_token":
			p.LatestVersionToken, err = parseOptString(v, "latest_version_token")
		case "own_version_id":
			p.OwnVersionID, err = parseOptInt(v, "own_version_id")
		case "operations":
			p.Operations, err = decodeOperations(v)
		case "payload":
			p.Payload, err = decodePayload(v)
		}
		return err
	})
}

// AppendMessage appends one stream line (without the newline). Rows are
// written as they are.
func AppendMessage(b []byte, m *Message) ([]byte, error) {
	switch m.Type {
	case MsgChunk:
		b = append(b, `{"type":"chunk","operations":`...)
		b = appendOperations(b, m.Operations)
		b = append(b, `,"payload":`...)
		b = appendPayload(b, m.Payload, nil)
		return append(b, '}'), nil
	case MsgRows, MsgScopeIn, MsgBackfill:
		b = append(b, `{"type":`...)
		b = wire.AppendString(b, m.Type)
		b = append(b, `,"table":`...)
		b = wire.AppendString(b, m.Table)
		b = append(b, `,"rows":`...)
		b = appendRows(b, m.Rows)
		if len(m.Payload) > 0 { // a backfill's parents (merge.md D2)
			b = append(b, `,"payload":`...)
			b = appendPayload(b, m.Payload, nil)
		}
		return append(b, '}'), nil
	}
	// The other lines are small: encoding/json is fine.
	type plain Message
	j, err := json.Marshal((*plain)(m))
	if err != nil {
		return nil, err
	}
	return append(b, j...), nil
}

// ParseMessage decodes one stream line; its rows alias line.
func ParseMessage(line []byte) (*Message, error) {
	m := &Message{}
	err := wire.ForEachMember(line, func(key string, v []byte) error {
		var err error
		switch key {
		case "type":
			m.Type, err = parseString(v, "type")
		case "operations":
			m.Operations, err = decodeOperations(v)
		case "payload":
			m.Payload, err = decodePayload(v)
		case "rows":
			m.Rows, err = decodeRows(v)
		case "table":
			m.Table, err = parseString(v, "table")
		case "latest_version_id":
			m.LatestVersionID, err = parseOptInt(v, "latest_version_id")
		case "latest_version_token":
			m.LatestVersionToken, err = parseOptString(v, "latest_version_token")
		case "node_version_id":
			m.NodeVersionID, err = parseOptInt(v, "node_version_id")
		case "operation_count":
			m.OperationCount, err = parseInt(v, "operation_count")
		case "row_count":
			m.RowCount, err = parseInt(v, "row_count")
		case "backfill_count":
			m.BackfillCount, err = parseInt(v, "backfill_count")
		case "scope_out_count":
			m.ScopeOutCount, err = parseInt(v, "scope_out_count")
		case "scope_in_count":
			m.ScopeInCount, err = parseInt(v, "scope_in_count")
		case "push":
			err = unmarshalSmall(v, &m.Push)
		case "tables":
			err = unmarshalSmall(v, &m.Tables)
		case "max_keys":
			err = unmarshalSmall(v, &m.MaxKeys)
		case "scoped":
			err = unmarshalSmall(v, &m.Scoped)
		case "held_read":
			err = unmarshalSmall(v, &m.HeldRead)
		case "keys":
			err = unmarshalSmall(v, &m.Keys)
		case "versions":
			err = unmarshalSmall(v, &m.Versions)
		case "error":
			err = unmarshalSmall(v, &m.Error)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if m.Type == "" {
		return nil, fmt.Errorf("%w: stream line without a type", wire.ErrBadRequest)
	}
	return m, nil
}

func unmarshalSmall(v []byte, dst any) error {
	if err := json.Unmarshal(v, dst); err != nil {
		return fmt.Errorf("%w: %w", wire.ErrBadRequest, err)
	}
	return nil
}

package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/go-dbsync/dbsync/internal/wire"
)

// Row is one row on the wire: column name to JSON value. Values are in the
// canonical form dbsync writes (docs/protocol.md, "Rows and keys"):
// integers as JSON numbers, times as RFC 3339 strings, byte slices as
// base64 strings, UUIDs as lowercase strings, NULL as null.
type Row map[string]json.RawMessage

// Key returns the canonical text of a JSON value used as a key: the digits
// of a number, the contents of a string. ok is false for null and for other
// JSON values.
func Key(v json.RawMessage) (key string, ok bool) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "", false
	}
	switch v[0] {
	case '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", false
		}
		return s, true
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return string(v), true
	}
	return "", false
}

// ParseRow splits a JSON object into a [Row] without decoding the values.
// The values alias data.
func ParseRow(data []byte) (Row, error) {
	row := Row{}
	err := wire.ForEachMember(data, func(key string, val []byte) error {
		if _, dup := row[key]; dup {
			return fmt.Errorf("%w: duplicate column %q", wire.ErrBadRequest, key)
		}
		row[key] = val
		return nil
	})
	if err != nil {
		return nil, err
	}
	return row, nil
}

package merge_test

import (
	"encoding/json"
	"testing"

	"github.com/go-dbsync/dbsync/merge"
	"github.com/go-dbsync/dbsync/protocol"
)

// TestLastWriteWinsNumbers: LastWriteWins on the number forms a row can
// carry, down to integers wider than 64 bits (a column whose type
// marshals itself as a JSON number, e.g. *big.Int), which compared as
// float64 tied clocks one apart.
func TestLastWriteWinsNumbers(t *testing.T) {
	cases := []struct {
		name          string
		local, remote string
		keepLocal     bool
	}{
		{"float_over_int", "1.5", "1", true},
		{"int_over_float", "2", "1.5", true},
		{"exponent", "1e3", "999", true},
		{"exponent_tie", "1e3", "1000", false},
		{"negative", "-1", "-2", true},
		{"negative_lower", "-2", "-1", false},
		{"uint64_over_negative", "18446744073709551615", "-1", true},
		{"uint64_over_int64_max", "9223372036854775808", "9223372036854775807", true},
		{"int64_max_under_uint64", "9223372036854775807", "9223372036854775808", false},
		{"uint64_one_apart", "18446744073709551615", "18446744073709551614", true},
		{"spaces", " 5 ", "4", true},
		{"wider_than_64_bits_one_apart", "1180591620717411303425", "1180591620717411303424", true},
	}
	p := merge.LastWriteWins("rev")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := p.Resolve(&merge.Conflict{
				Kind:      merge.KindUpdateUpdate,
				LocalRow:  protocol.Row{"rev": json.RawMessage(c.local)},
				RemoteRow: protocol.Row{"rev": json.RawMessage(c.remote)},
			})
			if got := d.Resolution == merge.KeepLocal; got != c.keepLocal {
				t.Fatalf("local %s, remote %s: keep local = %v, want %v", c.local, c.remote, got, c.keepLocal)
			}
		})
	}
}

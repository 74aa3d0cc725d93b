package wire

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestIsNumber: isNumber accepts exactly what json.Valid accepts of a
// literal without whitespace or delimiters, over every string of up to
// five characters from the bytes numbers are made of and a few others,
// and over some longer ones.
func TestIsNumber(t *testing.T) {
	const alphabet = "-+.eE0159x"
	var all []string
	var grow func(s string)
	grow = func(s string) {
		all = append(all, s)
		if len(s) == 5 {
			return
		}
		for _, c := range alphabet {
			grow(s + string(c))
		}
	}
	grow("")
	all = append(all, "123456789012345678901234567890", "-0.000001e-300", "1.5E+308", "01", "-", "1e", "1.", ".5", "0x10", "1_000", "１")
	valid := 0
	for _, s := range all {
		if got, want := isNumber([]byte(s)), json.Valid([]byte(s)) && s != "" && !strings.ContainsAny(s, " \t\r\n"); got != want {
			t.Errorf("isNumber(%q) = %v, json.Valid says %v", s, got, want)
		}
		if isNumber([]byte(s)) {
			valid++
		}
	}
	if valid < 100 {
		t.Fatalf("only %d numbers among %d strings", valid, len(all))
	}
}

// FuzzIsNumber compares isNumber with json.Valid.
func FuzzIsNumber(f *testing.F) {
	for _, s := range []string{"0", "-1.5e+10", "1e", "01", "-", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.ContainsAny(s, " \t\r\n") || s == "" {
			return
		}
		if got, want := isNumber([]byte(s)), json.Valid([]byte(s)) && s[0] != '"' && s[0] != '{' && s[0] != '[' && s != "true" && s != "false" && s != "null"; got != want {
			t.Fatalf("isNumber(%q) = %v, json.Valid says %v", s, got, want)
		}
	})
}

// BenchmarkForEachMember walks a row of numbers and strings, as push and
// pull bodies carry them.
func BenchmarkForEachMember(b *testing.B) {
	row := []byte(`{"id":123456,"list_id":42,"title":"todo 123456","done":true,"score":-12.5e3,"count":0,"meta":null}`)
	b.SetBytes(int64(len(row)))
	for b.Loop() {
		n := 0
		if err := ForEachMember(row, func(string, []byte) error { n++; return nil }); err != nil || n != 7 {
			b.Fatal(fmt.Sprint(n, err))
		}
	}
}

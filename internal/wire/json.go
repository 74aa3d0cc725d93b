package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// The JSON scanner of the wire format. encoding/json validates and copies
// every raw row several times; these functions read members and elements
// without copying (the values alias the input) and write strings without
// HTML escaping. Syntax errors wrap ErrBadRequest.

var nullJSON = []byte("null")

// IsNull reports whether a JSON value is exactly null.
func IsNull(data []byte) bool { return bytes.Equal(data, nullJSON) }

// Unquote decodes a JSON string.
func Unquote(data []byte) (string, error) {
	if inner, ok := plainString(data); ok {
		return string(inner), nil
	}
	return unquoteSlow(data)
}

// unquoteBytes is Unquote returning bytes, which alias data when the
// string has no escapes.
func unquoteBytes(data []byte) ([]byte, error) {
	if inner, ok := plainString(data); ok {
		return inner, nil
	}
	s, err := unquoteSlow(data)
	return []byte(s), err
}

// plainString returns the text of a JSON string that needs no decoding
// (no escapes, valid UTF-8, no control characters).
func plainString(data []byte) ([]byte, bool) {
	if len(data) < 2 || data[0] != '"' || data[len(data)-1] != '"' {
		return nil, false
	}
	inner := data[1 : len(data)-1]
	if bytes.IndexByte(inner, '\\') < 0 && bytes.IndexByte(inner, '"') < 0 && utf8.Valid(inner) && !hasControl(inner) {
		return inner, true
	}
	return nil, false
}

func unquoteSlow(data []byte) (string, error) {
	if len(data) < 2 || data[0] != '"' || data[len(data)-1] != '"' {
		return "", fmt.Errorf("want a string, got %.40s", data)
	}
	if err := CheckText(data); err != nil {
		return "", err
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return "", fmt.Errorf("want a string: %w", err)
	}
	return s, nil
}

// CheckText refuses a JSON value whose text a decoder would alter: bytes
// that are not valid UTF-8, and \u escapes of unpaired UTF-16 surrogates
// (encoding/json turns both into U+FFFD). dbsync stores what was sent, or
// refuses it.
func CheckText(data []byte) error {
	if !utf8.Valid(data) {
		return errors.New("text is not valid UTF-8")
	}
	for i := 0; i+1 < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		r := hexRune(data[i+2:])
		if data[i+1] != 'u' || r < 0 {
			i++ // an escaped character: \\ is not the start of an escape
			continue
		}
		i += 5
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return fmt.Errorf("text holds an unpaired UTF-16 surrogate (\\u%04x)", r)
		case r >= 0xD800 && r <= 0xDBFF:
			if i+6 < len(data) && data[i+1] == '\\' && data[i+2] == 'u' {
				if lo := hexRune(data[i+3:]); lo >= 0xDC00 && lo <= 0xDFFF {
					i += 6
					continue
				}
			}
			return fmt.Errorf("text holds an unpaired UTF-16 surrogate (\\u%04x)", r)
		}
	}
	return nil
}

// hexRune reads the four hex digits of a \u escape; -1 if there are none.
func hexRune(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return -1
		}
	}
	return r
}

func hasControl(b []byte) bool {
	for _, c := range b {
		if c < 0x20 {
			return true
		}
	}
	return false
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string (no HTML escaping).
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// ForEachMember walks the members of one JSON object.
func ForEachMember(data []byte, fn func(key string, val []byte) error) error {
	return ForEachMemberBytes(data, func(key, val []byte) error { return fn(string(key), val) })
}

// ForEachMemberBytes is ForEachMember handing the key over as bytes,
// unescaped, valid only during fn (they may alias data): a decoder that
// only compares keys (switch string(key)) allocates nothing for them,
// where ForEachMember allocates a string per member.
func ForEachMemberBytes(data []byte, fn func(key, val []byte) error) error {
	p := &scanner{data: data}
	p.ws()
	if !p.eat('{') {
		return p.fail("want a JSON object")
	}
	p.ws()
	if p.eat('}') {
		return p.end()
	}
	for {
		p.ws()
		start := p.i
		if err := p.skipString(); err != nil {
			return err
		}
		key, err := unquoteBytes(data[start:p.i])
		if err != nil {
			return p.fail("bad object key")
		}
		p.ws()
		if !p.eat(':') {
			return p.fail("want ':'")
		}
		p.ws()
		vs := p.i
		if err := p.skipValue(0); err != nil {
			return err
		}
		if err := fn(key, data[vs:p.i]); err != nil {
			return err
		}
		p.ws()
		if p.eat(',') {
			continue
		}
		if p.eat('}') {
			return p.end()
		}
		return p.fail("want ',' or '}'")
	}
}

type scanner struct {
	data []byte
	i    int
}

const maxDepth = 64

func (p *scanner) fail(msg string) error {
	return fmt.Errorf("%w: invalid JSON at offset %d: %s", ErrBadRequest, p.i, msg)
}

func (p *scanner) end() error {
	p.ws()
	if p.i != len(p.data) {
		return p.fail("trailing data")
	}
	return nil
}

func (p *scanner) ws() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *scanner) eat(c byte) bool {
	if p.i < len(p.data) && p.data[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *scanner) skipString() error {
	if !p.eat('"') {
		return p.fail("want a string")
	}
	for p.i < len(p.data) {
		switch c := p.data[p.i]; {
		case c == '"':
			p.i++
			return nil
		case c == '\\':
			if err := p.skipEscape(); err != nil {
				return err
			}
		case c < 0x20:
			return p.fail("control character in string")
		default:
			p.i++
		}
	}
	return p.fail("unterminated string")
}

// skipEscape skips one escape sequence of a string: a backslash and one of
// "\\/bfnrt, or u and four hex digits.
func (p *scanner) skipEscape() error {
	if p.i+1 >= len(p.data) {
		return p.fail("unterminated string")
	}
	switch p.data[p.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		p.i += 2
		return nil
	case 'u':
		if p.i+6 > len(p.data) {
			return p.fail("bad \\u escape")
		}
		for _, h := range p.data[p.i+2 : p.i+6] {
			if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
				return p.fail("bad \\u escape")
			}
		}
		p.i += 6
		return nil
	}
	return p.fail("bad escape")
}

func (p *scanner) skipValue(depth int) error {
	if depth > maxDepth {
		return p.fail("nesting too deep")
	}
	if p.i >= len(p.data) {
		return p.fail("want a value")
	}
	switch c := p.data[p.i]; {
	case c == '"':
		return p.skipString()
	case c == '{' || c == '[':
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		p.i++
		p.ws()
		if p.eat(closer) {
			return nil
		}
		for {
			p.ws()
			if c == '{' {
				if err := p.skipString(); err != nil {
					return err
				}
				p.ws()
				if !p.eat(':') {
					return p.fail("want ':'")
				}
				p.ws()
			}
			if err := p.skipValue(depth + 1); err != nil {
				return err
			}
			p.ws()
			if p.eat(',') {
				continue
			}
			if p.eat(closer) {
				return nil
			}
			return p.fail("want ',' or a closing bracket")
		}
	default:
		start := p.i
		for p.i < len(p.data) {
			switch p.data[p.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				goto done
			}
			p.i++
		}
	done:
		lit := p.data[start:p.i]
		switch string(lit) {
		case "true", "false", "null":
			return nil
		}
		if !isNumber(lit) {
			return p.fail("bad literal")
		}
		return nil
	}
}

// isNumber reports whether b is one JSON number (RFC 8259:
// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?), as json.Valid would,
// without its scanner's cost for every number of a body.
func isNumber(b []byte) bool {
	i := 0
	digits := func() bool {
		start := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i > start
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	return i == len(b)
}

// ForEachElement walks the elements of one JSON array.
func ForEachElement(data []byte, fn func(elem []byte) error) error {
	p := &scanner{data: data}
	p.ws()
	if !p.eat('[') {
		return p.fail("want a JSON array")
	}
	p.ws()
	if p.eat(']') {
		return p.end()
	}
	for {
		p.ws()
		start := p.i
		if err := p.skipValue(0); err != nil {
			return err
		}
		if err := fn(data[start:p.i]); err != nil {
			return err
		}
		p.ws()
		if p.eat(',') {
			continue
		}
		if p.eat(']') {
			return p.end()
		}
		return p.fail("want ',' or ']'")
	}
}

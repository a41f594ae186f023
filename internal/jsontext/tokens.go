package jsontext

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Tokens reads a JSON text as a stream of tokens, the values
// json.Decoder.Token returns (Delim, string, float64, bool, nil), with the
// same checks of structure, and whole values as raw bytes. It exists for
// speed: json.Decoder runs a state machine on every byte of a string and then
// unquotes it in a second pass, about 25 µs for a chat body with a 2 KB
// prompt, a quarter of the gateway's budget; this reads a string without
// escapes in one pass over its bytes. FuzzJSONTokens checks that it accepts,
// refuses and returns exactly what json.Decoder does.
type Tokens struct {
	data  []byte
	pos   int
	state tokenState
	stack []tokenState // the state to return to when a container closes
}

type tokenState uint8

const (
	tokTopValue tokenState = iota // before the top-level value
	tokTopEnded                   // after it
	tokArrayStart
	tokArrayValue // after a ',' in an array
	tokArrayComma // after an array element
	tokObjectStart
	tokObjectKey   // after a ',' in an object
	tokObjectColon // after a key
	tokObjectValue // after a ':'
	tokObjectComma // after a member's value
)

// maxDepth bounds the recursion of Raw, as encoding/json bounds Decode.
const maxDepth = 10000

// SyntaxError is a malformed text; Offset is the byte where it was seen.
type SyntaxError struct {
	Offset int
	msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s at byte %d", e.msg, e.Offset)
}

func NewTokens(data []byte) *Tokens { return &Tokens{data: data} }

func (t *Tokens) fail(msg string) error { return &SyntaxError{Offset: t.pos, msg: msg} }

func (t *Tokens) skipSpace() {
	for t.pos < len(t.data) {
		switch t.data[t.pos] {
		case ' ', '\t', '\n', '\r':
			t.pos++
		default:
			return
		}
	}
}

// More reports whether the current array or object has another element.
func (t *Tokens) More() bool {
	t.skipSpace()
	return t.pos < len(t.data) && t.data[t.pos] != ']' && t.data[t.pos] != '}'
}

func (t *Tokens) valueAllowed() bool {
	switch t.state {
	case tokTopValue, tokArrayStart, tokArrayValue, tokObjectValue:
		return true
	}
	return false
}

func (t *Tokens) valueEnded() {
	switch t.state {
	case tokTopValue:
		t.state = tokTopEnded
	case tokArrayStart, tokArrayValue:
		t.state = tokArrayComma
	case tokObjectValue:
		t.state = tokObjectComma
	}
}

// push enters a container. Nesting is bounded by the body's size, not
// here: json.Decoder's Token does not bound it either, and the stack is a
// slice, not recursion.
func (t *Tokens) push(next tokenState) {
	t.stack = append(t.stack, t.state)
	t.state = next
	t.pos++
}

func (t *Tokens) pop() {
	t.state = t.stack[len(t.stack)-1]
	t.stack = t.stack[:len(t.stack)-1]
	t.pos++
	t.valueEnded()
}

// Token returns the next token; io.EOF after the top-level value.
func (t *Tokens) Token() (json.Token, error) {
	for {
		t.skipSpace()
		if t.pos == len(t.data) {
			// Between tokens, as json.Decoder does, even inside an
			// unfinished container: the caller sees what is missing.
			return nil, io.EOF
		}
		switch c := t.data[t.pos]; c {
		case '[', '{':
			if !t.valueAllowed() {
				return nil, t.fail("unexpected " + strconv.QuoteRune(rune(c)))
			}
			next := tokArrayStart
			if c == '{' {
				next = tokObjectStart
			}
			t.push(next)
			return json.Delim(c), nil
		case ']':
			if t.state != tokArrayStart && t.state != tokArrayComma {
				return nil, t.fail("unexpected ']'")
			}
			t.pop()
			return json.Delim(c), nil
		case '}':
			if t.state != tokObjectStart && t.state != tokObjectComma {
				return nil, t.fail("unexpected '}'")
			}
			t.pop()
			return json.Delim(c), nil
		case ':':
			if t.state != tokObjectColon {
				return nil, t.fail("unexpected ':'")
			}
			t.state = tokObjectValue
			t.pos++
		case ',':
			switch t.state {
			case tokArrayComma:
				t.state = tokArrayValue
			case tokObjectComma:
				t.state = tokObjectKey
			default:
				return nil, t.fail("unexpected ','")
			}
			t.pos++
		case '"':
			if t.state == tokObjectStart || t.state == tokObjectKey {
				s, err := t.str()
				if err != nil {
					return nil, err
				}
				t.state = tokObjectColon
				return s, nil
			}
			fallthrough
		default:
			if !t.valueAllowed() {
				return nil, t.fail("unexpected value")
			}
			v, err := t.scalar()
			if err != nil {
				return nil, err
			}
			t.valueEnded()
			return v, nil
		}
	}
}

// Name reads the name of an object's next member, or the '}' that ends the
// object, when ok is false. It is what Token returns there, for a caller
// that walks an object's members, without allocating for a name that needs
// no decoding: name is then the text's own bytes, to be read, not kept or
// changed.
func (t *Tokens) Name() (name []byte, ok bool, err error) {
	t.skipSpace()
	if t.pos < len(t.data) && t.data[t.pos] == ',' && t.state == tokObjectComma {
		t.state = tokObjectKey
		t.pos++
		t.skipSpace()
	}
	if t.pos < len(t.data) && t.data[t.pos] == '"' && (t.state == tokObjectStart || t.state == tokObjectKey) {
		if name, err = t.nameBytes(); err != nil {
			return nil, false, err
		}
		t.state = tokObjectColon
		return name, true, nil
	}
	// The object's end, or whatever error Token finds there.
	tok, err := t.Token()
	switch {
	case err != nil:
		return nil, false, err
	case tok == json.Delim('}'):
		return nil, false, nil
	}
	return nil, false, t.fail("expected a member's name or '}'")
}

// nameBytes reads the string at t.pos as Name returns it.
func (t *Tokens) nameBytes() ([]byte, error) {
	from := t.pos
	if _, err := t.readString(false); err != nil {
		return nil, err
	}
	if raw := t.data[from+1 : t.pos-1]; bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return raw, nil
	}
	t.pos = from
	s, err := t.str()
	return []byte(s), err
}

// Raw returns the next value whole, as json.Decoder.Decode into a
// json.RawMessage does between tokens.
func (t *Tokens) Raw() (json.RawMessage, error) {
	t.skipSpace()
	if t.pos < len(t.data) {
		switch {
		case t.state == tokArrayComma && t.data[t.pos] == ',':
			t.state = tokArrayValue
			t.pos++
		case t.state == tokObjectColon && t.data[t.pos] == ':':
			t.state = tokObjectValue
			t.pos++
		}
	}
	if !t.valueAllowed() {
		return nil, t.fail("unexpected value")
	}
	t.skipSpace()
	start := t.pos
	if err := t.skipValue(0); err != nil {
		return nil, err
	}
	t.valueEnded()
	return json.RawMessage(t.data[start:t.pos]), nil
}

// skipValue checks one value and moves past it.
func (t *Tokens) skipValue(depth int) error {
	t.skipSpace()
	if t.pos == len(t.data) {
		return io.ErrUnexpectedEOF
	}
	c := t.data[t.pos]
	if c != '[' && c != '{' {
		if c == '"' {
			return t.skipString()
		}
		_, err := t.scalar()
		return err
	}
	if depth == maxDepth {
		return t.fail("exceeded max depth")
	}
	t.pos++
	closing := byte(']')
	if c == '{' {
		closing = '}'
	}
	t.skipSpace()
	if t.pos < len(t.data) && t.data[t.pos] == closing {
		t.pos++
		return nil
	}
	for {
		if c == '{' {
			t.skipSpace()
			if t.pos == len(t.data) {
				return io.ErrUnexpectedEOF
			}
			if t.data[t.pos] != '"' {
				return t.fail("expected a string key")
			}
			if err := t.skipString(); err != nil {
				return err
			}
			t.skipSpace()
			if t.pos == len(t.data) {
				return io.ErrUnexpectedEOF
			}
			if t.data[t.pos] != ':' {
				return t.fail("expected ':'")
			}
			t.pos++
		}
		if err := t.skipValue(depth + 1); err != nil {
			return err
		}
		t.skipSpace()
		if t.pos == len(t.data) {
			return io.ErrUnexpectedEOF
		}
		switch t.data[t.pos] {
		case ',':
			t.pos++
		case closing:
			t.pos++
			return nil
		default:
			return t.fail("expected ',' or " + strconv.QuoteRune(rune(closing)))
		}
	}
}

// scalar reads a string, number, true, false or null.
func (t *Tokens) scalar() (json.Token, error) {
	switch c := t.data[t.pos]; {
	case c == '"':
		return t.str()
	case c == '-' || c >= '0' && c <= '9':
		start := t.pos
		if err := t.skipNumber(); err != nil {
			return nil, err
		}
		f, err := strconv.ParseFloat(string(t.data[start:t.pos]), 64)
		if err != nil {
			// Grammatical but out of range, as json.Decoder reports it.
			return nil, &json.UnmarshalTypeError{Value: "number " + string(t.data[start:t.pos]), Type: float64Type, Offset: int64(t.pos)}
		}
		return f, nil
	}
	for _, lit := range [...]struct {
		text  string
		value json.Token
	}{{"true", true}, {"false", false}, {"null", nil}} {
		if t.data[t.pos] != lit.text[0] {
			continue
		}
		for i := 1; i < len(lit.text); i++ {
			if t.pos+i == len(t.data) {
				return nil, io.ErrUnexpectedEOF
			}
			if t.data[t.pos+i] != lit.text[i] {
				t.pos += i
				return nil, t.fail("invalid literal")
			}
		}
		t.pos += len(lit.text)
		return lit.value, nil
	}
	return nil, t.fail("invalid character")
}

// skipNumber checks a number's grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (t *Tokens) skipNumber() error {
	digits := func() int {
		n := 0
		for t.pos < len(t.data) && t.data[t.pos] >= '0' && t.data[t.pos] <= '9' {
			t.pos++
			n++
		}
		return n
	}
	atEnd := func() bool { return t.pos == len(t.data) }
	if t.data[t.pos] == '-' {
		t.pos++
	}
	switch {
	case atEnd():
		return io.ErrUnexpectedEOF
	case t.data[t.pos] == '0':
		t.pos++
	case t.data[t.pos] >= '1' && t.data[t.pos] <= '9':
		digits()
	default:
		return t.fail("invalid number")
	}
	if !atEnd() && t.data[t.pos] == '.' {
		t.pos++
		if atEnd() {
			return io.ErrUnexpectedEOF
		}
		if digits() == 0 {
			return t.fail("invalid number")
		}
	}
	if !atEnd() && (t.data[t.pos] == 'e' || t.data[t.pos] == 'E') {
		t.pos++
		if !atEnd() && (t.data[t.pos] == '+' || t.data[t.pos] == '-') {
			t.pos++
		}
		if atEnd() {
			return io.ErrUnexpectedEOF
		}
		if digits() == 0 {
			return t.fail("invalid number")
		}
	}
	return nil
}

// skipString checks a string without decoding it.
func (t *Tokens) skipString() error {
	_, err := t.readString(false)
	return err
}

func (t *Tokens) str() (string, error) { return t.readString(true) }

// readString reads the string at t.pos. Invalid UTF-8 and unpaired
// surrogates become U+FFFD, as encoding/json decodes them.
func (t *Tokens) readString(decode bool) (string, error) {
	t.pos++ // the opening quote
	start := t.pos
	// The common case: no escapes and plain ASCII or valid UTF-8.
	for t.pos < len(t.data) {
		if t.pos += safeRun(t.data[t.pos:]); t.pos == len(t.data) {
			break
		}
		c := t.data[t.pos]
		switch {
		case c == '"':
			s := t.data[start:t.pos]
			t.pos++
			if !decode {
				return "", nil
			}
			return string(s), nil
		case c == '\\' || c < 0x20:
			return t.slowString(start, decode)
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(t.data[t.pos:])
			if r == utf8.RuneError && size == 1 {
				return t.slowString(start, decode)
			}
			t.pos += size
		default:
			t.pos++
		}
	}
	return "", io.ErrUnexpectedEOF
}

// slowString decodes a string holding escapes or invalid UTF-8 from start.
func (t *Tokens) slowString(start int, decode bool) (string, error) {
	t.pos = start
	var out []byte
	if decode {
		out = make([]byte, 0, len(t.data)-start)
	}
	for t.pos < len(t.data) {
		c := t.data[t.pos]
		switch {
		case c == '"':
			t.pos++
			return string(out), nil
		case c < 0x20:
			return "", t.fail("invalid control character in string")
		case c == '\\':
			t.pos++
			if t.pos == len(t.data) {
				return "", io.ErrUnexpectedEOF
			}
			e := t.data[t.pos]
			t.pos++
			switch e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, err := t.hex4()
				if err != nil {
					return "", err
				}
				if utf16.IsSurrogate(r) {
					r = t.lowSurrogate(r)
				}
				out = utf8.AppendRune(out, r)
			default:
				t.pos--
				return "", t.fail("invalid escape in string")
			}
		case c < utf8.RuneSelf:
			out = append(out, c)
			t.pos++
		default:
			r, size := utf8.DecodeRune(t.data[t.pos:])
			t.pos += size
			out = utf8.AppendRune(out, r) // RuneError for an invalid byte
		}
	}
	return "", io.ErrUnexpectedEOF
}

// lowSurrogate completes a surrogate pair whose high half is hi, or gives
// U+FFFD and leaves what follows to be read as it is.
func (t *Tokens) lowSurrogate(hi rune) rune {
	if t.pos+6 <= len(t.data) && t.data[t.pos] == '\\' && t.data[t.pos+1] == 'u' {
		save := t.pos
		t.pos += 2
		lo, err := t.hex4()
		if err == nil {
			if r := utf16.DecodeRune(hi, lo); r != utf8.RuneError {
				return r
			}
		}
		t.pos = save
	}
	return utf8.RuneError
}

func (t *Tokens) hex4() (rune, error) {
	var r rune
	for range 4 {
		if t.pos == len(t.data) {
			return 0, io.ErrUnexpectedEOF
		}
		c := t.data[t.pos]
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, t.fail("invalid \\u escape in string")
		}
		r = r<<4 | rune(c)
		t.pos++
	}
	return r, nil
}

var float64Type = reflect.TypeFor[float64]()

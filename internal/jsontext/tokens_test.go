package jsontext

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// tokenTrace is what a reader makes of a JSON text: its tokens up to the
// first error, and whether the text was one whole value. Raw values are read
// where rawAt says, to exercise Raw between tokens as callers do.
type tokenTrace struct {
	tokens []any
	ok     bool
}

type tokenReader interface {
	Token() (json.Token, error)
	More() bool
	Raw() (json.RawMessage, error)
}

// stdTokens puts json.Decoder behind the same methods.
type stdTokens struct{ dec *json.Decoder }

func (s stdTokens) Token() (json.Token, error) { return s.dec.Token() }
func (s stdTokens) More() bool                 { return s.dec.More() }
func (s stdTokens) Raw() (json.RawMessage, error) {
	var raw json.RawMessage
	err := s.dec.Decode(&raw)
	return raw, err
}

func traceTokens(r tokenReader, rawEvery int) tokenTrace {
	var tr tokenTrace
	depth := 0
	for i := 0; ; i++ {
		if depth > 0 && rawEvery > 0 && i%rawEvery == rawEvery-1 && r.More() {
			raw, err := r.Raw()
			if err != nil {
				return tr
			}
			tr.tokens = append(tr.tokens, "raw:"+string(raw))
			continue
		}
		tok, err := r.Token()
		if err != nil {
			return tr
		}
		tr.tokens = append(tr.tokens, tok)
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			// One whole value: it is the text only if nothing follows.
			_, err := r.Token()
			tr.ok = err == io.EOF
			return tr
		}
	}
}

// sameTrace allows the one difference between the two readers: the one that
// refuses a text may do so a token earlier than the other.
func sameTrace(a, b tokenTrace) bool {
	if a.ok != b.ok {
		return false
	}
	if a.ok {
		return reflect.DeepEqual(a.tokens, b.tokens)
	}
	n := min(len(a.tokens), len(b.tokens))
	return reflect.DeepEqual(a.tokens[:n], b.tokens[:n])
}

func checkSameAsDecoder(t *testing.T, text []byte) {
	t.Helper()
	for _, rawEvery := range []int{0, 2, 3} {
		want := traceTokens(stdTokens{json.NewDecoder(bytes.NewReader(text))}, rawEvery)
		got := traceTokens(NewTokens(text), rawEvery)
		if !sameTrace(got, want) {
			t.Fatalf("%.200q (raw every %d):\n got  %.300v ok=%v\n want %.300v ok=%v", text, rawEvery, got.tokens, got.ok, want.tokens, want.ok)
		}
	}
}

func TestJSONTokensMatchDecoder(t *testing.T) {
	t.Parallel()
	for _, text := range []string{
		`{}`, `[]`, ` { "a" : 1 , "b" : [ true , false , null ] } `,
		`{"model":"chat","messages":[{"role":"user","content":"hi"}],"temperature":0.5}`,
		`"plain"`, `"esc\"aped \\ \/ \b\f\n\r\t \u00e9 \ud83d\ude00"`, `"lone \ud800 surrogate"`,
		`"bad \ud800\u0041 pair"`, "\"invalid \xff utf8\"", "\"ctl \x01\"", `"bad \x escape"`,
		`-0`, `0.5e-3`, `1E+2`, `01`, `1.`, `.5`, `-`, `1e`, `1e400`, `[1x]`, `[1"a"]`, `["a"1]`,
		`{"a" 1}`, `{"a":1,}`, `[1,]`, `[,1]`, `{,}`, `{1:2}`, `{"a"::1}`, `nul`, `nullx`, `[truex]`,
		`{} {}`, `{}x`, `1 "a"`, `[`, `{"a":`, `{"a":[1,{"b":"c"}],"d":{}}`, ``, `   `,
		strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
		`[` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `,1]`,
	} {
		checkSameAsDecoder(t, []byte(text))
	}
}

func TestJSONTokensStrings(t *testing.T) {
	t.Parallel()
	for text, want := range map[string]string{
		`"abc"`:                "abc",
		`"a\"b"`:               `a"b`,
		`"\u00e9t\u00e9"`:      "été",
		`"\ud83d\ude00"`:       "😀",
		`"\ud800x"`:            "\uFFFDx",
		"\"a\xffb\"":           "a\uFFFDb",
		`"tab\tand\\slash\/"`:  "tab\tand\\slash/",
		`"déjà vu, 日本語"`:       "déjà vu, 日本語",
		`"\ud800\ud800\udc00"`: "\uFFFD\U00010000",
	} {
		tok, err := NewTokens([]byte(text)).Token()
		if err != nil || tok != want {
			t.Errorf("%s: got %q, %v; want %q", text, tok, err, want)
		}
	}
}

func TestJSONTokensErrorsLocate(t *testing.T) {
	t.Parallel()
	r := NewTokens([]byte(`{"a": tru}`))
	var err error
	for err == nil {
		_, err = r.Token()
	}
	var syntax *SyntaxError
	if !errors.As(err, &syntax) || syntax.Offset != 9 {
		t.Fatalf("got %v, want a syntax error at byte 9", err)
	}
}

// FuzzJSONTokens checks that Tokens accepts, refuses and returns what
// json.Decoder does, for any text.
func FuzzJSONTokens(f *testing.F) {
	for _, seed := range []string{
		`{"model":"chat","messages":[{"role":"user","content":"hi \u00e9"}],"stream":true,"n":1}`,
		`[1,-2.5e3,"x",null,true,{"a":[]}]`, `"\ud83d\ude00"`, `{"a":1}{}`, "\"\xff\"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		checkSameAsDecoder(t, text)
	})
}

// traceNames is traceTokens without raw values, reading every object's
// members with Name; it must see what Token sees.
func traceNames(r *Tokens) tokenTrace {
	var tr tokenTrace
	var stack []json.Delim
	inObject := func() bool { return len(stack) > 0 && stack[len(stack)-1] == '{' }
	wantName := false
	for {
		if wantName {
			name, ok, err := r.Name()
			if err != nil {
				return tr
			}
			if ok {
				tr.tokens = append(tr.tokens, string(name))
				wantName = false
				continue
			}
			tr.tokens = append(tr.tokens, json.Delim('}'))
			stack = stack[:len(stack)-1]
		} else {
			tok, err := r.Token()
			if err != nil {
				return tr
			}
			tr.tokens = append(tr.tokens, tok)
			switch tok {
			case json.Delim('{'), json.Delim('['):
				stack = append(stack, tok.(json.Delim))
				wantName = tok == json.Delim('{')
				continue
			case json.Delim('}'), json.Delim(']'):
				stack = stack[:len(stack)-1]
			}
		}
		wantName = inObject()
		if len(stack) == 0 {
			_, err := r.Token()
			tr.ok = err == io.EOF
			return tr
		}
	}
}

func checkNamesSameAsTokens(t *testing.T, text []byte) {
	t.Helper()
	want := traceTokens(NewTokens(text), 0)
	if got := traceNames(NewTokens(text)); !sameTrace(got, want) {
		t.Fatalf("%.200q:\n got  %.300v ok=%v\n want %.300v ok=%v", text, got.tokens, got.ok, want.tokens, want.ok)
	}
}

func TestNameMatchesToken(t *testing.T) {
	t.Parallel()
	for _, text := range []string{
		`{}`, `{"a":1}`, ` { "a" : 1 , "b" : { "c" : [ {} , { "d" : null } ] } } `, `{"a\"b":1,"\u00e9":2}`,
		"{\"\xff\":1}", `{"a":1,}`, `{,}`, `{"a" 1}`, `{"a":1 "b":2}`, `{1:2}`, `{"a":}`, `{"a"`, `{"a":1`, `{`,
		`{"a":1}}`, `[{"a":[{"b":{}}]},{}]`, `{"a":1}x`, `{"a":"\ud800"}`, "{\"\x01\":1}",
	} {
		checkNamesSameAsTokens(t, []byte(text))
	}
}

// FuzzTokensName checks that Name sees an object's members as Token does.
func FuzzTokensName(f *testing.F) {
	for _, seed := range []string{
		`{"model":"m","choices":[{"message":{"content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3}}`,
		`{"a\u0041":[1,{"b":null}],"c":{}}`, `{"a":1,,"b":2}`, "{\"\xff\":{}}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		checkNamesSameAsTokens(t, text)
	})
}

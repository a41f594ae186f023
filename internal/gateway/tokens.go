package gateway

import (
	"fmt"
	"strconv"
	"strings"
)

// Tokenizer replaces sensitive values with tokens such as <EMAIL_1>: the
// same value gets the same token within one tokenizer (one run), and only
// tokens this tokenizer issued are ever restored.
type Tokenizer struct {
	byValue map[string]string // class + "\x00" + value -> token
	byToken map[string]tokenEntry
	next    map[string]int // token prefix -> last number used
	// reserved are token-shaped strings that were already in the input:
	// they are never issued, so a forged "<EMAIL_1>" cannot be restored into
	// somebody's address.
	reserved map[string]bool
}

type tokenEntry struct {
	class, value string
}

// NewTokenizer returns an empty tokenizer.
func NewTokenizer() *Tokenizer {
	return &Tokenizer{byValue: map[string]string{}, byToken: map[string]tokenEntry{}, next: map[string]int{}, reserved: map[string]bool{}}
}

// tokenPrefix turns a class into the word in its tokens:
// pii.email -> EMAIL, pii.us_ssn -> US_SSN, secret.api_key -> API_KEY.
func tokenPrefix(class string) string {
	if i := strings.LastIndexByte(class, '.'); i >= 0 {
		class = class[i+1:]
	}
	var b strings.Builder
	for _, r := range class {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		case (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "VALUE"
	}
	return b.String()
}

// Reserve marks every token-shaped string in text as taken.
func (t *Tokenizer) Reserve(text string) {
	for _, tok := range tokenShapes(text) {
		t.reserved[tok] = true
	}
}

// Token returns the token for value, issuing one if needed.
func (t *Tokenizer) Token(class, value string) string {
	key := class + "\x00" + value
	if tok, ok := t.byValue[key]; ok {
		return tok
	}
	prefix := tokenPrefix(class)
	var tok string
	for {
		t.next[prefix]++
		tok = "<" + prefix + "_" + strconv.Itoa(t.next[prefix]) + ">"
		if !t.reserved[tok] {
			break
		}
	}
	t.byValue[key] = tok
	t.byToken[tok] = tokenEntry{class: class, value: value}
	return tok
}

// Issued reports whether tok was issued here, and for which class.
func (t *Tokenizer) Issued(tok string) (class string, ok bool) {
	e, ok := t.byToken[tok]
	return e.class, ok
}

// Len is the number of distinct values tokenised.
func (t *Tokenizer) Len() int { return len(t.byToken) }

// Restore replaces the tokens this tokenizer issued with their values where
// allow(class) says the destination may see the class. Other token-shaped
// strings are left alone; Unknown lists them (an answer holding a token the
// run never issued is suspect).
func (t *Tokenizer) Restore(text string, allow func(class string) bool) (restored string, unknown []string) {
	var b strings.Builder
	last := 0
	for _, m := range tokenMatches(text) {
		tok := text[m[0]:m[1]]
		e, ok := t.byToken[tok]
		if !ok {
			unknown = append(unknown, tok)
			continue
		}
		if allow != nil && !allow(e.class) {
			continue
		}
		b.WriteString(text[last:m[0]])
		b.WriteString(e.value)
		last = m[1]
	}
	if last == 0 {
		return text, unknown
	}
	b.WriteString(text[last:])
	return b.String(), unknown
}

// tokenMatches returns the byte ranges of token-shaped strings: "<", an
// upper-case word of letters, digits and underscores, "_", a number, ">".
func tokenMatches(text string) [][2]int {
	var out [][2]int
	for i := 0; i < len(text); i++ {
		if text[i] != '<' {
			continue
		}
		j := i + 1
		for j < len(text) && j-i <= 40 && ((text[j] >= 'A' && text[j] <= 'Z') || (text[j] >= '0' && text[j] <= '9') || text[j] == '_') {
			j++
		}
		if j >= len(text) || text[j] != '>' {
			continue
		}
		body := text[i+1 : j]
		us := strings.LastIndexByte(body, '_')
		if us <= 0 || us == len(body)-1 || !allDigits(body[us+1:]) || body[0] < 'A' || body[0] > 'Z' {
			continue
		}
		out = append(out, [2]int{i, j + 1})
		i = j
	}
	return out
}

func tokenShapes(text string) []string {
	ms := tokenMatches(text)
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = text[m[0]:m[1]]
	}
	return out
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// String describes the tokenizer without its values.
func (t *Tokenizer) String() string { return fmt.Sprintf("tokenizer(%d values)", len(t.byToken)) }

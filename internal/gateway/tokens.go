package gateway

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Tokenizer replaces sensitive values with tokens such as <EMAIL_1>: the
// same value gets the same token within one tokenizer (one run), and only
// tokens this tokenizer issued are ever restored.
type Tokenizer struct {
	byValue map[tokenEntry]string
	byToken map[string]tokenEntry
	next    map[string]int // token prefix -> last number used
	// reserved are token-shaped strings that were already in the input:
	// they are never issued, so a forged "<EMAIL_1>" cannot be restored into
	// somebody's address.
	reserved map[string]bool
	// issued lists, in order, the tokens issued since the last Load: what a
	// run's token store does not hold yet.
	issued []string
}

type tokenEntry struct {
	class, value string
}

// NewTokenizer returns an empty tokenizer. Its maps are made when first
// written: most calls reserve nothing, and many tokenise nothing.
func NewTokenizer() *Tokenizer {
	return &Tokenizer{}
}

// makeMaps makes the maps of values and tokens, if not yet made.
func (t *Tokenizer) makeMaps() {
	if t.byValue == nil {
		t.byValue, t.byToken, t.next = map[tokenEntry]string{}, map[string]tokenEntry{}, map[string]int{}
	}
}

// tokenPrefix turns a class into the word in its tokens:
// pii.email -> EMAIL, pii.us_ssn -> US_SSN, secret.api_key -> API_KEY.
func tokenPrefix(class string) string {
	if i := strings.LastIndexByte(class, '.'); i >= 0 {
		class = class[i+1:]
	}
	var b strings.Builder
	// One byte per rune: the class's length is enough.
	b.Grow(len(class))
	for _, r := range class {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteByte(byte(r - 'a' + 'A'))
		case (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '_':
			b.WriteByte(byte(r))
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
		if t.reserved == nil {
			t.reserved = map[string]bool{}
		}
		t.reserved[tok] = true
	}
}

// Token returns the token for value, issuing one if needed.
func (t *Tokenizer) Token(class, value string) string {
	key := tokenEntry{class: class, value: value}
	if tok, ok := t.byValue[key]; ok {
		return tok
	}
	t.makeMaps()
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
	t.byToken[tok] = key
	if t.issued == nil {
		t.issued = make([]string, 0, 4) // a prompt's few values, grown once
	}
	t.issued = append(t.issued, tok)
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
	matches := tokenMatches(text)
	for _, m := range matches {
		tok := text[m[0]:m[1]]
		e, ok := t.byToken[tok]
		if !ok {
			unknown = append(unknown, tok)
			continue
		}
		if allow != nil && !allow(e.class) {
			continue
		}
		if last == 0 {
			// Sized once for the longest it can be, rather than grown
			// piece by piece on its way to the answer's length.
			b.Grow(restoredSize(text, matches, t.byToken))
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

// restoredSize bounds the length of text with every token of byToken
// among matches replaced by its value.
func restoredSize(text string, matches [][2]int, byToken map[string]tokenEntry) int {
	n := len(text)
	for _, m := range matches {
		if e, ok := byToken[text[m[0]:m[1]]]; ok {
			n += max(len(e.value)-(m[1]-m[0]), 0)
		}
	}
	return n
}

// tokenMatches returns the byte ranges of token-shaped strings: "<", an
// upper-case word of letters, digits and underscores, "_", a number, ">".
func tokenMatches(text string) [][2]int {
	var out [][2]int
	for i := 0; i < len(text); i++ {
		// Every input passes here (twice per unit), and most hold no '<':
		// IndexByte skips to the next candidate in vector steps.
		k := strings.IndexByte(text[i:], '<')
		if k < 0 {
			break
		}
		i += k
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

// MaxLoadedTokens bounds the entries Load accepts: a run holding more is
// refused (fail closed) rather than held in memory for every call.
const MaxLoadedTokens = 100_000

// ErrTokenConflict: entries given to Load disagree with each other or with
// what the tokenizer already holds (one token for two values, or two tokens
// for one value), so restoring could give somebody else's value back.
var ErrTokenConflict = errors.New("gateway: token conflict")

// Load adds tokens issued earlier in the run (from a TokenStore), so that
// the same value gets the same token in every step and those tokens can be
// restored. Loaded tokens are never issued again and are not reported by
// NewEntries. A malformed or conflicting entry fails the whole load and
// leaves the tokenizer as it was.
func (t *Tokenizer) Load(entries []TokenEntry) error {
	if len(entries) > MaxLoadedTokens {
		return fmt.Errorf("gateway: load tokens: %d entries, over the limit of %d", len(entries), MaxLoadedTokens)
	}
	type parsed struct {
		prefix string
		n      int
	}
	nums := make([]parsed, len(entries))
	byToken := make(map[string]tokenEntry, len(entries))
	byValue := make(map[tokenEntry]string, len(entries))
	for i, e := range entries {
		prefix, n, ok := parseToken(e.Token)
		if !ok || e.Class == "" || prefix != tokenPrefix(e.Class) {
			return fmt.Errorf("gateway: load tokens: entry %d is not a token of its class", i)
		}
		key := tokenEntry{class: e.Class, value: e.Value}
		if old, ok := byToken[e.Token]; ok && old != key {
			return fmt.Errorf("gateway: load tokens: %w: %s stands for two values", ErrTokenConflict, e.Token)
		}
		if old, ok := t.byToken[e.Token]; ok && old != key {
			return fmt.Errorf("gateway: load tokens: %w: %s stands for two values", ErrTokenConflict, e.Token)
		}
		if old, ok := byValue[key]; ok && old != e.Token {
			return fmt.Errorf("gateway: load tokens: %w: one %s value has tokens %s and %s", ErrTokenConflict, e.Class, old, e.Token)
		}
		if old, ok := t.byValue[key]; ok && old != e.Token {
			return fmt.Errorf("gateway: load tokens: %w: one %s value has tokens %s and %s", ErrTokenConflict, e.Class, old, e.Token)
		}
		byToken[e.Token] = key
		byValue[key] = e.Token
		nums[i] = parsed{prefix, n}
	}
	t.makeMaps()
	for tok, e := range byToken {
		t.byToken[tok] = e
	}
	for k, tok := range byValue {
		t.byValue[k] = tok
	}
	for _, p := range nums {
		if p.n > t.next[p.prefix] {
			t.next[p.prefix] = p.n
		}
	}
	t.issued = t.issued[:0]
	return nil
}

// parseToken splits "<EMAIL_12>" into "EMAIL" and 12.
func parseToken(tok string) (prefix string, n int, ok bool) {
	ms := tokenMatches(tok)
	if len(ms) != 1 || ms[0] != [2]int{0, len(tok)} {
		return "", 0, false
	}
	body := tok[1 : len(tok)-1]
	us := strings.LastIndexByte(body, '_')
	n, err := strconv.Atoi(body[us+1:])
	if err != nil || n <= 0 {
		return "", 0, false
	}
	return body[:us], n, true
}

// NewEntries returns the tokens issued since the last Load (or since the
// tokenizer was made), in the order they were issued: what must be saved
// to the run's TokenStore before anything holding them leaves.
func (t *Tokenizer) NewEntries() []TokenEntry {
	out := make([]TokenEntry, len(t.issued))
	for i, tok := range t.issued {
		e := t.byToken[tok]
		out[i] = TokenEntry{Token: tok, Class: e.class, Value: e.value}
	}
	return out
}

// Entries returns every token the tokenizer holds, loaded or issued,
// sorted by token.
func (t *Tokenizer) Entries() []TokenEntry {
	out := make([]TokenEntry, 0, len(t.byToken))
	for tok, e := range t.byToken {
		out = append(out, TokenEntry{Token: tok, Class: e.class, Value: e.value})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Token < out[j].Token })
	return out
}

package detect

// The PII family: one pass over the bytes finds anchors (a digit at the
// start of a number, an '@', a ':' or '-' or '.' between hex digits, a
// capital letter at the start of a word) and hands each to the exact
// checks for the types that can start there. Every check works on a small
// window around its anchor and emits byte offsets of ASCII characters or
// of whole runes, so offsets are always on code-point boundaries.

import "sync"

func init() { register(scanPII) }

// Byte classes of the anchor switch. Zero means "nothing starts here".
const (
	clNone byte = iota
	clDigit
	clUpper
	clAt
	clColon
	clDash
	clDot
)

var piiClass = func() (t [256]byte) {
	for c := '0'; c <= '9'; c++ {
		t[c] = clDigit
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = clUpper
	}
	t['@'] = clAt
	t[':'] = clColon
	t['-'] = clDash
	t['.'] = clDot
	return t
}()

// piiScan is the state of one pass.
type piiScan struct {
	text    string
	emit    func(span)
	lastEnd int // end of the last emitted span
	tok     numToken
}

func (s *piiScan) add(typ string, start, end int, score float64, reasons ...string) {
	if score > 1 {
		score = 1
	}
	if score < MinScore || start >= end {
		return
	}
	s.emit(span{Type: typ, Start: start, End: end, Score: score, Reasons: reasons})
	if end > s.lastEnd {
		s.lastEnd = end
	}
}

// piiScans are reused: a piiScan is large, and points into itself, so it
// cannot live on the stack.
var piiScans = sync.Pool{New: func() any { return new(piiScan) }}

func scanPII(text string, emit func(span)) {
	s := piiScans.Get().(*piiScan)
	*s = piiScan{text: text, emit: emit}
	defer func() {
		// Its separators are pieces of the text: all of it is let go of.
		*s = piiScan{}
		piiScans.Put(s)
	}()
	n := len(text)
	for i := 0; i < n; {
		k := piiClass[text[i]]
		if k == clNone {
			i++
			continue
		}
		next := i + 1
		switch k {
		case clDigit:
			next = s.digits(i)
		case clUpper:
			next = s.upper(i)
		case clAt:
			s.email(i)
		case clColon:
			next = s.colon(i)
		case clDash:
			next = s.macDash(i)
		case clDot:
			next = s.cisco(i)
		}
		if next <= i {
			next = i + 1
		}
		i = next
	}
}

// ASCII character tests.

func isDigit(c byte) bool  { return c-'0' < 10 }
func isUpper(c byte) bool  { return c-'A' < 26 }
func isLower(c byte) bool  { return c-'a' < 26 }
func isLetter(c byte) bool { return isUpper(c) || isLower(c) }
func isAlnum(c byte) bool  { return isDigit(c) || isLetter(c) }
func isHex(c byte) bool    { return isDigit(c) || (c|0x20)-'a' < 6 }

// isWordByte reports whether c continues a word: ASCII letters, digits,
// '_' and any byte of a multi-byte rune (conservatively).
func isWordByte(c byte) bool { return isAlnum(c) || c == '_' || c >= 0x80 }

func lower(c byte) byte {
	if isUpper(c) {
		return c | 0x20
	}
	return c
}

// wordSet is a list of context words (lower case ASCII, or UTF-8 kept
// as is) indexed by first byte, so that a window is scanned once.
type wordSet struct {
	byFirst [256][]string
}

func newWordSet(words ...string) *wordSet {
	ws := &wordSet{}
	for _, w := range words {
		ws.byFirst[w[0]] = append(ws.byFirst[w[0]], w)
	}
	return ws
}

// nearWord looks for any word of ws (matched case-insensitively; a word
// must start at a word boundary and end at one, or continue with a plural
// 's' or a past 'd') in text[from:to] and returns the smallest distance in
// bytes between a match and pos (0 if the match touches pos), or -1 when
// there is none.
func nearWord(text string, from, to, pos int, ws *wordSet) int {
	if from < 0 {
		from = 0
	}
	if to > len(text) {
		to = len(text)
	}
	best := -1
	for a := from; a < to; a++ {
		c := lower(text[a])
		cands := ws.byFirst[c]
		if cands == nil || (a > 0 && isAlnum(text[a-1]) && isAlnum(c)) {
			continue
		}
	next:
		for _, word := range cands {
			b := a + len(word)
			if b > to {
				continue
			}
			for k := 1; k < len(word); k++ {
				if lower(text[a+k]) != word[k] {
					continue next
				}
			}
			if isLetter(word[len(word)-1]) && b < len(text) && isAlnum(text[b]) {
				if !((text[b] == 's' || text[b] == 'd') && (b+1 == len(text) || !isAlnum(text[b+1]))) {
					continue
				}
			}
			d := 0
			if b <= pos {
				d = pos - b
			} else if a >= pos {
				d = a - pos
			}
			if best < 0 || d < best {
				best = d
			}
		}
	}
	return best
}

// contextAround returns the distance to the nearest of words within
// before bytes before start or after bytes after end (-1 if none).
func contextAround(text string, start, end, before, after int, words *wordSet) int {
	d1 := nearWord(text, start-before, start, start, words)
	d2 := nearWord(text, end, end+after, end, words)
	switch {
	case d1 < 0:
		return d2
	case d2 < 0:
		return d1
	case d2 < d1:
		return d2
	}
	return d1
}

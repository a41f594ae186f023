package detect

import (
	"encoding/binary"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"golang.org/x/text/unicode/norm"
)

// normalized is text folded for matching: NFKC, diacritics dropped,
// invisible format characters removed, confusable look-alikes mapped to
// Latin, lower case, leetspeak undone inside words that mix letters and
// leet characters, and whitespace runs collapsed to one space (or one
// newline when the run held a line break, so that line starts survive).
//
// Every byte of text comes from one rune of the original; start and end
// hold that rune's byte range, so a span of text maps back to the original.
type normalized struct {
	text       string
	start, end []int32 // per byte of text: the source rune's original byte range
	buf        []byte  // scratch for building text, kept for reuse
	leetAt     []int32 // scratch: where text holds a leet character before undoLeet
	leet       []bool  // per byte of text: produced by undoing leetspeak

	invisible int    // zero-width and other invisible format characters removed
	bidi      int    // bidirectional embedding, override and isolate controls
	tags      int    // tag characters (U+E0000 block) outside emoji flag sequences
	tagText   string // the ASCII the tag characters spelled
	confused  int    // look-alike letters mapped to Latin
	leetWords int    // words in which leetspeak was undone
}

// origSpan maps the normalised byte range [a, b) back to original bytes.
func (n *normalized) origSpan(a, b int) (int, int) {
	if b <= a || a >= len(n.text) {
		return 0, 0
	}
	if b > len(n.text) {
		b = len(n.text)
	}
	return int(n.start[a]), int(n.end[b-1])
}

// hasLeet reports whether any byte of [a, b) was produced by undoing leetspeak.
func (n *normalized) hasLeet(a, b int) bool {
	if n.leetWords == 0 {
		return false
	}
	for i := a; i < b && i < len(n.leet); i++ {
		if n.leet[i] {
			return true
		}
	}
	return false
}

// confusables maps Cyrillic, Greek and other letters that look like Latin
// ones (after lower-casing) to the Latin letter.
var confusables = map[rune]rune{
	// Cyrillic
	'а': 'a', 'в': 'b', 'е': 'e', 'ё': 'e', 'к': 'k', 'м': 'm', 'н': 'h', 'о': 'o',
	'р': 'p', 'с': 'c', 'т': 't', 'у': 'y', 'х': 'x', 'ѕ': 's', 'і': 'i', 'ї': 'i',
	'ј': 'j', 'һ': 'h', 'ԁ': 'd', 'ԛ': 'q', 'ԝ': 'w', 'ɡ': 'g', 'ո': 'n', 'ս': 'u',
	'ӏ': 'l', 'ү': 'y', 'ҽ': 'e', 'ԍ': 'g', 'ь': 'b',
	// Greek
	'α': 'a', 'β': 'b', 'γ': 'y', 'ε': 'e', 'η': 'n', 'ι': 'i', 'κ': 'k', 'ν': 'v',
	'ο': 'o', 'ρ': 'p', 'τ': 't', 'υ': 'u', 'χ': 'x', 'ω': 'w', 'ϲ': 'c', 'ϳ': 'j',
	'ς': 'c', 'μ': 'u',
	// Latin extensions and IPA
	'ı': 'i', 'ɩ': 'i', 'ʟ': 'l', 'ɪ': 'i', 'ʀ': 'r', 'ɴ': 'n', 'ᴀ': 'a', 'ᴇ': 'e',
	'ᴏ': 'o', 'ᴜ': 'u', 'ꜱ': 's', 'ʏ': 'y', 'ᴛ': 't', 'ᴍ': 'm', 'ᴋ': 'k', 'ʜ': 'h',
	'ɢ': 'g', 'ᴅ': 'd', 'ᴄ': 'c', 'ᴘ': 'p', 'ᴡ': 'w', 'ᴠ': 'v', 'ᴢ': 'z', 'ʙ': 'b',
	'ꞯ': 'q', 'ғ': 'f', 'ſ': 's',
}

// leet maps leetspeak characters to the letter they usually stand for.
var leetMap = [128]byte{
	'0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '8': 'b',
	'@': 'a', '$': 's', '!': 'i', '|': 'l', '+': 't',
}

// isInvisible reports format characters that render as nothing: zero-width
// spaces and joiners, word joiners, soft hyphens, BOMs, variation
// selectors and the like.
func isInvisible(r rune) bool {
	switch {
	case r == 0x00AD, r == 0x034F, r == 0x061C, r == 0x115F, r == 0x1160,
		r == 0x17B4, r == 0x17B5, r == 0x180E, r == 0x3164, r == 0xFEFF, r == 0xFFA0:
		return true
	case r >= 0x200B && r <= 0x200F, r >= 0x2060 && r <= 0x2064, r >= 0x206A && r <= 0x206F:
		return true
	case r >= 0xFE00 && r <= 0xFE0F, r >= 0xE0100 && r <= 0xE01EF:
		return true
	case r >= 0x180B && r <= 0x180D:
		return true
	}
	return false
}

// isBidi reports bidirectional embedding, override and isolate controls.
func isBidi(r rune) bool {
	return (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069)
}

// normalize folds text for matching; see normalized.
func normalize(text string) *normalized {
	n := &normalized{}
	n.fill(text)
	return n
}

// reset empties n for another fill, keeping the buffers fill reuses and
// dropping the last result, so that a pooled n holds no text alive.
func (n *normalized) reset() {
	*n = normalized{start: n.start[:0], end: n.end[:0], buf: n.buf[:0], leetAt: n.leetAt[:0]}
}

// fill normalises text into n, reusing n's start, end, buf and leetAt
// slices (their previous contents are discarded). n must be new or reset.
func (n *normalized) fill(text string) {
	buf := n.buf[:0]
	if cap(buf) < len(text) {
		buf = make([]byte, 0, len(text)+8)
	}
	start := n.start[:0]
	end := n.end[:0]
	if cap(start) < len(text) {
		start = make([]int32, 0, len(text)+8)
		end = make([]int32, 0, len(text)+8)
	}
	var tags []byte
	space := byte(0) // pending whitespace: 0, ' ' or '\n'
	spaceFrom, spaceTo := 0, 0
	var prev rune
	// Leetspeak is undone only where text holds a leet character, and only
	// when some byte is a leet character other than a digit, or a digit
	// right after a letter (see undoLeet); both are noted as bytes are
	// written, so that undoLeet need not read the whole text again.
	leetAt := n.leetAt[:0]
	leetWanted := false
	for i := 0; i < len(text); {
		if text[i] < utf8.RuneSelf {
			// A stretch of ASCII: lower-cased, one byte per byte, white
			// space runs collapsed. It writes at most one byte per byte
			// read, plus the pending space.
			need := len(text) - i + 1
			w := len(buf)
			buf = slices.Grow(buf, need)[:w+need]
			start = slices.Grow(start, need)[:w+need]
			end = slices.Grow(end, need)[:w+need]
			// Indexed like buf rather than appended to: a call to grow
			// it inside the loop would slow the loop down.
			nl := len(leetAt)
			leetAt = slices.Grow(leetAt, need)[:nl+need]
			last := byte(0) // last byte written
			if w > 0 {
				last = buf[w-1]
			}
			blocksFrom := i // where eight bytes at a time may be tried again
			for ; i < len(text); i++ {
				// Prose is mostly letters, punctuation and single spaces,
				// which need nothing but lower-casing: eight such bytes are
				// copied at once, each still mapped to its own byte.
				if i >= blocksFrom && space == 0 {
					j, v := plainRun(text, i, buf, start, end, w)
					if v > w {
						last = buf[v-1]
					}
					// The block at j is not plain: its bytes go one by
					// one before blocks are tried again.
					i, w, blocksFrom = j, v, j+8
					if i == len(text) {
						break
					}
				}
				c := text[i]
				cl := normClass[c]
				if cl&ncSpace != 0 {
					if space == 0 {
						spaceFrom = i
						space = ' '
					}
					if c == '\n' {
						space = '\n'
					}
					spaceTo = i + 1
					continue
				}
				if cl&ncASCII == 0 {
					break
				}
				if space != 0 {
					if w > 0 {
						buf[w], start[w], end[w] = space, int32(spaceFrom), int32(spaceTo)
						last = space
						w++
					}
					space = 0
				}
				if cl&ncUpper != 0 {
					c += 'a' - 'A'
				}
				if cl&(ncLeet|ncDigit) != 0 {
					if leetMap[c] != 0 {
						leetAt[nl] = int32(w)
						nl++
					}
					if cl&ncLeet != 0 || last >= 'a' && last <= 'z' {
						leetWanted = true
					}
				}
				buf[w], start[w], end[w] = c, int32(i), int32(i+1)
				last = c
				w++
			}
			prev = rune(text[i-1]) // the last ASCII byte read
			buf, start, end, leetAt = buf[:w], start[:w], end[:w], leetAt[:nl]
			continue
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		j := i + size
		switch {
		case r >= 0xE0000 && r <= 0xE007F:
			if prev != 0x1F3F4 && !(prev >= 0xE0000 && prev <= 0xE007F) || len(tags) > 0 {
				if r >= 0xE0020 && r <= 0xE007E {
					tags = append(tags, byte(r-0xE0000))
					n.tags++
				}
			}
		case isBidi(r):
			n.bidi++
		case isInvisible(r):
			n.invisible++
		case unicode.IsSpace(r):
			if space == 0 {
				spaceFrom = i
				space = ' '
			}
			if r == 0x2028 || r == 0x2029 || r == 0x85 {
				space = '\n'
			}
			spaceTo = j
		case unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Me, r):
			// Other format characters and combining marks: dropped.
			if unicode.Is(unicode.Cf, r) {
				n.invisible++
			}
		default:
			if space != 0 {
				if len(buf) > 0 {
					buf = append(buf, space)
					start = append(start, int32(spaceFrom))
					end = append(end, int32(spaceTo))
				}
				space = 0
			}
			m := len(buf)
			buf = appendFoldRune(buf, r, n)
			for k := m; k < len(buf); k++ {
				// A fold can give ASCII: "４" is "4", "！" is "!".
				if c := buf[k]; normClass[c]&(ncLeet|ncDigit) != 0 {
					if leetMap[c] != 0 {
						leetAt = append(leetAt, int32(k))
					}
					if normClass[c]&ncLeet != 0 || k > 0 && buf[k-1] >= 'a' && buf[k-1] <= 'z' {
						leetWanted = true
					}
				}
				start = append(start, int32(i))
				end = append(end, int32(j))
			}
		}
		if r != 0xFE0F && !isInvisible(r) {
			prev = r
		}
		i = j
	}
	n.start, n.end = start, end
	if len(tags) > 0 {
		n.tagText = strings.ToLower(string(tags))
	}
	if leetWanted {
		n.undoLeet(buf, leetAt)
	}
	// n.text is buf itself, not a copy: nothing writes to buf again until
	// n is filled anew, and no part of n.text outlives the call that
	// filled n (hits hold offsets and constant reasons). The copy was a
	// quarter of the bytes a gateway call allocates.
	n.text = unsafe.String(unsafe.SliceData(buf), len(buf))
	n.buf = buf
	n.leetAt = leetAt
}

// Byte classes for the ASCII loop of fill.
const (
	ncASCII = 1 << iota // below utf8.RuneSelf
	ncSpace             // asciiSpace
	ncUpper             // 'A'..'Z'
	ncDigit             // '0'..'9'
	ncLeet              // leet character other than a digit
)

var normClass = func() (t [256]uint8) {
	for c := range utf8.RuneSelf {
		b := byte(c)
		t[c] = ncASCII
		if asciiSpace(b) {
			t[c] |= ncSpace
		}
		if b >= 'A' && b <= 'Z' {
			t[c] |= ncUpper
		}
		if b >= '0' && b <= '9' {
			t[c] |= ncDigit
		}
		if leetMap[c] != 0 && (b < '0' || b > '9') {
			t[c] |= ncLeet
		}
	}
	return t
}()

// blockStop marks the bytes plainBlock leaves to the byte loop: all but
// letters, single spaces and punctuation other than leet characters.
var blockStop = func() (t [256]bool) {
	for c := range 256 {
		cl := normClass[c]
		t[c] = cl&ncASCII == 0 || cl&(ncLeet|ncDigit) != 0 || c < ' '
	}
	return t
}()

const (
	lowBits  = 0x0101010101010101
	highBits = 0x8080808080808080
)

// plainBlock returns text[i:i+8] lower-cased, when the byte loop of fill
// would write those eight bytes one for one and change nothing else: none
// is a leet character, a digit, a control or non-ASCII, and each space
// stands alone and is written (it follows a written byte and precedes a
// byte that is not white space). afterText says a byte was written before
// i; fill has no space pending there. The caller checks i+8 <= len(text).
func plainBlock(text string, i int, afterText bool) (uint64, bool) {
	s := text[i : i+8]
	if blockStop[s[0]] || blockStop[s[1]] || blockStop[s[2]] || blockStop[s[3]] ||
		blockStop[s[4]] || blockStop[s[5]] || blockStop[s[6]] || blockStop[s[7]] {
		return 0, false
	}
	x := le64(s)
	// Every byte is below 0x80, so adding up to 0x7f to one carries into
	// no other: each mask has 0x80 in the bytes that match.
	t := x ^ (' ' * lowBits)
	spaces := ^((t + 0x7f*lowBits) | t) & highBits
	if spaces&(spaces>>8) != 0 || !afterText && spaces&0x80 != 0 {
		return 0, false
	}
	if spaces>>63 != 0 {
		// The last byte is a space: the byte after it must end the run.
		if i+8 >= len(text) || text[i+8] >= utf8.RuneSelf || normClass[text[i+8]]&ncSpace != 0 {
			return 0, false
		}
	}
	upper := (x + (0x80-'A')*lowBits) &^ (x + (0x80-'Z'-1)*lowBits) & highBits
	return x | upper>>2, true
}

// plainRun copies the plain blocks (see plainBlock) that follow one
// another from text[i] on into buf[w:], with their offsets into start and
// end, and returns where it stopped in text and in buf. It is fill's loop
// for prose, apart so that its few variables stay in registers.
func plainRun(text string, i int, buf []byte, start, end []int32, w int) (int, int) {
	for i+8 <= len(text) {
		y, ok := plainBlock(text, i, w > 0)
		if !ok {
			break
		}
		binary.LittleEndian.PutUint64(buf[w:w+8], y)
		o, p, v := start[w:w+8:w+8], end[w:w+8:w+8], int32(i)
		o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7] = v, v+1, v+2, v+3, v+4, v+5, v+6, v+7
		p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7] = v+1, v+2, v+3, v+4, v+5, v+6, v+7, v+8
		i, w = i+8, w+8
	}
	return i, w
}

func asciiSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// appendFoldRune appends the NFKC form of r, lower-cased, without
// combining marks, with look-alikes mapped to Latin.
func appendFoldRune(buf []byte, r rune, n *normalized) []byte {
	switch r {
	case '\u2018', '\u2019', '\u02bc', '\u2032':
		return append(buf, '\'')
	case '\u201c', '\u201d', '\u2033':
		return append(buf, '"')
	}
	if m, ok := confusables[unicode.ToLower(r)]; ok {
		n.confused++
		return utf8.AppendRune(buf, m)
	}
	var rb [utf8.UTFMax]byte
	var db [64]byte
	d := norm.NFKD.Append(db[:0], utf8.AppendRune(rb[:0], r)...)
	m := len(buf)
	for _, c := range string(d) {
		if unicode.Is(unicode.Mn, c) {
			continue
		}
		c = unicode.ToLower(c)
		if m, ok := confusables[c]; ok {
			n.confused++
			c = m
		}
		if unicode.IsSpace(c) {
			c = ' '
		}
		buf = utf8.AppendRune(buf, c)
	}
	if len(buf) == m {
		return append(buf, '?')
	}
	return buf
}

// undoLeet rewrites, in place, words that mix ASCII letters with leet
// characters ("1gn0r3", "pr3v!0u5") into letters. Words of digits alone
// (numbers) and words without any leet character are left as they are.
// leetAt lists, in order, the bytes of t that are leet characters.
//
// fill calls it only when t holds a leet character other than a digit, or
// a digit right after a letter: "0bey" alone is left as it is.
func (n *normalized) undoLeet(t []byte, leetAt []int32) {
	// Only a word holding a leet character can change, and whether it does
	// depends on nothing outside its chunk (a run of bytes between spaces
	// and newlines). So only the chunks holding a leet character are read;
	// in ordinary prose that is a handful (a number, an e-mail address).
	done := 0 // chunks before done have been dealt with
	for _, at := range leetAt {
		if int(at) < done {
			continue
		}
		from, to := int(at), int(at)+1
		for from > 0 && t[from-1] != ' ' && t[from-1] != '\n' {
			from--
		}
		for to < len(t) && t[to] != ' ' && t[to] != '\n' {
			to++
		}
		// Leave addresses alone: "a@b.com" and URLs are not leetspeak.
		if !isAddressChunk(t[from:to]) {
			n.undoLeetChunk(t, from, to)
		}
		done = to
	}
}

// undoLeetChunk undoes leetspeak in the words of the chunk t[from:to].
func (n *normalized) undoLeetChunk(t []byte, from, to int) {
	for i := from; i < to; {
		if !isLeetWordByte(t[i]) {
			i++
			continue
		}
		j := i
		letters, leets := 0, 0
		for j < to && isLeetWordByte(t[j]) {
			c := t[j]
			switch {
			case c >= 'a' && c <= 'z':
				letters++
			case leetMap[c] != 0:
				leets++
			}
			j++
		}
		// Trailing punctuation is punctuation, not leet: "now!" stays.
		k := j
		for k > i && (t[k-1] == '!' || t[k-1] == '|' || t[k-1] == '+' || t[k-1] == '$' || t[k-1] == '@') {
			k--
		}
		for i < k && (t[i] == '!' || t[i] == '|' || t[i] == '+' || t[i] == '@' || t[i] == '$') {
			i++
		}
		if letters >= 2 && leets >= 1 && k-i >= 4 && leets*2 <= k-i+1 {
			if n.leet == nil {
				n.leet = make([]bool, len(t))
			}
			for p := i; p < k; p++ {
				if c := t[p]; c < 128 && leetMap[c] != 0 {
					t[p] = leetMap[c]
					n.leet[p] = true
				}
			}
			n.leetWords++
		}
		i = j
	}
}

func isLeetWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c < 128 && leetMap[c] != 0
}

// isAddressChunk reports a URL or an e-mail address.
func isAddressChunk[T string | []byte](s T) bool {
	mark := false
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == ':' || c == '@' || c == '.' {
			mark = true
			break
		}
	}
	if !mark {
		return false
	}
	if hasSubstr(s, "://") || len(s) >= 4 && string(s[:4]) == "www." {
		return true
	}
	at := -1
	for i := 0; i < len(s); i++ {
		if s[i] == '@' {
			at = i
			break
		}
	}
	if at <= 0 {
		return false
	}
	for i := at; i < len(s); i++ {
		if s[i] == '.' {
			return i-at > 1
		}
	}
	return false
}

func hasSubstr[T string | []byte](s T, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if string(s[i:i+len(sub)]) == sub {
			return true
		}
	}
	return false
}

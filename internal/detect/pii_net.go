package detect

import (
	"net/netip"
	"unicode"
	"unicode/utf8"
)

// isLocalByte reports whether c may appear in the local part of an
// address (RFC 5321 atext and '.').
func isLocalByte(c byte) bool {
	if isAlnum(c) {
		return true
	}
	switch c {
	case '.', '!', '#', '$', '%', '&', '\'', '*', '+', '/', '=', '?', '^', '_', '`', '{', '|', '}', '~', '-':
		return true
	}
	return false
}

// email: an '@' at i with a local part of up to 64 bytes before it and a
// domain of dot-separated labels with an alphabetic TLD after it.
func (s *piiScan) email(i int) {
	text := s.text
	a := i
	for a > 0 && i-a < 64 {
		if c := text[a-1]; c < utf8.RuneSelf {
			if !isLocalByte(c) {
				break
			}
			a--
			continue
		}
		r, sz := utf8.DecodeLastRuneInString(text[:a])
		if r == utf8.RuneError || !(unicode.IsLetter(r) || unicode.IsDigit(r)) {
			break
		}
		a -= sz
	}
	// Quotes and most symbols rarely start an address in prose; trim them.
	for a < i && text[a] < utf8.RuneSelf && !isAlnum(text[a]) && text[a] != '_' {
		a++
	}
	if a == i || text[i-1] == '.' {
		return
	}
	// Domain: labels of [A-Za-z0-9-], joined by single dots.
	j := i + 1
	labelStart := j
	lastDot := -1
	dots := 0
	for j < len(text) && j-i < 254 {
		c := text[j]
		if isAlnum(c) || c == '-' {
			j++
			continue
		}
		if c == '.' && j > labelStart && j+1 < len(text) && isAlnum(text[j+1]) {
			if text[labelStart] == '-' || text[j-1] == '-' {
				return
			}
			dots++
			lastDot = j
			j++
			labelStart = j
			continue
		}
		break
	}
	if dots == 0 || j == labelStart {
		return
	}
	for text[j-1] == '-' {
		return
	}
	tld := text[lastDot+1 : j]
	if len(tld) < 2 || len(tld) > 24 {
		return
	}
	if !(len(tld) > 4 && tld[:4] == "xn--") {
		for k := 0; k < len(tld); k++ {
			if !isLetter(tld[k]) {
				return
			}
		}
	}
	if j < len(text) && (text[j] == '@' || text[j] >= 0x80) {
		return
	}
	s.add("pii.email", a, j, 0.95)
}

// hexColonWindow returns [a,b) around the ':' at i spanning hex digits,
// ':' and '.', or ok == false if a word continues on either side.
func hexColonWindow(text string, i int) (a, b int, ok bool) {
	a = i
	for a > 0 && i-a < 40 && (isHex(text[a-1]) || text[a-1] == ':') {
		a--
	}
	b = i + 1
	for b < len(text) && b-a < 46 && (isHex(text[b]) || text[b] == ':' || text[b] == '.') {
		b++
	}
	for b > i+1 && (text[b-1] == '.' || (text[b-1] == ':' && text[b-2] != ':')) {
		b--
	}
	if a > 0 && (isWordByte(text[a-1]) || text[a-1] == '.') {
		return a, b, false
	}
	if b < len(text) && (isWordByte(text[b]) || text[b] == '%') {
		return a, b, false
	}
	return a, b, true
}

// colon: MAC addresses with ':' and IPv6 addresses around the ':' at i.
func (s *piiScan) colon(i int) int {
	text := s.text
	// Cheap reject: a ':' after a word (the usual "Phone:") ends in a
	// non-hex letter or has no hex neighbour.
	if i+1 >= len(text) || !(isHex(text[i+1]) || text[i+1] == ':') {
		return i + 1
	}
	if i > 0 && !(isHex(text[i-1]) || text[i-1] == ':' || text[i-1] == ' ' || text[i-1] == '[' || text[i-1] == '(') {
		return i + 1
	}
	a, b, ok := hexColonWindow(text, i)
	if !ok {
		return i + 1
	}
	w := text[a:b]
	if s.macAt(a, ':') {
		return s.lastEnd
	}
	colons, groups, hexLetters := 0, 0, false
	for k := 0; k < len(w); k++ {
		c := w[k]
		if c == ':' {
			colons++
		} else if k == 0 || w[k-1] == ':' {
			groups++
		}
		if isLetter(c) {
			hexLetters = true
		}
	}
	if colons < 2 || groups < 2 {
		return i + 1
	}
	if !hexLetters && colons < 7 && !containsDoubleColon(w) {
		return i + 1 // "12:30:45"
	}
	if containsDoubleColon(w) && len(w)-colons < 4 {
		return i + 1 // "a::b", "::1": too little to be sure
	}
	addr, err := netip.ParseAddr(w)
	if err != nil || !addr.Is6() {
		return i + 1
	}
	score := 0.85
	if contextAround(text, a, b, 32, 8, ipWords) >= 0 {
		score = 0.95
	}
	s.add("pii.ip", a, b, score, "ipv6")
	return b
}

func containsDoubleColon(w string) bool {
	for k := 0; k+1 < len(w); k++ {
		if w[k] == ':' && w[k+1] == ':' {
			return true
		}
	}
	return false
}

// macAt checks six hex pairs joined by sep starting at a.
func (s *piiScan) macAt(a int, sep byte) bool {
	text := s.text
	if a+17 > len(text) || (a > 0 && (isWordByte(text[a-1]) || text[a-1] == sep)) {
		return false
	}
	for k := 0; k < 6; k++ {
		p := a + 3*k
		if !isHex(text[p]) || !isHex(text[p+1]) {
			return false
		}
		if k < 5 && text[p+2] != sep {
			return false
		}
	}
	e := a + 17
	if e < len(text) && (isWordByte(text[e]) || text[e] == sep || text[e] == ':' || text[e] == '-') {
		return false
	}
	s.add("pii.mac", a, e, 0.85)
	return true
}

// macDash: "00-1A-2B-3C-4D-5E" around the '-' at i.
func (s *piiScan) macDash(i int) int {
	if i >= 2 && isHex(s.text[i-1]) && isHex(s.text[i-2]) && s.macAt(i-2, '-') {
		return s.lastEnd
	}
	return i + 1
}

// cisco: "001a.2b3c.4d5e" around the first '.' at i.
func (s *piiScan) cisco(i int) int {
	text := s.text
	a := i - 4
	if a < 0 || a+14 > len(text) || !isHex(text[i-1]) {
		return i + 1
	}
	if a > 0 && (isWordByte(text[a-1]) || text[a-1] == '.') {
		return i + 1
	}
	for k := 0; k < 14; k++ {
		c := text[a+k]
		if k == 4 || k == 9 {
			if c != '.' {
				return i + 1
			}
		} else if !isHex(c) {
			return i + 1
		}
	}
	e := a + 14
	if e < len(text) && (isWordByte(text[e]) || (text[e] == '.' && e+1 < len(text) && isAlnum(text[e+1]))) {
		return i + 1
	}
	// Require at least one digit so that words like "face.beef.cafe" pass by.
	digits := 0
	for k := a; k < e; k++ {
		if isDigit(text[k]) {
			digits++
		}
	}
	if digits < 2 {
		return i + 1
	}
	s.add("pii.mac", a, e, 0.8, "cisco")
	return e
}

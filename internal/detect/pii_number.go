package detect

// numToken is a run of digit groups joined by short separators, as in
// "4111 1111 1111 1111", "(555) 123-4567", "10.0.0.1" or "12:30:45".
type numToken struct {
	start, end int      // bytes of the whole token (first digit .. last digit)
	groups     [][2]int // [start,end) of each digit group
	seps       []string // seps[k] joins groups[k] and groups[k+1]
	digits     int      // total number of digits
	buf        [24][2]int
	sbuf       [24]string
}

const maxGroups = 24

// isSepByte reports whether c may join two digit groups.
func isSepByte(c byte) bool {
	switch c {
	case ' ', '-', '.', '/', ':', '(', ')':
		return true
	}
	return false
}

// parseNumToken reads a token starting at the digit text[i]. The token
// always ends on a digit; separators are one byte from " -./:()" or two
// bytes of which one is a parenthesis (") ", " (", ")-").
func parseNumToken(text string, i int, t *numToken) {
	t.groups = t.buf[:0]
	t.seps = t.sbuf[:0]
	t.start, t.digits = i, 0
	n := len(text)
	for {
		j := i
		for j < n && isDigit(text[j]) {
			j++
		}
		t.groups = append(t.groups, [2]int{i, j})
		t.digits += j - i
		t.end = j
		if len(t.groups) == maxGroups || j >= n {
			return
		}
		// Separator of one or two bytes, then a digit.
		k := j
		if isSepByte(text[k]) {
			k++
			if k < n && isSepByte(text[k]) && text[k] != text[k-1] &&
				(text[k] == '(' || text[k] == ')' || text[k-1] == '(' || text[k-1] == ')') {
				k++
			}
		}
		if k == j || k >= n || !isDigit(text[k]) {
			return
		}
		t.seps = append(t.seps, text[j:k])
		i = k
	}
}

// uniformSep returns the separator shared by all groups ("" when the token
// is one group) and whether they share one.
func (t *numToken) uniformSep() (string, bool) {
	if len(t.seps) == 0 {
		return "", true
	}
	s := t.seps[0]
	for _, x := range t.seps[1:] {
		if x != s {
			return "", false
		}
	}
	return s, true
}

func (t *numToken) glen(k int) int { return t.groups[k][1] - t.groups[k][0] }

// digitsOf appends the digits of text[a:b] to dst.
func digitsOf(dst []byte, text string, a, b int) []byte {
	for k := a; k < b; k++ {
		if isDigit(text[k]) {
			dst = append(dst, text[k])
		}
	}
	return dst
}

// digits handles an anchor at the digit text[i] and returns where the
// main loop goes on.
func (s *piiScan) digits(i int) int {
	text := s.text
	n := len(text)
	j := i
	for j < n && isDigit(text[j]) {
		j++
	}
	if i > 0 {
		p := text[i-1]
		if isLetter(p) {
			// Only two letters at a word start can precede: IBAN, NINO.
			if i >= 2 && isLetter(text[i-2]) && (i == 2 || !isWordByte(text[i-3])) {
				s.iban(i - 2)
				s.ninoAt(i - 2)
			}
			return j
		}
		if isDigit(p) || p == '_' {
			return j
		}
		// Inside a token we already looked at: "1111" of "4111 1111".
		if isSepByte(p) && i >= 2 && isDigit(text[i-2]) && s.lastEnd < i-1 {
			return j
		}
		if p == '.' && i >= 2 && isAlnum(text[i-2]) {
			return j // "v1.2", "x.5", an extension of a longer thing
		}
		if p == ' ' && i >= 3 && isUpper(text[i-2]) && isUpper(text[i-3]) {
			s.ninoAt(i - 3) // "AB 12 34 56 C"
		}
	}
	t := &s.tok
	parseNumToken(text, i, t)
	s.ipv4(t)
	s.card(t)
	s.ssn(t)
	s.nhs(t)
	s.phone(t)
	s.dateNumeric(t)
	if len(t.groups) == 1 && t.digits <= 5 {
		s.address(i, j)
	}
	if s.lastEnd > j {
		return s.lastEnd
	}
	return j
}

// rightClear reports whether the token may end at end: no letter, digit
// or digit-joining separator continues it.
func rightClear(text string, end int) bool {
	if end >= len(text) {
		return true
	}
	c := text[end]
	if isAlnum(c) || c == '_' {
		return false
	}
	if (c == '.' || c == '-' || c == '/' || c == ':' || c == ',') && end+1 < len(text) && isDigit(text[end+1]) {
		return false
	}
	return true
}

// leftClear reports whether a number may start at start.
func leftClear(text string, start int) bool {
	if start == 0 {
		return true
	}
	c := text[start-1]
	if isAlnum(c) || c == '_' || c == '.' || c == '/' || c == '$' || c == '#' {
		return false
	}
	if c == '-' && start >= 2 && isAlnum(text[start-2]) {
		return false
	}
	if c == ',' && start >= 2 && isDigit(text[start-2]) {
		return false
	}
	return true
}

// Negative context shared by the numeric types: these numbers are
// references, not personal data.
var numberNegWords = newWordSet(
	"order", "invoice", "id", "version", "isbn", "ref", "reference", "account no",
	"tracking", "serial", "sku", "ticket", "case", "po", "build", "release",
	"model", "part", "item", "ver", "v.", "transaction", "receipt", "booking",
	"confirmation", "issn", "doi", "zip", "postcode", "patent", "lot", "batch",
)

package detect

import (
	"hash/maphash"
	"sync"

	"github.com/nyaruka/phonenumbers"
)

var phoneWords = newWordSet("phone", "tel", "telephone", "mobile", "cell", "call", "calling", "fax",
	"contact", "whatsapp", "sms", "text me", "ring", "dial", "reach me", "reach us", "my number",
	"landline", "hotline", "answering", "message", "messages", "voicemail", "desk", "direct",
	"ph", "mob", "tlf", "tél", "telefon", "téléphone", "teléfono", "helpline")

// phoneLabels count only right after the number: "416 60 039 office".
var phoneLabels = newWordSet("office", "home", "work", "mobile", "fax", "cell", "direct", "main", "phone", "tel")

// phoneNegWords are words after which a number is an identifier.
var phoneNegWords = newWordSet("license", "licence", "passport", "card", "credit", "account", "acct", "policy",
	"member", "membership", "customer no", "routing", "iban", "cvv", "pin", "vin", "plate", "located at", "is at", "lives at", "suite", "apt", "nhs")

// Regions tried for national numbers when phone words are near; the
// default is "US".
var phoneRegions = []string{"GB", "DE", "FR", "IT", "ES", "NL", "BE", "CH", "AT", "SE", "NO",
	"DK", "FI", "PL", "IE", "PT", "AU", "NZ", "IN", "CA", "BR", "MX", "JP", "CN", "HU", "CZ", "IS", "GR"}

// phone: E.164 or a national number. Shapes first (7–15 digits joined by
// spaces, dashes, dots and parentheses; not a date, time, IP, version, card
// or long id), then libphonenumber's rules, then context.
func (s *piiScan) phone(t *numToken) {
	text := s.text
	start, end := t.start, t.end
	plus := false
	if start > 0 && text[start-1] == '(' {
		start--
		if start > 0 && text[start-1] == '+' {
			start--
			plus = true
		}
	} else if start > 0 && text[start-1] == '+' {
		start--
		plus = true
	}
	if t.digits < 7 || t.digits > 15 || (!plus && t.digits > 12) {
		return
	}
	if !leftClear(text, start) {
		return
	}
	// "555-1234x12" is allowed below; anything else continuing is not.
	if !rightClear(text, end) && text[end] != 'x' {
		return
	}
	if start > 0 && (text[start-1] == '+' || text[start-1] == '-') {
		return
	}
	for _, sp := range t.seps {
		if sp == "/" || sp == ":" {
			return // dates, times, fractions
		}
	}
	if len(t.groups) >= 3 && looksLikeDate(text, t) {
		return
	}
	// Dotted numbers are phones only in the 3.3.4 / 2.2.2.2.2 styles.
	dots := 0
	for _, sp := range t.seps {
		if sp == "." {
			dots++
		}
	}
	if dots > 0 && dots != len(t.seps) {
		return
	}
	if dots > 0 && (len(t.groups) < 3 || t.glen(0) > 4) {
		return
	}
	// Extension: "x123", " ext 123", " ext. 123".
	if end < len(text) {
		e := end
		switch {
		case text[e] == 'x':
			e++
		case hasPrefixFold(text[e:], " ext. "):
			e += 6
		case hasPrefixFold(text[e:], " ext "):
			e += 5
		case hasPrefixFold(text[e:], " x"):
			e += 2
		}
		if e > end {
			k := e
			for k < len(text) && isDigit(text[k]) && k-e < 6 {
				k++
			}
			if k > e && rightClear(text, k) {
				end = k
			} else if !rightClear(text, end) {
				return
			}
		}
	}
	bare := len(t.groups) == 1 && !plus
	ctxDist := contextAround(text, start, end, 40, 16, phoneWords)
	if ctxDist < 0 {
		ctxDist = nearWord(text, end, end+12, end, phoneLabels)
	}
	neg := nearWord(text, start-32, start, start, numberNegWords) >= 0 ||
		nearWord(text, start-32, start, start, phoneNegWords) >= 0
	// A street address: "12 Rissik St" follows the number.
	if end+2 < len(text) && text[end] == ' ' && isUpper(text[end+1]) && !plus && ctxDist < 0 {
		return
	}
	if bare && ctxDist < 0 {
		return // bare digit runs are ids until something says otherwise
	}
	if neg && ctxDist < 0 {
		return
	}
	raw := text[start:t.end]
	if !plus && len(raw) > 2 && raw[0] == '0' && raw[1] == '0' {
		// "00" is the international call prefix in most of the world.
		raw, plus = "+"+raw[2:], true
	}
	var score float64
	reason := ""
	if s.lastEnd >= t.end {
		return // already claimed by an IP, card or SSN found at this token
	}
	if !plus && !nanpShape(text, t) && ctxDist < 0 {
		return // national numbers without context must be US-valid
	}
	if v := usVerdict(raw, plus, text, t); v == phoneValid {
		if plus {
			score, reason = 0.85, "e164"
		} else {
			score, reason = 0.7, "valid:US"
		}
	} else if plus {
		// A '+' number outside the numbering plan but of a possible
		// length for its country: weaker, and only when formatted.
		if v != phonePossible || (len(t.groups) < 2 && ctxDist < 0) {
			return
		}
		score, reason = 0.55, "possible"
	} else if ctxDist >= 0 {
		if r := validRegion(raw); r != "" {
			score, reason = 0.7, "valid:"+r
		}
		if score == 0 && ctxDist <= 24 && !bare && t.digits <= 12 {
			// Labelled as a phone, formatted as one, but not in a
			// numbering plan we know: a weaker finding.
			score, reason = 0.55, "shape"
		}
	}
	if score == 0 {
		return
	}
	if ctxDist >= 0 {
		score += 0.2
	} else if bare {
		score -= 0.2
	}
	if neg {
		score -= 0.35
	}
	s.add("pii.phone", start, end, score, reason)
}

func hasPrefixFold(s, p string) bool {
	if len(s) < len(p) {
		return false
	}
	for k := 0; k < len(p); k++ {
		if lower(s[k]) != p[k] {
			return false
		}
	}
	return true
}

// looksLikeDate reports whether the first three groups of t form a
// calendar date (Y-M-D, D-M-Y or M-D-Y) with one shared separator.
func looksLikeDate(text string, t *numToken) bool {
	if len(t.groups) < 3 || t.seps[0] != t.seps[1] {
		return false
	}
	_, _, _, ok := dateParts(text, t)
	return ok
}

// dateParts reads year, month and day from the first three groups.
func dateParts(text string, t *numToken) (y, m, d int, ok bool) {
	num := func(k int) (int, int) {
		a, b := t.groups[k][0], t.groups[k][1]
		v := 0
		for _, c := range []byte(text[a:b]) {
			v = v*10 + int(c-'0')
		}
		return v, b - a
	}
	a, la := num(0)
	b, lb := num(1)
	c, lc := num(2)
	switch {
	case la == 4 && lb <= 2 && lc <= 2: // Y-M-D
		y, m, d = a, b, c
	case la <= 2 && lb <= 2 && (lc == 4 || lc == 2):
		y = c
		if lc == 2 {
			y += 1900
			if c < 30 {
				y += 100
			}
		}
		if a > 12 { // D-M-Y
			d, m = a, b
		} else { // M-D-Y (or ambiguous D-M-Y: both are dates)
			m, d = a, b
			if m > 12 || d > 31 {
				m, d = b, a
			}
		}
	default:
		return 0, 0, 0, false
	}
	ok = y >= 1800 && y <= 2100 && m >= 1 && m <= 12 && d >= 1 && d <= 31
	return
}

// nanpShape reports whether t holds a North American number: ten digits,
// or eleven with a leading 1, with NPA and NXX of the form [2-9]XX.
func nanpShape(text string, t *numToken) bool {
	var buf [16]byte
	d := digitsOf(buf[:0], text, t.start, t.end)
	if len(d) == 11 && d[0] == '1' {
		d = d[1:]
	}
	return len(d) == 10 && d[0] >= '2' && d[3] >= '2'
}

// parsePhone parses the candidate. A number of North American shape skips
// phonenumbers.Parse (whose normalisation and extension stripping run
// several regular expressions, most of a phone's cost) and is built
// directly, which is what Parse would build from these digits: for region
// "US" without '+', and for "+1" followed by [2-9]XX[2-9]XXXXXX with it
// (the leading digit of such a national number is never NANP's national
// prefix "1", so nothing is stripped).
func parsePhone(raw string, plus bool, text string, t *numToken) (*phonenumbers.PhoneNumber, error) {
	if nanpShape(text, t) && (!plus || t.digits == 11) {
		var buf [16]byte
		d := digitsOf(buf[:0], text, t.start, t.end)
		if len(d) == 11 {
			d = d[1:]
		}
		var n uint64
		for _, c := range d {
			n = n*10 + uint64(c-'0')
		}
		cc := int32(1)
		return &phonenumbers.PhoneNumber{CountryCode: &cc, NationalNumber: &n}, nil
	}
	return phonenumbers.Parse(raw, "US")
}

// NANP validity by area code, derived from phonenumbers once: for each
// NPA, eight sample numbers (exchanges 2XX to 9XX) with different exchanges are checked; when
// they agree, the answer holds for every exchange [2-9]XX of that NPA
// (libphonenumber's North American patterns are per area code, with a few
// per-exchange exceptions); when they disagree the NPA is "mixed" and
// each number goes through IsValidNumber. TestNANPTableAgrees checks the
// table against IsValidNumber on random numbers.
const (
	nanpUnknown byte = iota
	nanpValid
	nanpInvalid
	nanpMixed
)

var (
	nanpOnce  sync.Once
	nanpTable [1000]byte
)

func buildNANPTable() {
	cc := int32(1)
	for npa := 200; npa < 1000; npa++ {
		var got byte
		for _, rest := range []uint64{2345678, 3456789, 4567890, 5678901, 6789012, 7891234, 8901234, 9012345} {
			n := uint64(npa)*10000000 + rest
			v := nanpInvalid
			if phonenumbers.IsValidNumber(&phonenumbers.PhoneNumber{CountryCode: &cc, NationalNumber: &n}) {
				v = nanpValid
			}
			if got == nanpUnknown {
				got = v
			} else if got != v {
				got = nanpMixed
			}
		}
		nanpTable[npa] = got
	}
}

// validPhone is phonenumbers.IsValidNumber with the NANP table in front.
func validPhone(num *phonenumbers.PhoneNumber) bool {
	if num.GetCountryCode() == 1 {
		nn := num.GetNationalNumber()
		if nn >= 2000000000 && nn < 10000000000 && (nn/1000000)%10 >= 2 {
			nanpOnce.Do(buildNANPTable)
			switch nanpTable[nn/10000000] {
			case nanpValid:
				return true
			case nanpInvalid:
				return false
			}
		}
	}
	return phonenumbers.IsValidNumber(num)
}

// What libphonenumber says of a candidate read with default region "US".
const (
	phoneUnparsed byte = iota + 1 // Parse failed
	phoneInvalid                  // parsed, neither valid nor possible
	phonePossible                 // parsed, not valid, but of a possible length
	phoneValid                    // parsed and valid
)

// usVerdict is parsePhone, validPhone and IsPossibleNumber in one answer.
// North American shapes are cheap and answered directly; the rest costs
// tens of microseconds of regular expressions in phonenumbers and is
// remembered by raw text (see usMemo).
func usVerdict(raw string, plus bool, text string, t *numToken) byte {
	if nanpShape(text, t) && (!plus || t.digits == 11) {
		num, _ := parsePhone(raw, plus, text, t)
		return verdictOf(num, nil)
	}
	if v, ok := usMemo.get(raw); ok {
		return v
	}
	num, err := parsePhone(raw, plus, text, t)
	v := verdictOf(num, err)
	usMemo.put(raw, v)
	return v
}

func verdictOf(num *phonenumbers.PhoneNumber, err error) byte {
	switch {
	case err != nil:
		return phoneUnparsed
	case validPhone(num):
		return phoneValid
	case phonenumbers.IsPossibleNumber(num):
		return phonePossible
	}
	return phoneInvalid
}

// validRegion is the first of phoneRegions in which raw, read as a
// national number, is valid, or "" when there is none; remembered like
// usVerdict, as it parses up to len(phoneRegions) times.
func validRegion(raw string) string {
	v, ok := regionMemo.get(raw)
	if !ok {
		v = 0
		for i, r := range phoneRegions {
			if num, err := phonenumbers.Parse(raw, r); err == nil && phonenumbers.IsValidNumber(num) {
				v = byte(i + 1)
				break
			}
		}
		regionMemo.put(raw, v)
	}
	if v == 0 {
		return ""
	}
	return phoneRegions[v-1]
}

// usMemo and regionMemo remember libphonenumber's answers by the exact
// text it was given, so an answer is the one phonenumbers would give again
// (it is deterministic): nothing is inferred from digits alone. It pays
// because chat clients resend the whole conversation at each turn, so the
// same numbers are checked again and again. The text is kept only as two
// 64-bit hashes under random per-process seeds, so no phone number outlives
// its request in memory, and a collision needs 128 bits to agree. Bounded:
// when full it starts afresh, which keeps it small and needs no bookkeeping
// per hit.
var (
	usMemo     = newVerdictMemo(4096)
	regionMemo = newVerdictMemo(4096)
)

type verdictMemo struct {
	seeds [2]maphash.Seed
	mu    sync.Mutex
	max   int
	m     map[[2]uint64]byte
}

func newVerdictMemo(max int) *verdictMemo {
	return &verdictMemo{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}, max: max}
}

func (c *verdictMemo) key(raw string) [2]uint64 {
	return [2]uint64{maphash.String(c.seeds[0], raw), maphash.String(c.seeds[1], raw)}
}

func (c *verdictMemo) get(raw string) (byte, bool) {
	k := c.key(raw)
	c.mu.Lock()
	v, ok := c.m[k]
	c.mu.Unlock()
	return v, ok
}

func (c *verdictMemo) put(raw string, v byte) {
	k := c.key(raw)
	c.mu.Lock()
	if c.m == nil || len(c.m) >= c.max {
		c.m = make(map[[2]uint64]byte, 64)
	}
	c.m[k] = v
	c.mu.Unlock()
}

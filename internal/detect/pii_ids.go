package detect

import "strconv"

var ssnWords = newWordSet("ssn", "social security", "ss#", "ss #", "ssa", "taxpayer", "tin", "itin")

// ssn: AAA-GG-SSSS (or spaces), or nine bare digits next to SSN words.
func (s *piiScan) ssn(t *numToken) {
	text := s.text
	if t.digits != 9 || !leftClear(text, t.start) || !rightClear(text, t.end) {
		return
	}
	sep, ok := t.uniformSep()
	if !ok {
		return
	}
	ctx := contextAround(text, t.start, t.end, 48, 16, ssnWords)
	var score float64
	switch {
	case len(t.groups) == 3 && t.glen(0) == 3 && t.glen(1) == 2 && t.glen(2) == 4 && sep == "-":
		score = 0.85
	case len(t.groups) == 3 && t.glen(0) == 3 && t.glen(1) == 2 && t.glen(2) == 4 && sep == " ":
		score = 0.6
	case len(t.groups) == 1 && ctx >= 0:
		score = 0.6
	default:
		return
	}
	var buf [12]byte
	d := digitsOf(buf[:0], text, t.start, t.end)
	if !validSSN(d) {
		return
	}
	if ctx >= 0 {
		score += 0.3
	}
	if nearWord(text, t.start-32, t.start, t.start, numberNegWords) >= 0 {
		score -= 0.3
	}
	s.add("pii.us_ssn", t.start, t.end, score)
}

// validSSN applies the SSA's rules to nine digits.
func validSSN(d []byte) bool {
	area, _ := strconv.Atoi(string(d[0:3]))
	group, _ := strconv.Atoi(string(d[3:5]))
	serial, _ := strconv.Atoi(string(d[5:9]))
	if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
		return false
	}
	switch string(d) {
	case "078051120", "219099999", "123456789", "111111111", "222222222", "333333333",
		"444444444", "555555555", "777777777", "888888888", "987654320", "987654321",
		"987654322", "987654323", "987654324", "987654325", "987654326", "987654327",
		"987654328", "987654329":
		return false
	}
	return true
}

var nhsWords = newWordSet("nhs", "nhs no", "nhs number", "health service", "chi number", "patient")

// nhs: ten digits (bare or 3-3-4) whose mod-11 check digit is right.
// With NHS words near: 0.9 in any format. Without: only the official
// spaced 3 3 4 display format, at 0.5 — bare ten-digit numbers and the
// dashed 3-3-4 form are mostly timestamps, ids and US phone numbers, and
// one in eleven of them passes the check by chance.
func (s *piiScan) nhs(t *numToken) {
	text := s.text
	if t.digits != 10 || !leftClear(text, t.start) || !rightClear(text, t.end) {
		return
	}
	sep, ok := t.uniformSep()
	if !ok {
		return
	}
	grouped := len(t.groups) == 3 && t.glen(0) == 3 && t.glen(1) == 3 && t.glen(2) == 4
	if !(len(t.groups) == 1 || (grouped && (sep == " " || sep == "-"))) {
		return
	}
	var buf [12]byte
	d := digitsOf(buf[:0], text, t.start, t.end)
	if !nhsCheck(d) {
		return
	}
	ctx := contextAround(text, t.start, t.end, 40, 16, nhsWords) >= 0
	switch {
	case ctx:
		s.add("pii.uk_nhs", t.start, t.end, 0.9, "mod11", "context")
	case grouped && sep == " ":
		s.add("pii.uk_nhs", t.start, t.end, 0.5, "mod11")
	}
}

func nhsCheck(d []byte) bool {
	sum := 0
	for k := 0; k < 9; k++ {
		sum += int(d[k]-'0') * (10 - k)
	}
	c := 11 - sum%11
	if c == 11 {
		c = 0
	}
	return c != 10 && c == int(d[9]-'0')
}

var ipWords = newWordSet("ip", "ipv4", "ipv6", "address", "host", "server", "client", "from", "connect", "ping", "gateway", "dns")
var versionWords = newWordSet("version", "ver", "v", "release", "build", "firmware", "rev", "revision", "patch", "update", "oid", "snmp")

// ipv4: a dotted quad, each octet 0–255 without leading zeros, not part of
// a longer dotted run ("1.2.3.4.5") and not next to version words.
func (s *piiScan) ipv4(t *numToken) {
	text := s.text
	if len(t.groups) < 4 {
		return
	}
	for k := 0; k < 3; k++ {
		if t.seps[k] != "." {
			return
		}
	}
	if len(t.groups) > 4 && t.seps[3] == "." {
		return // five or more dotted parts: a version or an OID
	}
	for k := 0; k < 4; k++ {
		a, b := t.groups[k][0], t.groups[k][1]
		if b-a > 3 || (b-a > 1 && text[a] == '0') {
			return
		}
		v, _ := strconv.Atoi(text[a:b])
		if v > 255 {
			return
		}
	}
	end := t.groups[3][1]
	if !leftClear(text, t.start) {
		return
	}
	if end < len(text) {
		c := text[end]
		if isAlnum(c) || c == '_' || (c == '.' && end+1 < len(text) && isAlnum(text[end+1])) {
			return
		}
	}
	score := 0.85
	if nearWord(text, t.start-24, t.start, t.start, versionWords) >= 0 {
		score -= 0.5
	}
	if contextAround(text, t.start, end, 32, 8, ipWords) >= 0 {
		score += 0.1
	}
	s.add("pii.ip", t.start, end, score)
}

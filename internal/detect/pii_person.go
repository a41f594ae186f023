package detect

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// firstNames is firstNameList as a set.
var firstNames = func() map[string]struct{} {
	m := make(map[string]struct{}, 1100)
	for _, n := range strings.Fields(firstNameList) {
		m[n] = struct{}{}
	}
	return m
}()

// notNames are capitalised words that end a name sequence.
var notNames = map[string]struct{}{
	"the": {}, "a": {}, "an": {}, "and": {}, "or": {}, "of": {}, "in": {}, "on": {}, "at": {}, "to": {},
	"i": {}, "is": {}, "was": {}, "we": {}, "he": {}, "she": {}, "it": {}, "they": {}, "you": {}, "my": {},
	"this": {}, "that": {}, "for": {}, "from": {}, "with": {}, "by": {}, "but": {}, "if": {}, "as": {},
	"mr": {}, "mrs": {}, "ms": {}, "dr": {}, "street": {}, "st": {}, "avenue": {}, "ave": {}, "road": {},
	"rd": {}, "lane": {}, "drive": {}, "inc": {}, "ltd": {}, "llc": {}, "corp": {}, "company": {},
	"monday": {}, "tuesday": {}, "wednesday": {}, "thursday": {}, "friday": {}, "saturday": {}, "sunday": {},
	"january": {}, "february": {}, "march": {}, "april": {}, "may": {}, "june": {}, "july": {},
	"august": {}, "september": {}, "october": {}, "november": {}, "december": {},
	"please": {}, "thanks": {}, "thank": {}, "hi": {}, "hello": {}, "dear": {}, "phone": {}, "email": {},
	"address": {}, "university": {}, "school": {}, "hospital": {}, "bank": {}, "group": {}, "team": {},
	"orchestra": {}, "foundation": {}, "institute": {}, "department": {}, "city": {}, "county": {},
}

var honorifics = map[string]struct{}{
	"Mr": {}, "Mrs": {}, "Ms": {}, "Miss": {}, "Mx": {}, "Dr": {}, "Prof": {}, "Professor": {},
	"Sir": {}, "Dame": {}, "Lady": {}, "Lord": {}, "Rev": {}, "Reverend": {}, "Madam": {},
	"Mister": {}, "Mme": {}, "Mlle": {}, "Herr": {}, "Frau": {}, "Sr": {}, "Sra": {}, "Srta": {},
}

// nameWord reads a capitalised name word at i: an upper-case letter, then
// letters (any script), with internal apostrophes or hyphens before a
// capital ("O'Brien", "Mary-Jane"). It returns the end and the word folded
// to lower-case ASCII in buf (ok == false if not a name-shaped word).
func nameWord(text string, i int, buf []byte) (end int, folded []byte, ok bool) {
	r, sz := utf8.DecodeRuneInString(text[i:])
	if !unicode.IsUpper(r) {
		return i, nil, false
	}
	folded = appendFold(buf[:0], r)
	j := i + sz
	lowers := 0
	for j < len(text) {
		c := text[j]
		if c < 0x80 {
			if isLetter(c) {
				if isLower(c) {
					lowers++
				}
				folded = append(folded, lower(c))
				j++
				continue
			}
			if (c == '\'' || c == '-') && j+1 < len(text) && isUpper(text[j+1]) {
				folded = append(folded, c)
				j++
				continue
			}
			break
		}
		r, sz := utf8.DecodeRuneInString(text[j:])
		if !unicode.IsLetter(r) {
			break
		}
		if unicode.IsLower(r) {
			lowers++
		}
		folded = appendFold(folded, r)
		j += sz
	}
	return j, folded, lowers > 0 && len(folded) < 40
}

// appendFold appends r in lower case with common Latin accents removed.
func appendFold(b []byte, r rune) []byte {
	if r < 0x80 {
		return append(b, lower(byte(r)))
	}
	r = unicode.ToLower(r)
	const from = "àáâãäåāąăçćčèéêëēęěìíîïīıñńňòóôõöøōőùúûüūůűýÿżźžśšşłďðřťğ"
	const to = "aaaaaaaaacccaeeeeeeeiiiiiinnnooooooooouuuuuuuyyzzzsssldrdrtg"
	k := 0
	for _, f := range from {
		if f == r {
			return append(b, to[k])
		}
		k++
	}
	switch r {
	case 'ß':
		return append(b, 's', 's')
	case 'æ':
		return append(b, 'a', 'e')
	case 'þ':
		return append(b, 't', 'h')
	}
	return utf8.AppendRune(b, r)
}

// prevRuneIsWord reports whether the rune before i is a letter or digit.
func prevRuneIsWord(text string, i int) bool {
	if i == 0 {
		return false
	}
	c := text[i-1]
	if c < 0x80 {
		return isAlnum(c) || c == '_'
	}
	r, _ := utf8.DecodeLastRuneInString(text[:i])
	return unicode.IsLetter(r) || unicode.IsDigit(r)
}

// upper handles a capital letter at i: written dates of birth, honorifics
// and names.
func (s *piiScan) upper(i int) int {
	text := s.text
	if prevRuneIsWord(text, i) {
		j := i + 1
		for j < len(text) && isLetter(text[j]) {
			j++
		}
		return j
	}
	var buf [48]byte
	end, w, ok := nameWord(text, i, buf[:])
	if end <= i {
		return i + 1
	}
	word := text[i:end]
	if _, h := honorifics[word]; h {
		return s.afterHonorific(end)
	}
	if !ok {
		return end
	}
	if len(w) >= 3 && len(w) <= 9 {
		switch w[0] {
		case 'j', 'f', 'm', 'a', 's', 'o', 'n', 'd':
			s.dateWritten(i)
		}
	}
	if _, stop := notNames[string(w)]; stop {
		return end
	}
	_, known := firstNames[string(w)]
	ctx := nameContextBefore(text, i)
	if !known && !ctx {
		return end
	}
	// Following capitalised words: the surname (up to three words, with
	// particles like "van", "de").
	last, words := end, 1
	for words < 4 {
		k := last
		if k < len(text) && text[k] == ' ' {
			k++
		} else {
			break
		}
		if p := particleAt(text, k); p > k {
			if p < len(text) && text[p] == ' ' {
				if e2, w2, ok2 := nameWord(text, p+1, buf[:]); ok2 && !isNotName(w2) {
					last, words = e2, words+2
					continue
				}
			}
			break
		}
		if k >= len(text) {
			break
		}
		e2, w2, ok2 := nameWord(text, k, buf[:])
		if !ok2 || isNotName(w2) {
			break
		}
		last, words = e2, words+1
	}
	score := 0.0
	switch {
	case ctx && words >= 2:
		score = 0.85
	case ctx:
		score = 0.7
	case words >= 2:
		score = 0.75
	default:
		score = 0.55
	}
	s.add("pii.person", i, last, score)
	return last
}

func isNotName(w []byte) bool {
	_, stop := notNames[string(w)]
	return stop
}

// particleAt returns the end of a lower-case surname particle at k.
func particleAt(text string, k int) int {
	for _, p := range []string{"van der", "van den", "van", "von", "de la", "de", "del", "der", "da", "di", "du", "le", "la", "bin", "al"} {
		if strings.HasPrefix(text[k:], p) {
			e := k + len(p)
			if e < len(text) && text[e] == ' ' {
				return e
			}
		}
	}
	return k
}

// afterHonorific reads "Mr. Name Name" from the end of the honorific.
func (s *piiScan) afterHonorific(end int) int {
	text := s.text
	k := end
	if k < len(text) && text[k] == '.' {
		k++
	}
	if k >= len(text) || text[k] != ' ' {
		return end
	}
	k++
	var buf [48]byte
	start := k
	last, words := k, 0
	for words < 3 && k < len(text) {
		e, w, ok := nameWord(text, k, buf[:])
		if !ok || isNotName(w) {
			break
		}
		last, words = e, words+1
		if e < len(text) && text[e] == ' ' {
			k = e + 1
		} else {
			break
		}
	}
	if words == 0 {
		return end
	}
	s.add("pii.person", start, last, 0.85, "honorific")
	return last
}

// nameContextBefore reports whether the words just before i introduce a
// name: "my name is", "Dear", "Name:", "signed", "Regards,", "by" ...
func nameContextBefore(text string, i int) bool {
	k := i
	for k > 0 && i-k < 6 && (text[k-1] == ' ' || text[k-1] == ':' || text[k-1] == ',' || text[k-1] == '\n' || text[k-1] == '\t' || text[k-1] == '>') {
		k--
	}
	if k == i {
		return false
	}
	e := k
	for k > 0 && e-k < 12 && isLetter(text[k-1]) {
		k--
	}
	if k == e || (k > 0 && isAlnum(text[k-1])) {
		return false
	}
	var b [12]byte
	w := b[:0]
	for _, c := range []byte(text[k:e]) {
		w = append(w, lower(c))
	}
	switch string(w) {
	case "dear", "name", "signed", "sincerely", "regards", "named", "called", "attn", "hi", "hello",
		"thanks", "cheers", "by", "from", "cc", "patient", "customer", "client", "employee", "applicant",
		"contact", "author", "candidate", "tenant", "student", "fullname", "surname", "forename", "nombre", "nom":
		return true
	case "is":
		return k >= 5 && hasPrefixFold(text[k-5:], "name ")
	case "am", "m":
		return k >= 2 && (hasPrefixFold(text[k-2:], "i ") || hasPrefixFold(text[k-2:], "i'"))
	}
	return false
}

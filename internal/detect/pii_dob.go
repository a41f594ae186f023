package detect

var birthWords = newWordSet("born", "birth", "dob", "d.o.b", "birthday", "birthdate", "b.", "date of birth", "née")

var monthNames = []string{"january", "february", "march", "april", "may", "june", "july",
	"august", "september", "october", "november", "december",
	"jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"}

// monthAt returns the end of a month name (full, or abbreviated with an
// optional '.') starting at i, or -1.
func monthAt(text string, i int) int {
	best := -1
	for _, m := range monthNames {
		if hasPrefixFold(text[i:], m) {
			e := i + len(m)
			if e < len(text) && isLetter(text[e]) {
				continue
			}
			if len(m) <= 4 && e < len(text) && text[e] == '.' {
				e++
			}
			if e > best {
				best = e
			}
		}
	}
	return best
}

// readInt reads 1..maxLen digits at i; returns value and end (end == i if none).
func readInt(text string, i, maxLen int) (int, int) {
	v, j := 0, i
	for j < len(text) && isDigit(text[j]) && j-i < maxLen {
		v = v*10 + int(text[j]-'0')
		j++
	}
	if j < len(text) && isDigit(text[j]) {
		return 0, i
	}
	return v, j
}

// skipOrdinal skips "st", "nd", "rd", "th" and an optional " of".
func skipOrdinal(text string, j int) int {
	if j+2 <= len(text) {
		switch uint16(lower(text[j]))<<8 | uint16(lower(text[j+1])) {
		case 's'<<8 | 't', 'n'<<8 | 'd', 'r'<<8 | 'd', 't'<<8 | 'h':
			if j+2 == len(text) || !isLetter(text[j+2]) {
				j += 2
			}
		}
	}
	if hasPrefixFold(text[j:], " of ") {
		j += 3
	}
	return j
}

// birthScore scores a date at [start,end) by how near birth words are.
func birthScore(text string, start, end int) float64 {
	d := nearWord(text, start-80, start, start, birthWords)
	switch {
	case d >= 0 && d <= 16:
		return 0.9
	case d >= 0 && d <= 40:
		return 0.8
	case d >= 0:
		return 0.65
	}
	if a := nearWord(text, end, end+24, end, birthWords); a >= 0 {
		return 0.7
	}
	return 0
}

// dateNumeric: "2/8/1935", "1935-02-08", "08.02.1935", "12 March 1990",
// "12th of March, 1990", and "born in 1935" — only with birth context.
func (s *piiScan) dateNumeric(t *numToken) {
	text := s.text
	if !leftClear(text, t.start) {
		return
	}
	g0 := t.glen(0)
	// Numeric date with one separator from / - .
	if len(t.groups) >= 3 && t.seps[0] == t.seps[1] && (t.seps[0] == "/" || t.seps[0] == "-" || t.seps[0] == ".") {
		if _, _, _, ok := dateParts(text, t); ok {
			end := t.groups[2][1]
			if len(t.groups) > 3 && t.seps[2] != " " {
				return
			}
			if sc := birthScore(text, t.start, end); sc > 0 {
				s.add("pii.date_of_birth", t.start, end, sc, "birth-context")
			}
		}
		return
	}
	if g0 > 2 {
		if len(t.groups) == 1 && g0 == 4 && rightClear(text, t.end) {
			y, _ := readInt(text, t.start, 4)
			if y >= 1900 && y <= 2100 {
				if d := nearWord(text, t.start-14, t.start, t.start, birthWords); d >= 0 {
					s.add("pii.date_of_birth", t.start, t.end, 0.6, "year", "birth-context")
				}
			}
		}
		return
	}
	// Day then month name then year.
	day, j := readInt(text, t.start, 2)
	if day < 1 || day > 31 {
		return
	}
	j = skipOrdinal(text, j)
	if j >= len(text) || text[j] != ' ' {
		return
	}
	me := monthAt(text, j+1)
	if me < 0 {
		return
	}
	k := me
	if k < len(text) && text[k] == ',' {
		k++
	}
	if k >= len(text) || text[k] != ' ' {
		return
	}
	y, e := readInt(text, k+1, 4)
	if e-(k+1) != 4 || y < 1800 || y > 2100 || !rightClear(text, e) {
		return
	}
	if sc := birthScore(text, t.start, e); sc > 0 {
		s.add("pii.date_of_birth", t.start, e, sc, "birth-context")
	}
}

// dateWritten: "March 12, 1990", "Mar. 12th 1990" starting at a month
// name at i; returns the end of what was read (or i+1).
func (s *piiScan) dateWritten(i int) {
	text := s.text
	me := monthAt(text, i)
	if me < 0 || me+1 >= len(text) || text[me] != ' ' {
		return
	}
	day, j := readInt(text, me+1, 2)
	if j == me+1 || day < 1 || day > 31 {
		return
	}
	j = skipOrdinal(text, j)
	if j < len(text) && text[j] == ',' {
		j++
	}
	if j >= len(text) || text[j] != ' ' {
		return
	}
	y, e := readInt(text, j+1, 4)
	if e-(j+1) != 4 || y < 1800 || y > 2100 || !rightClear(text, e) {
		return
	}
	if sc := birthScore(text, i, e); sc > 0 {
		s.add("pii.date_of_birth", i, e, sc, "birth-context")
	}
}

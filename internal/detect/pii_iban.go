package detect

// ibanLengths is the length of the IBAN of each country in the SWIFT IBAN
// registry.
var ibanLengths = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
	"BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
	"DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
	"GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
	"IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
	"LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
	"MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
	"PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
	"SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
	"TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

var ibanWords = newWordSet("iban", "account", "bank", "transfer", "wire", "sepa", "bic", "swift", "pay")

// iban: country code, two check digits, BBAN; spaces allowed between
// groups of four; the country's length; mod 97 == 1. The letters are all
// upper case or all lower case.
func (s *piiScan) iban(i int) {
	text := s.text
	if i+4 > len(text) || !isDigit(text[i+2]) || !isDigit(text[i+3]) {
		return
	}
	upper := isUpper(text[i]) && isUpper(text[i+1])
	if !upper && !(isLower(text[i]) && isLower(text[i+1])) {
		return
	}
	cc := [2]byte{text[i] &^ 0x20, text[i+1] &^ 0x20}
	want, ok := ibanLengths[string(cc[:])]
	if !ok {
		return
	}
	var buf [40]byte
	b := buf[:0]
	j := i
	spaced := false
	for j < len(text) && len(b) < want {
		c := text[j]
		switch {
		case isDigit(c):
		case isUpper(c) && upper, isLower(c) && !upper:
			c &^= 0x20
		case c == ' ' && len(b)%4 == 0 && len(b) > 0 && j+1 < len(text) && isAlnum(text[j+1]):
			spaced = true
			j++
			continue
		default:
			return
		}
		b = append(b, c)
		j++
	}
	if len(b) != want || (j < len(text) && isWordByte(text[j])) {
		return
	}
	if j < len(text) && text[j] == ' ' && spaced && j+1 < len(text) && isAlnum(text[j+1]) && len(b)%4 == 0 {
		// "GB82 WEST ... 5432 1" : a longer spaced run is a different length.
		k := j + 1
		for k < len(text) && isAlnum(text[k]) {
			k++
		}
		if k-(j+1) < 4 && (k == len(text) || !isWordByte(text[k])) && allDigits(text[j+1:k]) {
			return
		}
	}
	if mod97(b) != 1 {
		return
	}
	score := 0.9
	if contextAround(text, i, j, 40, 16, ibanWords) >= 0 {
		score = 0.97
	}
	s.add("pii.iban", i, j, score, "mod97")
}

func allDigits(s string) bool {
	for k := 0; k < len(s); k++ {
		if !isDigit(s[k]) {
			return false
		}
	}
	return len(s) > 0
}

// mod97 computes the ISO 13616 remainder of an upper-case IBAN.
func mod97(b []byte) int {
	r := 0
	add := func(c byte) {
		if isDigit(c) {
			r = (r*10 + int(c-'0')) % 97
		} else {
			r = (r*100 + int(c-'A') + 10) % 97
		}
	}
	for _, c := range b[4:] {
		add(c)
	}
	for _, c := range b[:4] {
		add(c)
	}
	return r
}

var ninoWords = newWordSet("national insurance", "nino", "ni number", "ni no", "nin", "insurance number")

// ninoAt: a UK National Insurance number at i: two prefix letters (first
// not D F I Q U V, second not D F I O Q U V, not BG GB KN NK NT TN ZZ),
// six digits, suffix A–D; single spaces allowed between the pairs.
func (s *piiScan) ninoAt(i int) {
	text := s.text
	if i > 0 && isWordByte(text[i-1]) {
		return
	}
	if i+9 > len(text) || !isUpper(text[i]) || !isUpper(text[i+1]) {
		return
	}
	a, b := text[i], text[i+1]
	switch a {
	case 'D', 'F', 'I', 'Q', 'U', 'V':
		return
	}
	switch b {
	case 'D', 'F', 'I', 'O', 'Q', 'U', 'V':
		return
	}
	switch string(text[i : i+2]) {
	case "BG", "GB", "KN", "NK", "NT", "TN", "ZZ":
		return
	}
	j := i + 2
	spaced := j < len(text) && text[j] == ' '
	for p := 0; p < 3; p++ {
		if spaced {
			if j >= len(text) || text[j] != ' ' {
				return
			}
			j++
		}
		if j+2 > len(text) || !isDigit(text[j]) || !isDigit(text[j+1]) {
			return
		}
		j += 2
	}
	ctx := contextAround(text, i, j, 48, 16, ninoWords) >= 0
	end := j
	if spaced && j < len(text) && text[j] == ' ' {
		j++
	}
	if j < len(text) && text[j] >= 'A' && text[j] <= 'D' && (j+1 == len(text) || !isWordByte(text[j+1])) {
		end = j + 1
	} else if !ctx || (end < len(text) && isWordByte(text[end])) {
		return
	}
	score := 0.8
	if ctx {
		score = 0.95
	}
	s.add("pii.uk_nino", i, end, score)
}

package detect

var cardWords = newWordSet("card", "credit", "debit", "visa", "mastercard", "amex", "american express",
	"discover", "jcb", "maestro", "diners", "unionpay", "cc", "pan", "payment", "pay", "cvv", "exp")

// card: 12–19 digits (12 only for Maestro), one group or groups joined by
// one shared ' ' or '-'; Luhn; issuer prefix with its lengths.
func (s *piiScan) card(t *numToken) {
	if t.digits < 12 || t.digits > 19 {
		return
	}
	sep, ok := t.uniformSep()
	if !ok || (sep != "" && sep != " " && sep != "-") {
		return
	}
	if len(t.groups) > 1 {
		// Groups of 3–6 digits except a short tail ("4111 1111 1111 111").
		for k := range t.groups {
			l := t.glen(k)
			if l < 3 || l > 6 {
				if !(k == len(t.groups)-1 && l >= 1) {
					return
				}
			}
		}
	}
	if !leftClear(s.text, t.start) || !rightClear(s.text, t.end) {
		return
	}
	var buf [24]byte
	d := digitsOf(buf[:0], s.text, t.start, t.end)
	if !luhn(d) {
		return
	}
	issuer := cardIssuer(d)
	if issuer == "" {
		return
	}
	score := 0.85
	if len(d) == 12 {
		score = 0.6 // 12-digit Maestro: rare, and many ids have 12 digits
	}
	if contextAround(s.text, t.start, t.end, 48, 24, cardWords) >= 0 {
		score += 0.1
	}
	if nearWord(s.text, t.start-32, t.start, t.start, numberNegWords) >= 0 {
		score -= 0.3
	}
	s.add("pii.card", t.start, t.end, score, "luhn", issuer)
}

func luhn(d []byte) bool {
	sum := 0
	double := false
	for k := len(d) - 1; k >= 0; k-- {
		v := int(d[k] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

// cardIssuer returns the issuer whose prefix range and lengths match d.
func cardIssuer(d []byte) string {
	n := len(d)
	p := func(k int) int { // first k digits as a number
		v := 0
		for _, c := range d[:k] {
			v = v*10 + int(c-'0')
		}
		return v
	}
	p1, p2, p3, p4, p6 := p(1), p(2), p(3), p(4), p(6)
	switch {
	case p1 == 4 && (n == 13 || n == 16 || n == 19):
		return "visa"
	case ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) && n == 16:
		return "mastercard"
	case (p2 == 34 || p2 == 37) && n == 15:
		return "amex"
	case (p4 == 6011 || p2 == 65 || (p3 >= 644 && p3 <= 649) || (p6 >= 622126 && p6 <= 622925)) && n >= 16 && n <= 19:
		return "discover"
	case p4 >= 3528 && p4 <= 3589 && n >= 16 && n <= 19:
		return "jcb"
	case (p4 == 2131 || p4 == 1800) && n == 15:
		return "jcb"
	case (p3 >= 300 && p3 <= 305 || p3 == 309 || p2 == 36 || p2 == 38 || p2 == 39) && n >= 14 && n <= 19:
		return "diners"
	case p2 == 62 && n >= 16 && n <= 19:
		return "unionpay"
	case (p2 == 50 || (p2 >= 56 && p2 <= 69) || p4 == 6759 || p4 == 6761 || p4 == 6762 || p4 == 6763) && n >= 12 && n <= 19:
		return "maestro"
	}
	return ""
}

package detect

// streetTypes are the suffixes that end a street name (lower case; a '.'
// after an abbreviation is read by the caller).
var streetTypes = map[string]struct{}{
	"street": {}, "st": {}, "avenue": {}, "ave": {}, "av": {}, "road": {}, "rd": {}, "lane": {}, "ln": {},
	"boulevard": {}, "blvd": {}, "drive": {}, "dr": {}, "court": {}, "ct": {}, "place": {}, "pl": {},
	"terrace": {}, "ter": {}, "way": {}, "parkway": {}, "pkwy": {}, "circle": {}, "cir": {},
	"highway": {}, "hwy": {}, "square": {}, "sq": {}, "crescent": {}, "cres": {}, "close": {},
	"row": {}, "trail": {}, "trl": {}, "alley": {}, "plaza": {}, "gardens": {}, "walk": {}, "mews": {},
	"grove": {}, "park": {}, "hill": {}, "heights": {}, "expressway": {}, "freeway": {}, "pike": {},
	"turnpike": {}, "loop": {}, "path": {}, "point": {}, "ridge": {}, "run": {}, "view": {}, "crossing": {},
	"green": {}, "common": {}, "quay": {}, "wharf": {}, "rise": {}, "vale": {}, "hollow": {}, "junction": {},
	"centre": {}, "center": {}, "estate": {}, "port": {}, "manor": {}, "meadow": {}, "meadows": {}, "valley": {},
	"station": {}, "falls": {}, "forge": {}, "fort": {}, "harbor": {}, "harbour": {}, "island": {}, "lake": {},
	"lakes": {}, "shore": {}, "shores": {}, "spring": {}, "springs": {}, "summit": {}, "track": {},
	"villa": {}, "villas": {}, "ville": {}, "vista": {}, "wells": {}, "ford": {}, "fords": {}, "glen": {},
}

var unitWords = []string{"apt.", "apt", "apartment", "suite", "ste.", "ste", "unit", "flat", "floor", "fl.", "room", "#"}

var addressWords = newWordSet("address", "lives at", "live at", "living at", "located at", "ship to", "deliver",
	"delivery", "residence", "resides", "mail to", "send to", "moved to", "home")

// address: "<number> <Name words> <street type>[,] [unit] [, City][, ST ZIP]"
// starting at the house number text[i:j].
func (s *piiScan) address(i, j int) {
	text := s.text
	if !leftClear(text, i) || j-i > 5 || j >= len(text) {
		return
	}
	k := j
	if k < len(text) && isUpper(text[k]) && k+1 < len(text) && text[k+1] == ' ' {
		k++ // "12A Baker Street"
	}
	if k >= len(text) || text[k] != ' ' {
		return
	}
	k++
	var buf [48]byte
	names := 0
	streetEnd := -1
	for w := 0; w < 6 && k < len(text); w++ {
		// One word: capitalised, an ordinal ("5th"), or a compass point.
		e := k
		var folded []byte
		if isDigit(text[k]) {
			for e < len(text) && isDigit(text[e]) {
				e++
			}
			if e+2 > len(text) || skipOrdinal(text, e) == e {
				break
			}
			e += 2
			folded = []byte("1st")
		} else {
			var ok bool
			e, folded, ok = nameWord(text, k, buf[:])
			if !ok {
				// "N", "SW" compass points are upper case only.
				if e > k && e-k <= 2 && (text[k] == 'N' || text[k] == 'S' || text[k] == 'E' || text[k] == 'W') {
					folded = []byte("n")
				} else {
					break
				}
			}
		}
		if _, st := streetTypes[string(folded)]; st && names > 0 {
			streetEnd = e
			if e < len(text) && text[e] == '.' && len(folded) <= 4 {
				streetEnd = e + 1
			}
			break
		}
		names++
		if e >= len(text) || text[e] != ' ' {
			break
		}
		k = e + 1
	}
	if streetEnd < 0 {
		return
	}
	end := streetEnd
	score := 0.75
	// Unit: ", Apt 4B", " Suite 828".
	if u := unitAfter(text, end); u > end {
		end = u
	}
	// City, state and ZIP: ", Springfield, IL 62704" or "\nSpringfield, IL 62704".
	if c := cityStateZip(text, end); c > end {
		end = c
		score = 0.9
	}
	if contextAround(text, i, end, 40, 0, addressWords) >= 0 {
		score += 0.1
	}
	s.add("pii.address", i, end, score)
}

// unitAfter reads an optional apartment or suite after an address.
func unitAfter(text string, k int) int {
	p := k
	if p < len(text) && text[p] == ',' {
		p++
	}
	if p < len(text) && (text[p] == ' ' || text[p] == '\n') {
		p++
	}
	for _, u := range unitWords {
		if hasPrefixFold(text[p:], u) {
			q := p + len(u)
			if q < len(text) && text[q] == ' ' {
				q++
			}
			e := q
			for e < len(text) && isAlnum(text[e]) && e-q < 6 {
				e++
			}
			if e > q && isDigit(text[q]) && (e == len(text) || !isWordByte(text[e])) {
				return e
			}
			return k
		}
	}
	return k
}

// cityStateZip reads ", City, ST 12345" or ", City ST 12345-6789".
func cityStateZip(text string, k int) int {
	p := k
	if p < len(text) && text[p] == ',' {
		p++
	}
	if p < len(text) && (text[p] == ' ' || text[p] == '\n') {
		p++
	}
	var buf [48]byte
	words := 0
	for words < 3 && p < len(text) {
		e, _, ok := nameWord(text, p, buf[:])
		if !ok {
			break
		}
		words++
		p = e
		if p+1 < len(text) && text[p] == ' ' && !(isUpper(text[p+1]) && p+2 < len(text) && isUpper(text[p+2])) {
			p++
			continue
		}
		break
	}
	if words == 0 {
		return k
	}
	if p < len(text) && text[p] == ',' {
		p++
	}
	if p < len(text) && text[p] == ' ' {
		p++
	}
	if p+2 > len(text) || !isUpper(text[p]) || !isUpper(text[p+1]) {
		return k
	}
	p += 2
	if p < len(text) && text[p] == ' ' {
		p++
	}
	z, e := readInt(text, p, 5)
	_ = z
	if e-p != 5 {
		return k
	}
	if e+5 < len(text) && text[e] == '-' {
		if _, e2 := readInt(text, e+1, 4); e2-(e+1) == 4 {
			e = e2
		}
	}
	if e < len(text) && isWordByte(text[e]) {
		return k
	}
	return e
}

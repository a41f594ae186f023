package detect

import (
	"strings"
	"unicode"
)

// A personal identifier (an e-mail address, a phone or card number, a
// name …) is indexed and searched for by the HMAC of its normalised form,
// so that "Jane.Doe@Example.com" and "jane.doe@example.com", or
// "4111 1111 1111 1111" and "4111-1111-1111-1111", find the same records.
// The forms are part of what is stored (retention's subject index, the
// audit log's AI call records): changing them loses what was indexed
// before.

// numberClasses are identifiers whose separators mean nothing: they are
// normalised to their letters and digits alone.
var numberClasses = map[string]bool{
	"pii.phone": true, "pii.card": true, "pii.iban": true, "pii.us_ssn": true,
	"pii.uk_nino": true, "pii.uk_nhs": true,
}

// Normalize returns the form under which an identifier of class is
// indexed: the letters and digits of a number class, upper-cased; for any
// other class (e-mail, names, addresses …) the value lower-cased, trimmed,
// with runs of white space collapsed to one space.
func Normalize(class, value string) string {
	if numberClasses[class] {
		return lettersAndDigits(value)
	}
	return foldSpace(value)
}

// NormalizedForms are the forms a value typed by a person may have been
// indexed under, whatever its class was: first as text, then as a number
// when that differs. Empty forms are left out: nothing is indexed under
// one.
func NormalizedForms(value string) []string {
	var out []string
	if f := foldSpace(value); f != "" {
		out = append(out, f)
	}
	if n := lettersAndDigits(value); n != "" && (len(out) == 0 || n != out[0]) {
		out = append(out, n)
	}
	return out
}

// lettersAndDigits keeps the letters and digits of s, upper-cased.
func lettersAndDigits(s string) string {
	var b strings.Builder
	// Upper-casing may lengthen a rune; usually the kept ones fit in s's length.
	b.Grow(len(s))
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(unicode.ToUpper(r))
		}
	}
	return b.String()
}

// foldSpace lower-cases s, trims it and collapses runs of white space.
func foldSpace(s string) string {
	return strings.Join(strings.Fields(strings.ToLower(s)), " ")
}

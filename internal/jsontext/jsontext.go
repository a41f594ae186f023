// Package jsontext reads and writes JSON as encoding/json does, for the
// places on the gateway's path that handle JSON by hand to save its
// reflection: strings written byte for byte as encoding/json writes them
// (an OpenAI answer, the audit log's canonical records, the digest of a
// prompt), and a token reader that accepts and returns what json.Decoder
// does (a chat request, an upstream's answer).
package jsontext

import "unicode/utf8"

// AppendString appends s quoted as encoding/json quotes a string: '"' and
// '\' escaped, control characters as short or \u00XX escapes, invalid
// UTF-8 as \ufffd, U+2028 and U+2029 escaped, everything else as it is;
// and with escapeHTML (json.Marshal's default) <, > and & as \u003c,
// \u003e and \u0026.
func AppendString(b []byte, s string, escapeHTML bool) []byte {
	const hexDigits = "0123456789abcdef"
	safe := &safePlain
	if escapeHTML {
		safe = &safeHTML
	}
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if safe[c] {
				i++
				// Prose is mostly safe ASCII: skip it eight bytes at a time.
				i += safeRun(s[i:])
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// safePlain and safeHTML mark the ASCII bytes encoding/json writes as they
// are: printable ones but " and \, and with HTML escaping not <, > or &
// either.
var safePlain, safeHTML = func() (plain, html [utf8.RuneSelf]bool) {
	for c := byte(' '); c < utf8.RuneSelf; c++ {
		plain[c] = c != '"' && c != '\\'
		html[c] = plain[c] && c != '<' && c != '>' && c != '&'
	}
	return plain, html
}()

// safeRun is how many of s's first bytes, in whole words of eight, are
// safe with HTML escaping: none is 0x80 or above, below 0x20, or one of
// " \ < > &. It tests eight at once, as one word, with the usual bit
// tricks: with every byte below 0x80, (y - 0x01…) &^ y has a byte's high
// bit set exactly when a byte of y is zero, and (x - 0x20…) &^ x when a
// byte of x is below 0x20. Without HTML escaping it stops at <, > and &
// too, which the caller then writes as they are. A reader uses it to skip
// the bytes of a string that need no decoding.
func safeRun[T string | []byte](s T) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	zeros := func(y uint64) uint64 { return (y - ones) &^ y }
	n := 0
	for ; len(s)-n >= 8; n += 8 {
		w := s[n : n+8]
		_ = w[7] // one bounds check for the eight loads, which become one
		x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
			uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
		found := x | (x-0x20*ones)&^x |
			zeros(x^('"'*ones)) | zeros(x^('\\'*ones)) | zeros(x^('<'*ones)) | zeros(x^('>'*ones)) | zeros(x^('&'*ones))
		if found&highs != 0 {
			break
		}
	}
	return n
}

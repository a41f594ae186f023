package api

import (
	"bytes"
	"net/http"
	"strconv"
	"unicode/utf8"
)

// writeCompletion answers a chat completion with what writeJSON writes for
// it, byte for byte, but encoded directly rather than by reflection: the
// answer is the one body every call encodes. A completion the direct
// encoder does not cover (logprobs other than null) goes to writeJSON.
func writeCompletion(w http.ResponseWriter, c chatCompletion) {
	b, ok := c.appendJSON(nil)
	if !ok {
		writeJSON(w, http.StatusOK, c)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// appendJSON appends c as a json.Encoder with SetEscapeHTML(false) writes
// it, newline included; false if c holds what it does not write (logprobs
// other than null).
func (c chatCompletion) appendJSON(b []byte) ([]byte, bool) {
	size := 256
	for _, ch := range c.Choices {
		if ch.Logprobs != nil && !bytes.Equal(ch.Logprobs, jsonNull) {
			return nil, false
		}
		size += len(ch.Message.Content) + len(ch.Message.Content)/8
	}
	if b == nil {
		b = make([]byte, 0, size)
	}
	b = append(b, `{"id":`...)
	b = appendJSONText(b, c.ID)
	b = append(b, `,"object":`...)
	b = appendJSONText(b, c.Object)
	b = append(b, `,"created":`...)
	b = strconv.AppendInt(b, c.Created, 10)
	b = append(b, `,"model":`...)
	b = appendJSONText(b, c.Model)
	b = append(b, `,"choices":`...)
	if c.Choices == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, ch := range c.Choices {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"index":`...)
			b = strconv.AppendInt(b, int64(ch.Index), 10)
			b = append(b, `,"message":{"role":`...)
			b = appendJSONText(b, ch.Message.Role)
			b = append(b, `,"content":`...)
			b = appendJSONText(b, ch.Message.Content)
			b = append(b, `,"refusal":`...)
			if ch.Message.Refusal == nil {
				b = append(b, "null"...)
			} else {
				b = appendJSONText(b, *ch.Message.Refusal)
			}
			b = append(b, `},"finish_reason":`...)
			b = appendJSONText(b, ch.FinishReason)
			b = append(b, `,"logprobs":null}`...)
		}
		b = append(b, ']')
	}
	b = append(b, `,"usage":`...)
	if u := c.Usage; u == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, `{"prompt_tokens":`...)
		b = strconv.AppendInt(b, int64(u.PromptTokens), 10)
		b = append(b, `,"completion_tokens":`...)
		b = strconv.AppendInt(b, int64(u.CompletionTokens), 10)
		b = append(b, `,"total_tokens":`...)
		b = strconv.AppendInt(b, int64(u.TotalTokens), 10)
		b = append(b, '}')
	}
	return append(b, "}\n"...), true
}

// appendJSONText appends s quoted as encoding/json quotes a string without
// HTML escaping: '"' and '\' escaped, control characters as short or
// \u00XX escapes, invalid UTF-8 as \ufffd, U+2028 and U+2029 escaped, and
// everything else as it is.
func appendJSONText(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= ' ' && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
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

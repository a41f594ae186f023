package gateway

import (
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// maxJSONCandidates bounds how many places in a prose answer are tried as
// the start of a JSON value, so a text full of unmatched brackets costs a
// bounded number of passes.
const maxJSONCandidates = 32

// jsonCandidates returns the JSON values found in answer, best first: the
// whole answer if it is one JSON value; otherwise the contents of its
// fenced code blocks (```json … ```) that parse, then the objects and
// arrays that parse where they start in the surrounding prose. Numbers are
// json.Number, as the schema validator wants them.
func jsonCandidates(answer string) []any {
	if v, ok := parseJSON(strings.TrimSpace(answer)); ok {
		return []any{v}
	}
	var out []any
	for _, block := range fencedBlocks(answer) {
		if v, ok := parseJSON(block); ok {
			out = append(out, v)
		}
	}
	tries := 0
	for i := 0; i < len(answer) && tries < maxJSONCandidates; i++ {
		if answer[i] != '{' && answer[i] != '[' {
			continue
		}
		tries++
		end := balancedEnd(answer, i)
		if end < 0 {
			continue
		}
		if v, ok := parseJSON(answer[i:end]); ok {
			out = append(out, v)
			i = end - 1 // values inside this one are not top-level
		}
	}
	return out
}

// extractJSON returns the first JSON value in answer (see jsonCandidates).
func extractJSON(answer string) (any, bool) {
	c := jsonCandidates(answer)
	if len(c) == 0 {
		return nil, false
	}
	return c[0], true
}

func parseJSON(s string) (any, bool) {
	if s == "" {
		return nil, false
	}
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(s))
	if err != nil {
		return nil, false
	}
	return v, true
}

// fencedBlocks returns the trimmed contents of ``` fences, the language
// tag on the opening line dropped. An unclosed fence runs to the end.
func fencedBlocks(text string) []string {
	var out []string
	for {
		i := strings.Index(text, "```")
		if i < 0 {
			return out
		}
		rest := text[i+3:]
		// Drop the info string (json, JSON, …) up to the end of the line,
		// unless the fence and its content share one line: ```{"a":1}```.
		if nl := strings.IndexByte(rest, '\n'); nl >= 0 {
			if info := strings.TrimSpace(rest[:nl]); info == "" || isFenceInfo(info) {
				rest = rest[nl+1:]
			}
		} else if j := strings.IndexAny(rest, "{[\""); j > 0 && isFenceInfo(strings.TrimSpace(rest[:j])) {
			rest = rest[j:]
		}
		j := strings.Index(rest, "```")
		if j < 0 {
			return append(out, strings.TrimSpace(rest))
		}
		out = append(out, strings.TrimSpace(rest[:j]))
		text = rest[j+3:]
	}
}

// isFenceInfo reports whether s looks like a fence's language tag.
func isFenceInfo(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '+') {
			return false
		}
	}
	return true
}

// balancedEnd returns the end (exclusive) of the bracketed value starting
// at text[start] ('{' or '['), skipping brackets inside strings, or -1 if it
// never closes or closes with the wrong bracket.
func balancedEnd(text string, start int) int {
	var stack []byte
	inString, escaped := false, false
	for i := start; i < len(text); i++ {
		c := text[i]
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{':
			stack = append(stack, '}')
		case '[':
			stack = append(stack, ']')
		case '}', ']':
			if len(stack) == 0 || stack[len(stack)-1] != c {
				return -1
			}
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return i + 1
			}
		}
	}
	return -1
}

package workflow

import (
	"strconv"
	"strings"
)

// Positions maps JSON pointers of a parsed document to where they start in
// its source: the key of an object member, the first character of an array
// element. The zero value and nil know no positions.
type Positions struct {
	m map[string]position
}

type position struct{ line, col int32 }

func (p *Positions) set(ptr string, line, col int) {
	if p.m == nil {
		p.m = map[string]position{}
	}
	p.m[ptr] = position{int32(line), int32(col)}
}

// Lookup returns the 1-based line and column of pointer, or of its nearest
// ancestor that has one. ok is false when neither is known.
func (p *Positions) Lookup(pointer string) (line, col int, ok bool) {
	if p == nil || p.m == nil {
		return 0, 0, false
	}
	for {
		if at, found := p.m[pointer]; found {
			return int(at.line), int(at.col), true
		}
		if pointer == "" {
			return 0, 0, false
		}
		i := strings.LastIndexByte(pointer, '/')
		if i < 0 {
			pointer = ""
		} else {
			pointer = pointer[:i]
		}
	}
}

// Len is the number of pointers with a position.
func (p *Positions) Len() int {
	if p == nil {
		return 0
	}
	return len(p.m)
}

// escapeToken escapes one JSON pointer reference token (RFC 6901).
func escapeToken(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// unescapeToken reverses escapeToken.
func unescapeToken(s string) string {
	if !strings.Contains(s, "~") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
}

// child returns the pointer of member key (or element index) below ptr.
func child(ptr, key string) string { return ptr + "/" + escapeToken(key) }

func index(ptr string, i int) string { return ptr + "/" + strconv.Itoa(i) }

// splitPointer returns the unescaped tokens of ptr ("" has none).
func splitPointer(ptr string) []string {
	if ptr == "" {
		return nil
	}
	parts := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	for i, p := range parts {
		parts[i] = unescapeToken(p)
	}
	return parts
}

// joinPointer builds a pointer from unescaped tokens.
func joinPointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(escapeToken(t))
	}
	return b.String()
}

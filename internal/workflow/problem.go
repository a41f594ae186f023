package workflow

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one validation problem. Line and Col are 1-based and 0 when
// unknown; Pointer is a JSON pointer into the document (/steps/2/with/url).
type Problem struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Col     int    `json:"col,omitempty"`
	Pointer string `json:"pointer"`
	Message string `json:"message"`
}

// String formats the problem as "file:line:col: message", leaving out what is
// unknown; without a line it names the pointer: "file: /pointer: message".
func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
	}
	if p.Line > 0 {
		if b.Len() > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%d", p.Line)
		if p.Col > 0 {
			fmt.Fprintf(&b, ":%d", p.Col)
		}
	} else if p.Pointer != "" {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(p.Pointer)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems is every problem found in a definition. It is an error; its
// message has one problem per line, in source order.
type Problems []Problem

func (ps Problems) Error() string {
	sorted := append(Problems(nil), ps...)
	sorted.sort()
	lines := make([]string, len(sorted))
	for i, p := range sorted {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sort orders problems by file, then line and column (problems with a
// position first), then pointer.
func (ps Problems) sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if (a.Line > 0) != (b.Line > 0) {
			return a.Line > 0
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Col != b.Col {
			return a.Col < b.Col
		}
		return a.Pointer < b.Pointer
	})
}

// err returns ps as an error, or nil when there are none.
func (ps Problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	out := append(Problems(nil), ps...)
	out.sort()
	return out
}

// problems collects problems and gives each the position of its pointer.
type problems struct {
	file string
	pos  *Positions
	list Problems
	seen map[string]bool
	src  []byte // the source, when parsing
}

func (c *problems) add(ptr, format string, args ...any) {
	c.addProblem(Problem{Pointer: ptr, Message: fmt.Sprintf(format, args...)})
}

func (c *problems) addProblem(p Problem) {
	p.File = c.file
	p.Message = redactCredentials(p.Message)
	if p.Line == 0 {
		p.Line, p.Col, _ = c.pos.Lookup(p.Pointer)
	}
	key := p.Pointer + "\x00" + p.Message
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	if c.seen[key] {
		return
	}
	c.seen[key] = true
	c.list = append(c.list, p)
}

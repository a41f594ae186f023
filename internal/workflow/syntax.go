package workflow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// yamlLineRE splits a yaml error into its line and message.
var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?(?:line (\d+): )?(.*?)(?: at line (\d+)(?:, column (\d+))?)?$`)

// readYAMLNode parses one YAML document; syntax errors become problems.
func readYAMLNode(src []byte, c *problems) (doc *yaml.Node) {
	defer func() {
		if r := recover(); r != nil {
			c.add("", "invalid YAML: %v", r)
			doc = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var n yaml.Node
	if err := dec.Decode(&n); err != nil {
		if err == io.EOF {
			c.add("", "the definition is empty")
		} else {
			addYAMLError(err, c)
		}
		return nil
	}
	var more yaml.Node
	switch err := dec.Decode(&more); {
	case err == io.EOF:
	case err != nil:
		addYAMLError(err, c)
		return nil
	default:
		c.addProblem(Problem{Line: max(more.Line, 1), Col: max(more.Column, 1), Message: "a definition is a single YAML document; remove the second one (after ---)"})
		return nil
	}
	return &n
}

func addYAMLError(err error, c *problems) {
	line, msg := splitYAMLError(err)
	if l := yamlErrorLine(c.src, msg); l > 0 {
		line = l
	}
	c.addProblem(Problem{Line: line, Message: "invalid YAML: " + msg})
}

// splitYAMLError returns the line yaml reports and the message without it.
func splitYAMLError(err error) (int, string) {
	msg := err.Error()
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	m := yamlLineRE.FindStringSubmatch(msg)
	if m == nil {
		return 0, msg
	}
	ln := m[1]
	if ln == "" {
		ln = m[3]
	}
	line, _ := strconv.Atoi(ln)
	return line, m[2]
}

// yamlErrorLine finds the line of a syntax error. The yaml package reports
// the line where the enclosing collection starts for many errors, so this
// looks for the shortest prefix of the source (in whole lines) that fails
// with the same message: parsing is sequential, so that is where the
// offending token is. It returns 0 when it cannot tell.
func yamlErrorLine(src []byte, msg string) int {
	var starts []int // offset just after each line
	for i, b := range src {
		if b == '\n' {
			starts = append(starts, i+1)
		}
	}
	if len(starts) == 0 || starts[len(starts)-1] != len(src) {
		starts = append(starts, len(src))
	}
	fails := func(k int) bool { // the first k lines fail with msg
		_, m, failed := yamlSyntax(src[:starts[k-1]])
		return failed && m == msg
	}
	n := len(starts)
	if !fails(n) {
		return 0
	}
	lo, hi := 1, n // fails(hi) holds
	for lo < hi {
		mid := (lo + hi) / 2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// yamlSyntax reports the first syntax error in src (at most two documents
// are read).
func yamlSyntax(src []byte) (line int, msg string, failed bool) {
	defer func() {
		if r := recover(); r != nil {
			line, msg, failed = 0, fmt.Sprint(r), true
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(src))
	for range 2 {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if err == io.EOF {
				return 0, "", false
			}
			line, msg = splitYAMLError(err)
			return line, msg, true
		}
	}
	return 0, "", false
}

// reportJSONSyntax adds the problem json.Unmarshal finds in src.
func reportJSONSyntax(src []byte, c *problems) {
	var v any
	err := json.Unmarshal(src, &v)
	if err == nil {
		return
	}
	p := Problem{Message: "invalid JSON: " + err.Error()}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		lm := newLineMap(src)
		p.Line, p.Col = lm.lineCol(int(se.Offset) - 1)
	}
	c.addProblem(p)
}

package workflow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// segment is a piece of a template string: literal text, or the source of
// an expression written between {{ and }}.
type segment struct {
	text   string
	isExpr bool
}

// parseTemplate splits s into literal and expression segments. It returns
// nil segments when s holds no {{. An expression ends at the first }} that
// is outside a quoted string and outside braces of a map literal, so
// `{{ {"a": {"b": 1}} }}` is one expression.
func parseTemplate(s string) ([]segment, error) {
	if !strings.Contains(s, "{{") {
		return nil, nil
	}
	var segs []segment
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			if s != "" {
				segs = append(segs, segment{text: s})
			}
			return segs, nil
		}
		if i > 0 {
			segs = append(segs, segment{text: s[:i]})
		}
		body := s[i+2:]
		end := exprEnd(body)
		if end < 0 {
			return nil, fmt.Errorf("unterminated {{ in %q: close it with }}", truncate(s[i:], 60))
		}
		src := strings.TrimSpace(body[:end])
		if src == "" {
			return nil, errors.New("empty {{ }}: put a CEL expression between the braces")
		}
		segs = append(segs, segment{text: src, isExpr: true})
		s = body[end+2:]
	}
}

// TemplateExpressions returns the CEL source of each {{ }} expression in s,
// in order, and whether s is exactly one of them (nothing around it but
// spaces). Nodes use it to see what a template refers to.
func TemplateExpressions(s string) (exprs []string, whole bool, err error) {
	segs, err := parseTemplate(s)
	if err != nil {
		return nil, false, fmt.Errorf("workflow: %w", err)
	}
	whole = len(segs) > 0
	for _, sg := range segs {
		if sg.isExpr {
			exprs = append(exprs, sg.text)
		} else if strings.TrimSpace(sg.text) != "" {
			whole = false
		}
	}
	return exprs, whole && len(exprs) == 1, nil
}

// exprEnd returns the index of the }} that closes an expression in s, or -1.
func exprEnd(s string) int {
	depth := 0
	for j := 0; j < len(s); j++ {
		switch c := s[j]; c {
		case '"', '\'':
			j = skipQuoted(s, j)
			if j < 0 {
				return -1
			}
		case '{':
			depth++
		case '}':
			if depth > 0 {
				depth--
			} else if j+1 < len(s) && s[j+1] == '}' {
				return j
			}
		}
	}
	return -1
}

// skipQuoted returns the index of the quote closing the CEL string literal
// opening at s[j] (triple quotes included), or -1.
func skipQuoted(s string, j int) int {
	q := s[j : j+1]
	if strings.HasPrefix(s[j:], strings.Repeat(q, 3)) {
		q = strings.Repeat(q, 3)
	}
	raw := j > 0 && (s[j-1] == 'r' || s[j-1] == 'R')
	for k := j + len(q); k < len(s); k++ {
		if s[k] == '\\' && !raw {
			k++
			continue
		}
		if strings.HasPrefix(s[k:], q) {
			return k + len(q) - 1
		}
	}
	return -1
}

// Render returns a copy of v with every string's {{ }} templates
// evaluated. A string that is exactly one template becomes the
// expression's value (a number stays a number); otherwise each value is
// formatted (strings as they are, null as "", others as compact JSON) into
// the surrounding text.
func (p *Plan) Render(v any, vars Vars) (any, error) {
	out, err := p.render(v, vars, "", nil, 0)
	if err != nil {
		return nil, fmt.Errorf("workflow: %w", err)
	}
	return out, nil
}

// RenderWith renders a step's settings, leaving raw CEL fields and a
// nested step's settings as written: the node evaluates those itself.
func (p *Plan) RenderWith(s *PlanStep, vars Vars) (map[string]any, error) {
	if s == nil || s.With == nil {
		return map[string]any{}, nil
	}
	out, err := p.render(s.With, vars, "", s.verbatim, 0)
	if err != nil {
		return nil, fmt.Errorf("workflow: step %s: %w", s.ID, err)
	}
	return out.(map[string]any), nil
}

func (p *Plan) render(v any, vars Vars, ptr string, verbatim map[string]bool, depth int) (any, error) {
	if verbatim[ptr] && ptr != "" {
		return v, nil
	}
	if depth > MaxJSONDepth {
		return nil, fmt.Errorf("render %s: nested more than %d levels deep", ptr, MaxJSONDepth)
	}
	switch x := v.(type) {
	case string:
		out, err := p.renderString(x, vars)
		if err != nil {
			return nil, fmt.Errorf("render %s: %w", orRoot(ptr), err)
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			r, err := p.render(e, vars, child(ptr, k), verbatim, depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := p.render(e, vars, index(ptr, i), verbatim, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	return v, nil
}

func orRoot(ptr string) string {
	if ptr == "" {
		return "/"
	}
	return ptr
}

func (p *Plan) renderString(s string, vars Vars) (any, error) {
	segs, err := parseTemplate(s)
	if err != nil {
		return nil, err
	}
	if segs == nil {
		return s, nil
	}
	if len(segs) == 1 && segs[0].isExpr {
		return p.eval(segs[0].text, vars)
	}
	var b strings.Builder
	for _, sg := range segs {
		if !sg.isExpr {
			b.WriteString(sg.text)
			continue
		}
		v, err := p.eval(sg.text, vars)
		if err != nil {
			return nil, err
		}
		if err := formatValue(&b, v); err != nil {
			return nil, err
		}
	}
	return b.String(), nil
}

// formatValue writes v as template text: strings as they are, null as
// nothing, everything else as compact JSON.
func formatValue(b *strings.Builder, v any) error {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		b.WriteString(x)
		return nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	b.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	return nil
}

package httpjson

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/moatproject/moat/internal/connectors"
	"github.com/moatproject/moat/internal/jsontext"
)

// Placeholders a body template may use inside its strings.
const (
	phModel        = "model"
	phPrompt       = "prompt"
	phSystem       = "system"
	phMessagesJSON = "messages_json"
)

// vars are the values of the placeholders for one request.
type vars struct {
	model, prompt, system string
	messages              json.RawMessage // a JSON array
}

func varsOf(req connectors.Request) (vars, error) {
	v := vars{model: req.Model}
	var system []string
	// A classification's examples are shown to the model as a system
	// message, so they reach both {{ system }} and {{ messages_json }}.
	msgs := connectors.FewShotMessages(req)
	for _, m := range msgs {
		switch m.Role {
		case connectors.System:
			system = append(system, m.Content)
		case connectors.User:
			v.prompt = m.Content
		}
	}
	v.system = strings.Join(system, "\n\n")
	if msgs == nil {
		msgs = []connectors.Message{}
	}
	b, err := json.Marshal(msgs)
	if err != nil {
		return v, fmt.Errorf("httpjson: encode messages: %w", err)
	}
	v.messages = b
	return v, nil
}

func (v vars) text(name string) string {
	switch name {
	case phModel:
		return v.model
	case phPrompt:
		return v.prompt
	case phSystem:
		return v.system
	case phMessagesJSON:
		return string(v.messages)
	}
	return ""
}

// segment is a piece of a template string: literal text, or a placeholder.
type segment struct {
	literal     string
	placeholder string
}

// parseString splits s into literal text and {{ name }} placeholders.
// Spaces inside the braces are optional; an unknown name is an error, and
// so is an unclosed "{{".
func parseString(s string) ([]segment, error) {
	var out []segment
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			if s != "" {
				out = append(out, segment{literal: s})
			}
			return out, nil
		}
		j := strings.Index(s[i+2:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("unclosed {{ in %q", truncate(s[i:]))
		}
		name := strings.TrimSpace(s[i+2 : i+2+j])
		switch name {
		case phModel, phPrompt, phSystem, phMessagesJSON:
		default:
			return nil, fmt.Errorf("unknown placeholder {{ %s }} (known: model, prompt, system, messages_json)", truncate(name))
		}
		if i > 0 {
			out = append(out, segment{literal: s[:i]})
		}
		out = append(out, segment{placeholder: name})
		s = s[i+2+j+2:]
	}
}

func truncate(s string) string {
	const n = 40
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// node is a compiled template: a JSON value whose strings may hold
// placeholders.
type node struct {
	kind     byte // 's' string, 'o' object, 'a' array, 'v' any other JSON value
	segments []segment
	raw      json.RawMessage // 'v'
	keys     []string        // 'o', in the template's order
	children []*node         // 'o' and 'a'
}

// compile turns a JSON template (already encoded) into a node tree,
// keeping the order of object keys.
func compile(data []byte) (*node, error) {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	n, err := compileValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	return n, nil
}

const maxDepth = 64

func compileValue(dec *json.Decoder, depth int) (*node, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("template nested deeper than %d", maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := &node{kind: 'o'}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key, _ := kt.(string)
				child, err := compileValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, key)
				n.children = append(n.children, child)
			}
			_, err := dec.Token() // '}'
			return n, err
		case '[':
			n := &node{kind: 'a'}
			for dec.More() {
				child, err := compileValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.children = append(n.children, child)
			}
			_, err := dec.Token() // ']'
			return n, err
		}
		return nil, fmt.Errorf("unexpected %v", t)
	case string:
		segs, err := parseString(t)
		if err != nil {
			return nil, err
		}
		return &node{kind: 's', segments: segs}, nil
	default:
		raw, err := json.Marshal(t)
		if err != nil {
			return nil, err
		}
		return &node{kind: 'v', raw: raw}, nil
	}
}

// render writes the JSON of n with the placeholders substituted. A string
// that is exactly "{{ messages_json }}" becomes the messages array itself;
// everywhere else a placeholder's text is inserted into the string, escaped
// as JSON requires.
func (n *node) render(b []byte, v vars) []byte {
	switch n.kind {
	case 'v':
		return append(b, n.raw...)
	case 'o':
		b = append(b, '{')
		for i, k := range n.keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsontext.AppendString(b, k, true)
			b = append(b, ':')
			b = n.children[i].render(b, v)
		}
		return append(b, '}')
	case 'a':
		b = append(b, '[')
		for i, c := range n.children {
			if i > 0 {
				b = append(b, ',')
			}
			b = c.render(b, v)
		}
		return append(b, ']')
	}
	if len(n.segments) == 1 && n.segments[0].placeholder == phMessagesJSON {
		return append(b, v.messages...)
	}
	var sb strings.Builder
	for _, s := range n.segments {
		if s.placeholder != "" {
			sb.WriteString(v.text(s.placeholder))
		} else {
			sb.WriteString(s.literal)
		}
	}
	return jsontext.AppendString(b, sb.String(), true)
}

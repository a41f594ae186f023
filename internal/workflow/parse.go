package workflow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Parse reads a definition written in YAML or JSON. JSON is read with the
// same positions as YAML, so every problem can name a line and column.
//
// When the source is well-formed but its structure is not (an unknown field,
// a list where a string belongs, …), Parse returns the definition as far as
// it could be read together with a Problems error, so that a caller (Load)
// can report those together with everything Compile finds. When the source
// cannot be read at all the definition is nil.
func Parse(filename string, src []byte) (*Definition, *Positions, error) {
	c := &problems{file: filename, pos: &Positions{}, src: src}
	root, ok := parseTree(src, c)
	if !ok {
		return nil, c.pos, c.list.err()
	}
	if _, isMap := root.(map[string]any); !isMap {
		c.add("", "a workflow must be a mapping of fields (apiVersion, kind, name, steps, …), not %s", describe(root))
		return nil, c.pos, c.list.err()
	}
	def := &Definition{}
	decodeValue(root, reflect.ValueOf(def).Elem(), "", c)
	return def, c.pos, c.list.err()
}

// unmarshalStrict decodes JSON into v, refusing unknown fields and trailing
// data.
func unmarshalStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// parseTree reads src (YAML or JSON) into plain values (see DecodeJSON),
// recording the position of every pointer in c.pos. ok is false when the
// source could not be read.
func parseTree(src []byte, c *problems) (root any, ok bool) {
	if len(src) > MaxSourceBytes {
		c.add("", "the definition is %d bytes; the limit is %d (1 MiB)", len(src), MaxSourceBytes)
		return nil, false
	}
	if !utf8.Valid(src) {
		off := 0
		for off < len(src) {
			r, size := utf8.DecodeRune(src[off:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			off += size
		}
		line, col := newLineMap(src).lineCol(off)
		c.addProblem(Problem{Line: line, Col: col, Message: "the definition is not UTF-8 text"})
		return nil, false
	}
	src = bytes.TrimPrefix(src, []byte("\xef\xbb\xbf"))
	trimmed := bytes.TrimSpace(src)
	if len(trimmed) == 0 {
		c.add("", "the definition is empty")
		return nil, false
	}
	var doc *yaml.Node
	isJSON := strings.HasSuffix(strings.ToLower(c.file), ".json")
	if (isJSON || trimmed[0] == '{' || trimmed[0] == '[') && json.Valid(src) {
		doc = readJSONNode(src)
	} else if isJSON {
		reportJSONSyntax(src, c)
		return nil, false
	} else {
		doc = readYAMLNode(src, c)
	}
	if doc == nil {
		return nil, false
	}
	if doc.Kind == yaml.DocumentNode && (len(doc.Content) == 0 ||
		doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].ShortTag() == "!!null" && doc.Content[0].Value == "") {
		c.add("", "the definition is empty")
		return nil, false
	}
	cv := converter{c: c}
	line, col := doc.Line, doc.Column
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		line, col = doc.Content[0].Line, doc.Content[0].Column
	}
	c.pos.set("", max(line, 1), max(col, 1))
	return cv.value(doc, "", 0), true
}

// converter turns a YAML node tree into plain values, recording positions
// and reporting what JSON cannot hold.
type converter struct {
	c *problems
}

func (cv converter) here(n *yaml.Node, ptr, format string, args ...any) {
	cv.c.addProblem(Problem{Pointer: ptr, Line: n.Line, Col: n.Column, Message: fmt.Sprintf(format, args...)})
}

func (cv converter) value(n *yaml.Node, ptr string, depth int) any {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil
		}
		return cv.value(n.Content[0], ptr, depth)
	case yaml.AliasNode:
		cv.here(n, ptr, "YAML aliases (*%s) are not supported; write the value out", n.Value)
		return nil
	case yaml.MappingNode:
		if depth >= MaxDepth {
			cv.here(n, ptr, "values are nested more than %d levels deep", MaxDepth)
			return nil
		}
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				cv.here(k, ptr, "keys must be strings")
				continue
			}
			if k.ShortTag() == "!!merge" {
				cv.here(k, ptr, "YAML merge keys (<<) are not supported; write the fields out")
				continue
			}
			p := child(ptr, k.Value)
			if _, dup := m[k.Value]; dup {
				cv.here(k, p, "duplicate key %q", k.Value)
				continue
			}
			cv.c.pos.set(p, k.Line, k.Column)
			m[k.Value] = cv.value(v, p, depth+1)
		}
		return m
	case yaml.SequenceNode:
		if depth >= MaxDepth {
			cv.here(n, ptr, "values are nested more than %d levels deep", MaxDepth)
			return nil
		}
		a := make([]any, 0, len(n.Content))
		for i, v := range n.Content {
			p := index(ptr, i)
			cv.c.pos.set(p, v.Line, v.Column)
			a = append(a, cv.value(v, p, depth+1))
		}
		return a
	case yaml.ScalarNode:
		return cv.scalar(n, ptr)
	}
	return nil
}

func (cv converter) scalar(n *yaml.Node, ptr string) any {
	switch tag := n.ShortTag(); tag {
	case "!!null":
		return nil
	case "!!str", "!!timestamp", "!!binary":
		return n.Value
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			cv.here(n, ptr, "%q is not a boolean", n.Value)
			return nil
		}
		return b
	case "!!int", "!!float":
		var v any
		if err := n.Decode(&v); err == nil {
			switch x := v.(type) {
			case int:
				return int64(x)
			case int64:
				return x
			case uint64:
				return normalizeFloat(float64(x))
			case float64:
				if math.IsNaN(x) || math.IsInf(x, 0) {
					cv.here(n, ptr, "%s is not a finite number", n.Value)
					return nil
				}
				return normalizeFloat(x)
			}
		}
		if f, err := strconv.ParseFloat(n.Value, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return normalizeFloat(f)
		}
		cv.here(n, ptr, "number %s is out of range", truncate(n.Value, 40))
		return nil
	default:
		cv.here(n, ptr, "unsupported YAML tag %s", tag)
		return nil
	}
}

// describe names the JSON type of a plain value for messages.
func describe(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int64, float64, int:
		return "a number"
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("a %T", v)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

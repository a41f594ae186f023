package workflow

import (
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
)

// The input schema's x-data-class and x-trust annotations decide how what
// a run reads from its input is treated: the nodes read them when a step
// runs, governance when it maps a workflow's data flows. Both must read
// them alike, so they do it here.

// Bounds on walking an input schema: it was checked when it was saved, but
// $ref may loop. A walk that reaches one must fail closed.
const (
	MaxSchemaNodes = 4096
	MaxSchemaDepth = 64
)

// The values x-trust may take (see checkAnnotations).
const (
	trustTrusted   = "trusted"
	trustUntrusted = "untrusted"
)

// InputSchema reads the annotations of a workflow's input schema along
// paths into the input (keys as in Reference, AnyItem for a list element).
type InputSchema struct {
	root map[string]any // nil without an input schema
}

// NewInputSchema reads in's schema; a nil in, or one without a schema,
// declares nothing.
func NewInputSchema(in *Input) *InputSchema {
	if in == nil {
		return &InputSchema{}
	}
	return &InputSchema{root: in.Schema}
}

// Classes lists, sorted, every x-data-class the schema declares anywhere,
// read as written (no $ref followed, so the walk ends; values of const,
// enum, default and examples are data, not schemas).
func (s *InputSchema) Classes() []string {
	set := map[string]bool{}
	var walk func(v any, depth int)
	walk = func(v any, depth int) {
		if depth > MaxJSONDepth {
			return
		}
		switch x := v.(type) {
		case map[string]any:
			if c, ok := x["x-data-class"].(string); ok && c != "" {
				set[c] = true
			}
			for k, e := range x {
				switch k {
				case "const", "enum", "default", "examples":
					continue
				}
				walk(e, depth+1)
			}
		case []any:
			for _, e := range x {
				walk(e, depth+1)
			}
		}
	}
	if s.root != nil {
		walk(s.root, 0)
	}
	return slices.Sorted(maps.Keys(set))
}

// Declared is the nearest x-data-class at or above the path, and its trust:
// "untrusted" when any level declares it, else "trusted" when the nearest
// declaration says so, else "".
func (s *InputSchema) Declared(path []string) (class, trust string) {
	levels := s.Levels(path)
	for i := len(levels) - 1; i >= 0; i-- {
		for _, n := range levels[i] {
			if c, _ := n["x-data-class"].(string); c != "" && class == "" {
				class = c
			}
			switch n["x-trust"] {
			case trustUntrusted:
				trust = trustUntrusted
			case trustTrusted:
				if trust == "" {
					trust = trustTrusted
				}
			}
		}
	}
	return class, trust
}

// Levels returns, for the root and each step of path (len(path)+1 entries),
// the schemas that describe the value there, each with those it is combined
// with by allOf, anyOf, oneOf and $ref.
func (s *InputSchema) Levels(path []string) [][]map[string]any {
	budget := MaxSchemaNodes
	var cur []map[string]any
	if s.root != nil {
		cur = s.expand(s.root, 0, &budget, nil)
	}
	out := [][]map[string]any{cur}
	for _, key := range path {
		var next []map[string]any
		for _, n := range cur {
			for _, c := range childSchemas(n, key) {
				next = s.expand(c, 0, &budget, next)
			}
		}
		cur = next
		out = append(out, cur)
	}
	return out
}

// expand adds a schema and those it is combined with (allOf, anyOf, oneOf,
// $ref): each may annotate the same value.
func (s *InputSchema) expand(n map[string]any, depth int, budget *int, out []map[string]any) []map[string]any {
	*budget--
	if *budget < 0 || depth > MaxSchemaDepth {
		return out
	}
	for _, seen := range out {
		if reflect.ValueOf(seen).UnsafePointer() == reflect.ValueOf(n).UnsafePointer() {
			return out
		}
	}
	out = append(out, n)
	for _, k := range []string{"allOf", "anyOf", "oneOf"} {
		list, _ := n[k].([]any)
		for _, e := range list {
			if m, ok := e.(map[string]any); ok {
				out = s.expand(m, depth+1, budget, out)
			}
		}
	}
	if ref, ok := n["$ref"].(string); ok {
		if target, ok := s.Resolve(ref); ok {
			out = s.expand(target, depth+1, budget, out)
		}
	}
	return out
}

// Resolve finds the schema a reference within the input schema points to
// ("#", "#/$defs/x"); any other reference resolves to nothing.
func (s *InputSchema) Resolve(ref string) (map[string]any, bool) {
	if s.root == nil || (ref != "#" && !strings.HasPrefix(ref, "#/")) {
		return nil, false
	}
	var v any = s.root
	for _, tok := range strings.Split(strings.TrimPrefix(strings.TrimPrefix(ref, "#"), "/"), "/") {
		if tok == "" {
			continue
		}
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		v = m[tok]
	}
	m, ok := v.(map[string]any)
	return m, ok
}

// childSchemas are the schemas of a field or list element of a value
// described by n.
func childSchemas(n map[string]any, key string) []map[string]any {
	var out []map[string]any
	add := func(v any) {
		if m, ok := v.(map[string]any); ok {
			out = append(out, m)
		}
	}
	if key == AnyItem {
		add(n["items"])
		if list, ok := n["prefixItems"].([]any); ok {
			for _, e := range list {
				add(e)
			}
		}
		return out
	}
	props, _ := n["properties"].(map[string]any)
	if p, ok := props[key]; ok {
		add(p)
		return out
	}
	matched := false
	if pats, ok := n["patternProperties"].(map[string]any); ok {
		for pat, sch := range pats {
			re, err := regexp.Compile(pat)
			if err != nil || re.MatchString(key) {
				add(sch) // a pattern Go cannot read may match: take its annotations
				matched = true
			}
		}
	}
	if !matched {
		add(n["additionalProperties"])
	}
	return out
}

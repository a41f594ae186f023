package governance

import (
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/workflow"
)

// The input schema's x-data-class and x-trust annotations, read as the
// nodes read them when a step runs: a field has the nearest class declared
// at or above it, and is untrusted when any level declares it so. A map
// also needs the classes declared below a field, since a step that refers
// to an object sends all of it.

// Bounds on walking an input schema: it was checked when it was saved, but
// $ref may loop.
const (
	maxSchemaNodes = 4096
	maxSchemaDepth = 64
	// maxInputFields bounds the fields a map lists, maxFieldDepth how deep
	// it looks for them.
	maxInputFields = 256
	maxFieldDepth  = 8
)

type inputSchema struct {
	root map[string]any // nil without an input schema
	// all holds every class the schema declares anywhere: the answer when
	// a walk runs out of budget (fail closed: the field may hold any).
	all []string
}

func newInputSchema(in *workflow.Input) *inputSchema {
	s := &inputSchema{}
	if in == nil || in.Schema == nil {
		return s
	}
	s.root = in.Schema
	set := map[string]bool{}
	collectClasses(s.root, set, 0)
	s.all = slices.Sorted(maps.Keys(set))
	return s
}

// collectClasses walks a schema document as written (no $ref followed, so
// it ends) and gathers every x-data-class.
func collectClasses(v any, set map[string]bool, depth int) {
	if depth > workflow.MaxJSONDepth {
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
				continue // data, not schemas
			}
			collectClasses(e, set, depth+1)
		}
	case []any:
		for _, e := range x {
			collectClasses(e, set, depth+1)
		}
	}
}

// declaredAt is the nearest x-data-class at or above the path, and its
// trust: untrusted when any level declares it, else trusted when the
// nearest declaration says so, else "".
func (s *inputSchema) declaredAt(path []string) (class, trust string) {
	levels := s.levels(path)
	for i := len(levels) - 1; i >= 0; i-- {
		for _, n := range levels[i] {
			if c, _ := n["x-data-class"].(string); c != "" && class == "" {
				class = c
			}
			switch n["x-trust"] {
			case gateway.Untrusted:
				trust = gateway.Untrusted
			case gateway.Trusted:
				if trust == "" {
					trust = gateway.Trusted
				}
			}
		}
	}
	return class, trust
}

// classesWithin are the classes a value at path may hold: its own (or the
// nearest above) and every class declared below it.
func (s *inputSchema) classesWithin(path []string) []string {
	if s.root == nil {
		return nil
	}
	set := map[string]bool{}
	if c, _ := s.declaredAt(path); c != "" {
		set[c] = true
	}
	levels := s.levels(path)
	budget := maxSchemaNodes
	seen := map[uintptr]bool{}
	for _, n := range levels[len(levels)-1] {
		if !s.classesBelow(n, set, seen, 0, &budget) {
			return slices.Clone(s.all)
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// classesBelow gathers the classes of a schema and of the schemas within
// it, following local $refs. It reports false when out of budget.
func (s *inputSchema) classesBelow(v any, set map[string]bool, seen map[uintptr]bool, depth int, budget *int) bool {
	*budget--
	if *budget < 0 || depth > maxSchemaDepth {
		return false
	}
	switch x := v.(type) {
	case map[string]any:
		id := reflect.ValueOf(x).Pointer()
		if seen[id] {
			return true
		}
		seen[id] = true
		if c, ok := x["x-data-class"].(string); ok && c != "" {
			set[c] = true
		}
		for _, k := range slices.Sorted(maps.Keys(x)) {
			switch k {
			case "const", "enum", "default", "examples":
				continue
			case "$ref":
				if ref, ok := x[k].(string); ok {
					if target, ok := s.ref(ref); ok && !s.classesBelow(target, set, seen, depth+1, budget) {
						return false
					}
				}
				continue
			}
			if !s.classesBelow(x[k], set, seen, depth+1, budget) {
				return false
			}
		}
	case []any:
		for _, e := range x {
			if !s.classesBelow(e, set, seen, depth+1, budget) {
				return false
			}
		}
	}
	return true
}

// levels returns, for the root and each step of path, the schemas that
// describe the value there.
func (s *inputSchema) levels(path []string) [][]map[string]any {
	budget := maxSchemaNodes
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
func (s *inputSchema) expand(n map[string]any, depth int, budget *int, out []map[string]any) []map[string]any {
	*budget--
	if *budget < 0 || depth > maxSchemaDepth {
		return out
	}
	for _, seen := range out {
		if reflect.ValueOf(seen).Pointer() == reflect.ValueOf(n).Pointer() {
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
		if target, ok := s.ref(ref); ok {
			out = s.expand(target, depth+1, budget, out)
		}
	}
	return out
}

// ref resolves a reference within the input schema ("#/$defs/x").
func (s *inputSchema) ref(ref string) (map[string]any, bool) {
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
	if key == anyItem {
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

// fields lists the input's named fields, depth first in name order, each
// with what the schema declares of it.
func (s *inputSchema) fields() []InputField {
	var out []InputField
	if s.root == nil {
		return out
	}
	var visit func(path []string, schemas []map[string]any)
	visit = func(path []string, schemas []map[string]any) {
		if len(path) > maxFieldDepth || len(out) >= maxInputFields {
			return
		}
		children := map[string]bool{}
		for _, n := range schemas {
			if props, ok := n["properties"].(map[string]any); ok {
				for k := range props {
					children[k] = true
				}
			}
			if _, ok := n["items"].(map[string]any); ok {
				children[anyItem] = true
			}
		}
		for _, k := range slices.Sorted(maps.Keys(children)) {
			if len(out) >= maxInputFields {
				return
			}
			p := append(slices.Clip(path), k)
			class, trust := s.declaredAt(p)
			out = append(out, InputField{Path: pathName(rootInput, p), Class: class, Trust: trust})
			levels := s.levels(p)
			visit(p, levels[len(levels)-1])
		}
	}
	levels := s.levels(nil)
	visit(nil, levels[0])
	return out
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// pathName writes a path as an expression would: input.a.b, input.list[],
// input["odd key"].
func pathName(root string, keys []string) string {
	var b strings.Builder
	b.WriteString(root)
	for _, k := range keys {
		switch {
		case k == anyItem:
			b.WriteString("[]")
		case identRE.MatchString(k):
			b.WriteString(".")
			b.WriteString(k)
		default:
			b.WriteString("[")
			b.WriteString(strconv.Quote(k))
			b.WriteString("]")
		}
	}
	return b.String()
}

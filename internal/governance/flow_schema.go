package governance

import (
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/moatproject/moat/internal/workflow"
)

// The input schema's x-data-class and x-trust annotations, read as the
// nodes read them when a step runs: a field has the nearest class declared
// at or above it, and is untrusted when any level declares it so. A map
// also needs the classes declared below a field, since a step that refers
// to an object sends all of it.

// maxInputFields bounds the fields a map lists, maxFieldDepth how deep it
// looks for them.
const (
	maxInputFields = 256
	maxFieldDepth  = 8
)

type inputSchema struct {
	schema *workflow.InputSchema
	root   map[string]any // nil without an input schema
	// all holds every class the schema declares anywhere: the answer when
	// a walk runs out of budget (fail closed: the field may hold any).
	all []string
}

func newInputSchema(in *workflow.Input) *inputSchema {
	s := &inputSchema{schema: workflow.NewInputSchema(in)}
	if in == nil || in.Schema == nil {
		return s
	}
	s.root = in.Schema
	s.all = s.schema.Classes()
	return s
}

// declaredAt is the nearest x-data-class at or above the path, and its
// trust: untrusted when any level declares it, else trusted when the
// nearest declaration says so, else "".
func (s *inputSchema) declaredAt(path []string) (class, trust string) {
	return s.schema.Declared(path)
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
	levels := s.schema.Levels(path)
	budget := workflow.MaxSchemaNodes
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
	if *budget < 0 || depth > workflow.MaxSchemaDepth {
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
					if target, ok := s.schema.Resolve(ref); ok && !s.classesBelow(target, set, seen, depth+1, budget) {
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
				children[workflow.AnyItem] = true
			}
		}
		for _, k := range slices.Sorted(maps.Keys(children)) {
			if len(out) >= maxInputFields {
				return
			}
			p := append(slices.Clip(path), k)
			class, trust := s.declaredAt(p)
			out = append(out, InputField{Path: pathName(rootInput, p), Class: class, Trust: trust})
			levels := s.schema.Levels(p)
			visit(p, levels[len(levels)-1])
		}
	}
	levels := s.schema.Levels(nil)
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
		case k == workflow.AnyItem:
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

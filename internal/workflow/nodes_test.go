package workflow

import (
	"sort"
	"strings"
)

// Fake node types, shaped like the built-in ones the nodes package brings.

type fakeType struct {
	name   string
	schema map[string]any
}

func (f fakeType) Name() string           { return f.name }
func (f fakeType) Schema() map[string]any { return f.schema }

// switchType chooses among cases[].next and default; cases[].when is CEL.
type switchType struct{ fakeType }

func (switchType) Targets(with map[string]any) []string {
	var out []string
	cases, _ := with["cases"].([]any)
	for _, c := range cases {
		if m, ok := c.(map[string]any); ok {
			if n, ok := m["next"].(string); ok {
				out = append(out, n)
			}
		}
	}
	if d, ok := with["default"].(string); ok {
		out = append(out, d)
	}
	return out
}

func (switchType) Expressions(with map[string]any) []ExprField {
	var out []ExprField
	cases, _ := with["cases"].([]any)
	for i, c := range cases {
		if m, ok := c.(map[string]any); ok {
			if w, ok := m["when"].(string); ok {
				out = append(out, ExprField{Pointer: index("/cases", i) + "/when", Source: w, Bool: true})
			}
		}
	}
	return out
}

// foreachType runs its nested step for each of items.
type foreachType struct{ fakeType }

func (foreachType) Nested(with map[string]any) (Nested, bool) {
	step, ok := with["step"].(map[string]any)
	if !ok {
		return Nested{}, false
	}
	uses, _ := step["uses"].(string)
	w, _ := step["with"].(map[string]any)
	return Nested{Pointer: "/step", Uses: uses, With: w, Vars: []string{"item", "index"}}, true
}

// loopType is a foreach whose Nested.Pointer names the nested settings
// (/step/with) rather than the nested step.
type loopType struct{ foreachType }

func (l loopType) Nested(with map[string]any) (Nested, bool) {
	n, ok := l.foreachType.Nested(with)
	n.Pointer = "/step/with"
	return n, ok
}

// httpType refuses a literal Authorization header.
type httpType struct{ fakeType }

func (httpType) Check(with map[string]any) []FieldProblem {
	h, _ := with["headers"].(map[string]any)
	if a, ok := h["Authorization"].(string); ok && !strings.Contains(a, "{{") {
		return []FieldProblem{{Pointer: "/headers/Authorization", Message: "use the connector's credentials, not a literal Authorization header"}}
	}
	return nil
}

// approvalType waits for a person.
type approvalType struct{ fakeType }

func (approvalType) Waits() bool { return true }

type registry map[string]NodeType

func (r registry) Lookup(name string) (NodeType, bool) { t, ok := r[name]; return t, ok }

// HasConnector knows the connectors the test definitions name.
func (registry) HasConnector(name string) bool { return name == "helpdesk" || name == "support-llm" }

func (r registry) Names() []string {
	out := make([]string, 0, len(r))
	for n := range r {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func obj(props map[string]any, required ...string) map[string]any {
	m := map[string]any{"type": "object", "additionalProperties": false, "properties": props}
	if len(required) > 0 {
		req := make([]any, len(required))
		for i, r := range required {
			req[i] = r
		}
		m["required"] = req
	}
	return m
}

var str = map[string]any{"type": "string"}

var testNodes = registry{
	"transform": fakeType{"transform", obj(map[string]any{"value": map[string]any{}})},
	"switch": switchType{fakeType{"switch", obj(map[string]any{
		"cases":   map[string]any{"type": "array", "items": obj(map[string]any{"when": str, "next": str}, "when", "next")},
		"default": str,
	}, "cases")}},
	"foreach": foreachType{fakeType{"foreach", obj(map[string]any{
		"items":       str,
		"concurrency": map[string]any{"anyOf": []any{map[string]any{"type": "integer", "minimum": 1, "maximum": 16}, map[string]any{"type": "string", "pattern": `\{\{`}}},
		"step":        obj(map[string]any{"uses": str, "with": map[string]any{"type": "object"}}, "uses"),
	}, "items", "step")}},
	"loop": loopType{foreachType{fakeType{"loop", obj(map[string]any{
		"items": str,
		"step":  obj(map[string]any{"uses": str, "with": map[string]any{"type": "object"}}, "uses"),
	}, "items", "step")}}},
	"http.request": httpType{fakeType{"http.request", obj(map[string]any{
		"method":  map[string]any{"enum": []any{"GET", "POST"}},
		"url":     str,
		"headers": map[string]any{"type": "object", "additionalProperties": str},
		"body":    map[string]any{},
	}, "url")}},
	"approval": approvalType{fakeType{"approval", obj(map[string]any{"role": str, "timeout": str})}},
}

package workflow

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func mustSchema(t testing.TB, src string) *InputSchema {
	t.Helper()
	var root map[string]any
	if err := json.Unmarshal([]byte(src), &root); err != nil {
		t.Fatal(err)
	}
	return NewInputSchema(&Input{Schema: root})
}

func TestInputSchemaDeclared(t *testing.T) {
	t.Parallel()
	const schema = `{
		"type": "object",
		"x-data-class": "internal",
		"properties": {
			"email": {"type": "string", "x-data-class": "pii.email", "x-trust": "trusted"},
			"ticket": {"type": "object", "x-trust": "untrusted", "properties": {
				"subject": {"type": "string", "x-trust": "trusted"},
				"from": {"$ref": "#/$defs/address"}
			}},
			"list": {"type": "array", "items": {"x-data-class": "pii.name"}, "prefixItems": [{"x-trust": "untrusted"}]},
			"combined": {"allOf": [{"x-data-class": "finance"}], "anyOf": [{"x-trust": "trusted"}]},
			"odd/key": {"x-data-class": "secret"}
		},
		"patternProperties": {"^tag_": {"x-data-class": "tag"}, "(": {"x-trust": "untrusted"}},
		"additionalProperties": {"x-data-class": "other"},
		"$defs": {"address": {"x-data-class": "pii.email"}}
	}`
	s := mustSchema(t, schema)
	for _, tc := range []struct {
		path         string // keys joined with '.', [] for a list element
		class, trust string
	}{
		{"", "internal", ""},
		{"email", "pii.email", "trusted"},
		{"ticket", "internal", "untrusted"},
		{"ticket.subject", "internal", "untrusted"}, // untrusted above wins
		{"ticket.from", "pii.email", "untrusted"},   // through $ref
		{"list.[]", "pii.name", "untrusted"},        // items and prefixItems
		{"combined", "finance", "trusted"},
		{"odd/key", "secret", ""},
		{"tag_x", "tag", "untrusted"}, // a pattern Go cannot compile may match
		{"missing.deeper", "internal", "untrusted"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			var path []string
			if tc.path != "" {
				path = strings.Split(strings.ReplaceAll(tc.path, "[]", AnyItem), ".")
			}
			class, trust := s.Declared(path)
			if class != tc.class || trust != tc.trust {
				t.Errorf("Declared %q %q, want %q %q", class, trust, tc.class, tc.trust)
			}
			if levels := s.Levels(path); len(levels) != len(path)+1 {
				t.Errorf("%d levels for %d keys", len(levels), len(path))
			}
		})
	}
}

func TestInputSchemaWithoutSchema(t *testing.T) {
	t.Parallel()
	for _, s := range []*InputSchema{NewInputSchema(nil), NewInputSchema(&Input{})} {
		if class, trust := s.Declared([]string{"a"}); class != "" || trust != "" {
			t.Errorf("Declared %q %q without a schema", class, trust)
		}
		if _, ok := s.Resolve("#"); ok {
			t.Error("Resolve found a schema without one")
		}
		levels := s.Levels([]string{"a", AnyItem})
		if len(levels) != 3 || len(levels[0])+len(levels[1])+len(levels[2]) != 0 {
			t.Errorf("Levels %v without a schema", levels)
		}
	}
}

func TestInputSchemaResolve(t *testing.T) {
	t.Parallel()
	s := mustSchema(t, `{"x-data-class": "root", "$defs": {"a/b": {"x-data-class": "slash"}, "t~": {"x-data-class": "tilde"}, "leaf": 1}}`)
	for _, tc := range []struct {
		ref, class string // class "-": resolves to nothing
	}{
		{"#", "root"},
		{"#/", "root"},
		{"#/$defs/a~1b", "slash"},
		{"#/$defs/t~0", "tilde"},
		{"#/$defs/leaf", "-"},
		{"#/$defs/missing", "-"},
		{"#/$defs/leaf/deeper", "-"},
		{"other.json#/$defs/a~1b", "-"},
		{"https://example.com/s", "-"},
		{"", "-"},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			t.Parallel()
			got := "-"
			if n, ok := s.Resolve(tc.ref); ok {
				got, _ = n["x-data-class"].(string)
			}
			if got != tc.class {
				t.Errorf("Resolve: %q, want %q", got, tc.class)
			}
		})
	}
}

// TestInputSchemaLoops: a schema whose $refs and combinations loop still
// answers, and each schema counts once per level.
func TestInputSchemaLoops(t *testing.T) {
	t.Parallel()
	s := mustSchema(t, `{"$ref": "#", "allOf": [{"$ref": "#/$defs/x"}], "properties": {"a": {"$ref": "#/$defs/x"}},
		"$defs": {"x": {"anyOf": [{"$ref": "#/$defs/x"}, {"$ref": "#"}], "x-trust": "untrusted", "x-data-class": "loop", "properties": {"a": {"$ref": "#/$defs/x"}}}}}`)
	levels := s.Levels([]string{"a", "a", "a"})
	for i, level := range levels {
		seen := map[uintptr]bool{}
		xs := 0
		for _, n := range level {
			id := reflect.ValueOf(n).Pointer()
			if seen[id] {
				t.Errorf("level %d holds a schema twice", i)
			}
			seen[id] = true
			if n["x-data-class"] == "loop" {
				xs++
			}
		}
		if xs != 1 {
			t.Errorf("level %d holds x %d times, want once", i, xs)
		}
	}
	if class, trust := s.Declared([]string{"a", "a"}); class != "loop" || trust != "untrusted" {
		t.Errorf("Declared %q %q", class, trust)
	}
}

// FuzzInputSchema: any schema and path must be answered without a panic,
// with one level per key and only the trust values the schema check
// accepts.
func FuzzInputSchema(f *testing.F) {
	f.Add(`{"properties":{"a":{"x-trust":"untrusted","items":{"x-data-class":"pii.email"}}}}`, "a.[]")
	f.Add(`{"$ref":"#","allOf":[{"$ref":"#/$defs/x"}],"$defs":{"x":{"anyOf":[{"$ref":"#/$defs/x"}],"x-trust":"trusted"}}}`, "b.c")
	f.Add(`{"patternProperties":{"(":{"x-trust":"untrusted"},"^a":{"x-data-class":"x"}},"additionalProperties":{"x-trust":"trusted"}}`, "ab")
	f.Fuzz(func(t *testing.T, schema, path string) {
		var root map[string]any
		if json.Unmarshal([]byte(schema), &root) != nil {
			root = nil
		}
		var keys []string
		if path != "" {
			keys = strings.Split(strings.ReplaceAll(path, "[]", AnyItem), ".")
		}
		if len(keys) > 64 {
			keys = keys[:64]
		}
		s := NewInputSchema(&Input{Schema: root})
		if levels := s.Levels(keys); len(levels) != len(keys)+1 {
			t.Fatalf("%d levels for %d keys", len(levels), len(keys))
		}
		if _, trust := s.Declared(keys); trust != "" && !trustValues[trust] {
			t.Fatalf("trust %q", trust)
		}
	})
}

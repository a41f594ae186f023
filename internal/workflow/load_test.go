package workflow

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func loadFile(t *testing.T, name string) *Plan {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Load(name, src, testNodes)
	if err != nil {
		t.Fatalf("Load(%s):\n%v", name, err)
	}
	return p
}

func TestYAMLAndJSONAreTheSame(t *testing.T) {
	t.Parallel()
	y := loadFile(t, "triage.yaml")
	j := loadFile(t, "triage.json")
	if !bytes.Equal(y.Canonical, j.Canonical) {
		t.Fatalf("canonical forms differ:\nyaml: %s\njson: %s", y.Canonical, j.Canonical)
	}
	if y.Hash != j.Hash || len(y.Hash) != 64 {
		t.Fatalf("hashes: %s vs %s", y.Hash, j.Hash)
	}
}

func TestFromCanonicalRoundTrip(t *testing.T) {
	t.Parallel()
	p := loadFile(t, "triage.yaml")
	q, err := FromCanonical(p.Canonical, testNodes)
	if err != nil {
		t.Fatal(err)
	}
	if q.Hash != p.Hash || !bytes.Equal(q.Canonical, p.Canonical) {
		t.Fatalf("reloaded plan differs:\n%s\n%s", p.Canonical, q.Canonical)
	}
	if got, want := len(q.Steps), len(p.Steps); got != want {
		t.Fatalf("steps: %d, want %d", got, want)
	}
}

func TestFromCanonicalProblemsHavePointers(t *testing.T) {
	t.Parallel()
	_, err := FromCanonical([]byte(`{"apiVersion":"moat/v1","kind":"Workflow","name":"x","trigger":{},"steps":[{"id":"a","uses":"nope"}],"extra":1}`), testNodes)
	var ps Problems
	if !errors.As(err, &ps) || len(ps) == 0 {
		t.Fatalf("want Problems, got %v", err)
	}
	for _, p := range ps {
		if p.Line != 0 || p.Pointer == "" {
			t.Errorf("problem %+v: want a pointer and no line", p)
		}
	}
}

// A definition built in Go, with Go-typed values, compiles to the same plan
// as its YAML.
func TestCompileBuiltDefinition(t *testing.T) {
	t.Parallel()
	def := &Definition{
		APIVersion: APIVersion, Kind: Kind, Name: "t",
		Steps: []Step{
			{ID: "a", Uses: "transform", With: map[string]any{"value": []string{"{{ 1 + 1 }}"}}},
			{ID: "b", Uses: "transform", With: map[string]any{"value": map[string]int{"n": 2}}, Needs: []string{}},
		},
	}
	p, err := Compile(def, "", nil, testNodes)
	if err != nil {
		t.Fatal(err)
	}
	q := mustLoad(t, hdr+"steps:\n  - {id: a, uses: transform, with: {value: ['{{ 1 + 1 }}']}}\n  - {id: b, uses: transform, with: {value: {n: 2}}, needs: []}\n")
	if p.Hash != q.Hash {
		t.Fatalf("hashes differ:\n%s\n%s", p.Canonical, q.Canonical)
	}
	got, err := p.RenderWith(p.Step("a"), nil)
	if err != nil || !reflect.DeepEqual(got, map[string]any{"value": []any{int64(2)}}) {
		t.Fatalf("RenderWith: %#v, %v", got, err)
	}
	if _, ok := p.Step("b").With["value"].(map[string]any)["n"].(int64); !ok {
		t.Errorf("values are not plain: %#v", p.Step("b").With)
	}
}

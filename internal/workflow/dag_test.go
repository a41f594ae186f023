package workflow

import (
	"reflect"
	"testing"
)

func mustLoad(t testing.TB, src string) *Plan {
	t.Helper()
	p, err := Load("wf.yaml", []byte(src), testNodes)
	if err != nil {
		t.Fatalf("Load:\n%v", err)
	}
	return p
}

func TestDAG(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		steps string
		roots []string
		preds map[string][]Edge
	}{
		{"implicit chaining", `
  - {id: a, uses: transform}
  - {id: b, uses: transform}
  - {id: c, uses: transform}
`, []string{"a"}, map[string][]Edge{
			"a": nil,
			"b": {{From: "a", To: "b"}},
			"c": {{From: "b", To: "c"}},
		}},
		{"parallel branches and a join", `
  - {id: a, uses: transform}
  - {id: b, uses: transform, needs: []}
  - {id: join, uses: transform, needs: [a, b]}
  - {id: after, uses: transform}
`, []string{"a", "b"}, map[string][]Edge{
			"a":     nil,
			"b":     nil,
			"join":  {{From: "a", To: "join"}, {From: "b", To: "join"}},
			"after": {{From: "join", To: "after"}},
		}},
		{"fan-out by next", `
  - {id: a, uses: transform, next: [c, b]}
  - {id: b, uses: transform}
  - {id: c, uses: transform}
`, []string{"a"}, map[string][]Edge{
			"b": {{From: "a", To: "b"}},
			"c": {{From: "a", To: "c"}},
		}},
		{"branches", `
  - {id: a, uses: transform}
  - id: sw
    uses: switch
    with:
      cases: [{when: "steps.a.output == 1", next: one}]
      default: other
  - {id: one, uses: transform}
  - {id: other, uses: transform}
  - {id: both, uses: transform, needs: [one, other]}
`, []string{"a"}, map[string][]Edge{
			"sw":    {{From: "a", To: "sw"}},
			"one":   {{From: "sw", To: "one", Branch: true}},
			"other": {{From: "sw", To: "other", Branch: true}},
			"both":  {{From: "one", To: "both"}, {From: "other", To: "both"}},
		}},
		{"a branch target that also needs the switch stays a branch", `
  - id: sw
    uses: switch
    with: {cases: [{when: "true", next: x}]}
  - {id: x, uses: transform, needs: [sw]}
`, []string{"sw"}, map[string][]Edge{
			"x": {{From: "sw", To: "x", Branch: true}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := mustLoad(t, hdr+"steps:"+tt.steps)
			if got := p.Roots(); !reflect.DeepEqual(got, tt.roots) {
				t.Errorf("roots %v, want %v", got, tt.roots)
			}
			for id, want := range tt.preds {
				s := p.Step(id)
				if s == nil {
					t.Fatalf("no step %s", id)
				}
				if !reflect.DeepEqual(s.Preds, want) {
					t.Errorf("%s preds %v, want %v", id, s.Preds, want)
				}
				for _, e := range s.Preds {
					if !containsEdge(p.Step(e.From).Succs, e) {
						t.Errorf("%s: edge %v missing from %s's succs", id, e, e.From)
					}
				}
			}
		})
	}
}

func containsEdge(es []Edge, e Edge) bool {
	for _, x := range es {
		if x == e {
			return true
		}
	}
	return false
}

func TestPlanSteps(t *testing.T) {
	t.Parallel()
	p := loadFile(t, "triage.yaml")
	if p.Step("nope") != nil {
		t.Error("Step(nope) is not nil")
	}
	for i, s := range p.Steps {
		if s.Index != i || p.Step(s.ID) != s || s.Type == nil || s.Type.Name() != s.Uses {
			t.Errorf("step %d: %+v", i, s)
		}
	}
	if got := p.Definition.Project; got != "support" {
		t.Errorf("project %q", got)
	}
	q := mustLoad(t, hdr+"steps: [{id: a, uses: transform}]\n")
	if q.Definition.Project != "default" {
		t.Errorf("default project %q", q.Definition.Project)
	}
}

func TestEmptyNeedsSurvivesCanonicalForm(t *testing.T) {
	t.Parallel()
	p := mustLoad(t, hdr+"steps:\n  - {id: a, uses: transform}\n  - {id: b, uses: transform, needs: []}\n")
	q, err := FromCanonical(p.Canonical, testNodes)
	if err != nil {
		t.Fatal(err)
	}
	if got := q.Roots(); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("roots after reload %v (canonical %s)", got, q.Canonical)
	}
}

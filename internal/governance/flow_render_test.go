package governance_test

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/governance"
	"github.com/moatproject/moat/internal/nodes"
	"github.com/moatproject/moat/internal/workflow"
)

// What a rendered diagram may hold, line by line: any name that could end
// a label, add a line or inject an edge fails these.
var (
	mermaidLabelRE = `((?:[A-Za-z0-9 .,:/@_+()-]|#[0-9]+;|<br/>)*)`
	mermaidNodeRE  = regexp.MustCompile(`^  (n[0-9]+)(?:\(\["` + mermaidLabelRE + `"\]\)|\["` + mermaidLabelRE + `"\]|\[\("` + mermaidLabelRE + `"\)\]|\[\["` + mermaidLabelRE + `"\]\]|>"` + mermaidLabelRE + `"\])$`)
	mermaidEdgeRE  = regexp.MustCompile(`^  (n[0-9]+) (?:-->|-\.->)(?: |\|"` + mermaidLabelRE + `"\| )(n[0-9]+)$`)

	dotQuotedRE = `((?:[^"\\\x00-\x1f\x7f]|\\[\\"n])*)`
	dotGraphRE  = regexp.MustCompile(`^  graph \[rankdir=LR, labelloc=t, label="` + dotQuotedRE + `"\];$`)
	dotNodeRE   = regexp.MustCompile(`^  (n[0-9]+) \[label="` + dotQuotedRE + `", shape=(?:ellipse|box|cylinder|hexagon|octagon)\];$`)
	dotEdgeRE   = regexp.MustCompile(`^  (n[0-9]+) -> (n[0-9]+)(?: \[(?:label="` + dotQuotedRE + `"(?:, style=dashed)?|style=dashed)\])?;$`)
)

// checkMermaid fails unless every line is a node or an edge between nodes
// already declared, and returns the decoded lines of every node's label.
func checkMermaid(t *testing.T, out string) [][]string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if lines[0] != "flowchart LR" {
		t.Fatalf("first line %q", lines[0])
	}
	declared := map[string]bool{}
	var labels [][]string
	for _, l := range lines[1:] {
		if m := mermaidNodeRE.FindStringSubmatch(l); m != nil {
			declared[m[1]] = true
			labels = append(labels, decodeMermaid(strings.Join(m[2:], "")))
			continue
		}
		m := mermaidEdgeRE.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("not a node or an edge: %q\n%s", l, out)
		}
		if !declared[m[1]] || !declared[m[3]] {
			t.Fatalf("an edge between undeclared nodes: %q", l)
		}
	}
	return labels
}

var entityRE = regexp.MustCompile(`#([0-9]+);`)

func decodeMermaid(label string) []string {
	parts := strings.Split(label, "<br/>")
	for i, p := range parts {
		parts[i] = entityRE.ReplaceAllStringFunc(p, func(e string) string {
			n, _ := strconv.Atoi(e[1 : len(e)-1])
			return string(rune(n))
		})
	}
	return parts
}

func checkDot(t *testing.T, out string) [][]string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) < 4 || lines[0] != "digraph flow {" || lines[len(lines)-1] != "}" || lines[2] != "  node [shape=box];" {
		t.Fatalf("frame:\n%s", out)
	}
	if !dotGraphRE.MatchString(lines[1]) {
		t.Fatalf("graph line %q", lines[1])
	}
	declared := map[string]bool{}
	var labels [][]string
	for _, l := range lines[3 : len(lines)-1] {
		if m := dotNodeRE.FindStringSubmatch(l); m != nil {
			declared[m[1]] = true
			labels = append(labels, decodeDot(m[2]))
			continue
		}
		m := dotEdgeRE.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("not a node or an edge: %q\n%s", l, out)
		}
		if !declared[m[1]] || !declared[m[2]] {
			t.Fatalf("an edge between undeclared nodes: %q", l)
		}
	}
	return labels
}

func decodeDot(label string) []string {
	var lines []string
	var b strings.Builder
	for i := 0; i < len(label); i++ {
		if label[i] == '\\' {
			i++
			if label[i] == 'n' {
				lines = append(lines, b.String())
				b.Reset()
				continue
			}
		}
		b.WriteByte(label[i])
	}
	return append(lines, b.String())
}

// shown is a name as a label shows it: control characters as spaces, cut
// at 120 characters.
func shown(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > 120 {
		return string(r[:120]) + "…"
	}
	return s
}

func hasLabelLine(labels [][]string, want string) bool {
	for _, l := range labels {
		if slices.Contains(l, want) {
			return true
		}
	}
	return false
}

// FuzzRenderEscapes puts hostile names everywhere a map holds one: the
// diagrams must stay nodes and edges, and every name must read back as
// written.
func FuzzRenderEscapes(f *testing.F) {
	for _, s := range []string{
		`a"] --> evil["x`, "two\nlines --> n0", `back\slash\"quote\n`, "</script><script>alert(1)</script>",
		"#quot; #34; &quot;", "\u202eesrever", "x|y|z", "n0 -.-> n1", "%% comment", "}; digraph x {", "",
	} {
		f.Add(s, "step-id", "pii.email")
		f.Add("wf", s, s)
	}
	f.Fuzz(func(t *testing.T, name, step, class string) {
		m := &governance.Map{
			Project: name, Workflow: name, Version: 1, Environment: name,
			Inputs: []governance.InputField{{Path: "input." + name, Class: class, Trust: name}},
			Steps: []governance.Step{{
				ID: step, Name: name, Uses: name, Repeats: name, Next: []string{step},
				Reads: []governance.Read{{From: "input." + name, Settings: []string{name}, Classes: []string{class}}},
				AI: &governance.AICall{Unresolved: name, Targets: []governance.Target{{
					Fallback: 1, Connector: name, Type: name, Model: name,
					Vendor:  governance.Vendor{Name: name, Location: name, Region: name},
					Classes: []governance.ClassFlow{{Class: class, Coverage: governance.CoverageDetected, Action: gateway.Action(name)}},
				}}},
				HTTP: &governance.HTTPCall{Method: name, Host: name, Sends: []governance.Sent{{Class: class, Coverage: governance.CoverageNone}}},
			}},
		}
		out, err := governance.Render(m, governance.FormatMermaid)
		if err != nil {
			t.Fatal(err)
		}
		if labels := checkMermaid(t, string(out)); !hasLabelLine(labels, shown(step)) {
			t.Fatalf("the step's id %q does not read back from %v", step, labels)
		}
		out, err = governance.Render(m, governance.FormatDot)
		if err != nil {
			t.Fatal(err)
		}
		if labels := checkDot(t, string(out)); !hasLabelLine(labels, shown(step)) {
			t.Fatalf("the step's id %q does not read back from %v", step, labels)
		}
		var b strings.Builder
		if err := governance.WriteVendorsText(&b, governance.Vendors(name, []*governance.Map{m})); err != nil {
			t.Fatal(err)
		}
		for _, r := range b.String() {
			if r != '\n' && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r)) {
				t.Fatalf("the text report holds control character %U", r)
			}
		}
	})
}

// FuzzBuild draws and renders whatever workflow compiles: it must not
// panic, and the diagrams must hold.
func FuzzBuild(f *testing.F) {
	f.Add(triage)
	f.Add(`apiVersion: moat/v1
kind: Workflow
name: each
input: {schema: {type: object, properties: {xs: {type: array, items: {$ref: "#/$defs/x"}}}, $defs: {x: {type: object, x-data-class: pii.name, properties: {self: {$ref: "#/$defs/x"}}}}}}
steps:
  - {id: a, uses: transform, with: {set: {v: "input.xs.map(x, x.self)", w: "input[input.k]"}}}
  - {id: b, uses: foreach, with: {items: "{{ steps.a.output.v }}", step: {uses: http.request, with: {url: "https://{{ item.h }}.example/"}}}}
  - {id: c, uses: ai.chat, with: {model: "{{ input.m }}", prompt: "{{ steps }}", data: {x: {value: "{{ input }}", class: confidential, trust: trusted}}}}
`)
	cat, err := gateway.BuildCatalog(testResources(), gateway.CatalogOptions{Environment: "prod", Getenv: func(string) string { return "k" }})
	if err != nil {
		f.Fatal(err)
	}
	reg := nodes.Builtins()
	reg.SetConnectors(cat.HasConnector)
	f.Fuzz(func(t *testing.T, src string) {
		plan, err := workflow.Load("fuzz.yaml", []byte(src), reg)
		if err != nil {
			return
		}
		m, err := governance.Build(plan, governance.Options{Catalog: cat, Policy: gateway.DefaultPolicy(), Nodes: reg})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range plan.Steps {
			if !slices.ContainsFunc(m.Steps, func(ms governance.Step) bool { return ms.ID == s.ID }) {
				t.Fatalf("step %s is missing from the map", s.ID)
			}
		}
		out, err := governance.Render(m, governance.FormatMermaid)
		if err != nil {
			t.Fatal(err)
		}
		checkMermaid(t, string(out))
		out, err = governance.Render(m, governance.FormatDot)
		if err != nil {
			t.Fatal(err)
		}
		checkDot(t, string(out))
	})
}

func TestBuildReadsWhatCannotBeNarrowed(t *testing.T) {
	t.Parallel()
	// A computed key reads the whole object; a comprehension's variable
	// shadows input; an optional field with a default is still the field.
	src := `apiVersion: moat/v1
kind: Workflow
name: narrow
input:
  schema:
    type: object
    properties:
      a: {type: object, properties: {x: {type: string, x-data-class: pii.email}, y: {type: string, x-data-class: pii.phone}}}
      k: {type: string}
steps:
  - {id: computed, uses: ai.chat, needs: [], with: {model: support, data: {v: "{{ input.a[input.k] }}"}}}
  - {id: shadowed, uses: ai.chat, needs: [], with: {model: support, data: {v: "{{ [1].map(input, input) }}"}}}
  - {id: optional, uses: ai.chat, needs: [], with: {model: support, data: {v: "{{ input.a.?y.orValue('') }}"}}}
`
	m := build(t, src, gateway.DefaultPolicy())
	tests := map[string][]string{
		"computed": {"pii.email detected tokenize/tokenize", "pii.phone detected tokenize/tokenize"},
		"shadowed": nil,
		"optional": {"pii.phone item tokenize/tokenize"},
	}
	for id, want := range tests {
		if got := flows(stepOf(t, m, id).AI.Targets[0]); !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", id, got, want)
		}
	}
}

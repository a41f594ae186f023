package workflow

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

// hdr is three lines; the steps of a case start on line 4.
const hdr = "apiVersion: moat/v1\nkind: Workflow\nname: t\n"

type wantProblem struct {
	line, col int
	msg       string // a substring of the message
}

func (w wantProblem) String() string { return fmt.Sprintf("%d:%d: …%s…", w.line, w.col, w.msg) }

func loadProblems(t *testing.T, file, src string) Problems {
	t.Helper()
	_, err := Load(file, []byte(src), testNodes)
	if err == nil {
		return nil
	}
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error is %T, not Problems: %v", err, err)
	}
	return ps
}

func TestProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  string
		want []wantProblem
	}{
		{"unknown top-level field", hdr + "nmae: x\nsteps: [{id: a, uses: transform}]\n",
			[]wantProblem{{4, 1, `unknown field "nmae" in the workflow (did you mean name?)`}}},
		{"unknown step field", hdr + "steps:\n  - id: a\n    uses: transform\n    nedds: []\n",
			[]wantProblem{{7, 5, `unknown field "nedds" in a step (did you mean needs?); known fields: id, name, uses`}}},
		{"wrong type", hdr + "steps:\n  - id: [a]\n    uses: transform\n",
			[]wantProblem{{5, 5, "id must be a string, not a list"}}},
		{"apiVersion", "apiVersion: moat/v2\nkind: Workflow\nname: t\nsteps: [{id: a, uses: transform}]\n",
			[]wantProblem{{1, 1, `unsupported apiVersion "moat/v2"`}}},
		{"apiVersion missing", "kind: Workflow\nname: t\nsteps: [{id: a, uses: transform}]\n",
			[]wantProblem{{1, 1, "apiVersion is missing"}}},
		{"kind", "apiVersion: moat/v1\nkind: Flow\nname: t\nsteps: [{id: a, uses: transform}]\n",
			[]wantProblem{{2, 1, "kind must be Workflow"}}},
		{"name", "apiVersion: moat/v1\nkind: Workflow\nname: Ticket_Triage\nsteps: [{id: a, uses: transform}]\n",
			[]wantProblem{{3, 1, `name "Ticket_Triage" must be 1 to 63 lowercase`}}},
		{"project", hdr + "project: -support\nsteps: [{id: a, uses: transform}]\n",
			[]wantProblem{{4, 1, `project "-support"`}}},
		{"step id with dash", hdr + "steps:\n  - id: fetch-page\n    uses: transform\n",
			[]wantProblem{{5, 5, `step id "fetch-page" must start with a letter`}}},
		{"step id reserved", hdr + "steps:\n  - id: in\n    uses: transform\n",
			[]wantProblem{{5, 5, `step id "in" is a reserved word`}}},
		{"step id missing", hdr + "steps:\n  - uses: transform\n",
			[]wantProblem{{5, 5, "the step needs an id"}}},
		{"duplicate step id", hdr + "steps:\n  - id: a\n    uses: transform\n  - id: a\n    uses: transform\n",
			[]wantProblem{{7, 5, `duplicate step id "a" (already used by step 1)`}}},
		{"unknown uses", hdr + "steps:\n  - id: a\n    uses: transfrom\n",
			[]wantProblem{{6, 5, `unknown node type "transfrom" (did you mean transform?); known types: approval, foreach, http.request, loop, switch, transform`}}},
		{"two triggers", hdr + "trigger:\n  manual: {}\n  webhook: {path: x}\nsteps: [{id: a, uses: transform}]\n",
			[]wantProblem{{4, 1, "at most one trigger; found manual and webhook"}}},
		{"webhook path", hdr + "trigger:\n  webhook:\n    path: a/../b\nsteps: [{id: a, uses: transform}]\n",
			[]wantProblem{{6, 5, `webhook path "a/../b"`}}},
		{"webhook path uppercase", hdr + "trigger:\n  webhook: {path: Tickets}\nsteps: [{id: a, uses: transform}]\n",
			[]wantProblem{{5, 13, `webhook path "Tickets"`}}},
		{"cron", hdr + "trigger:\n  schedule: \"*/5 * * *\"\nsteps: [{id: a, uses: transform}]\n",
			[]wantProblem{{5, 3, `invalid cron expression "*/5 * * *"`}}},
		{"cron object", hdr + "trigger:\n  schedule:\n    cron: \"@every 5x\"\n    timezone: Mars/Olympus\nsteps: [{id: a, uses: transform}]\n",
			[]wantProblem{{6, 5, "invalid cron expression"}, {7, 5, `unknown time zone "Mars/Olympus"`}}},
		{"retry", hdr + "steps:\n  - id: a\n    uses: transform\n    retry: {maxAttempts: 21, backoff: -1s, multiplier: 0.5}\n",
			[]wantProblem{{7, 13, "retry.maxAttempts must be between 1 and 20"}, {7, 30, "retry.backoff must not be negative"}, {7, 44, "retry.multiplier must be between 1 and 10"}}},
		{"timeout too long", hdr + "steps:\n  - id: a\n    uses: transform\n    timeout: 2d\n  - id: b\n    uses: approval\n    timeout: 30d\n",
			[]wantProblem{{7, 5, "timeout must be at most 1h (it is 48h)"}, {10, 5, "an approval step has no step timeout"}}},
		{"unknown connector", hdr + "steps:\n  - id: a\n    uses: transform\n    connector: nowhere\n",
			[]wantProblem{{7, 5, `unknown connector "nowhere": no connector of that name is configured`}}},
		{"invalid duration", hdr + "steps:\n  - id: a\n    uses: transform\n    timeout: 2x\n",
			[]wantProblem{{7, 5, `timeout: invalid duration "2x"`}}},
		{"unknown need", hdr + "steps:\n  - id: a\n    uses: transform\n  - id: b\n    uses: transform\n    needs: [a, c]\n",
			[]wantProblem{{9, 16, `unknown step "c" in needs`}}},
		{"next to itself", hdr + "steps:\n  - id: a\n    uses: transform\n    next: [a]\n",
			[]wantProblem{{7, 12, `step "a" cannot name itself in next`}}},
		{"unknown branch target", hdr + "steps:\n  - id: a\n    uses: switch\n    with:\n      cases: [{when: 'true', next: b}]\n      default: nowhere\n  - id: b\n    uses: transform\n",
			[]wantProblem{{9, 7, `unknown step "nowhere" in its branch targets`}}},
		{"cycle", hdr + "steps:\n  - id: a\n    uses: transform\n    needs: [c]\n  - id: b\n    uses: transform\n  - id: c\n    uses: transform\n",
			[]wantProblem{{5, 5, "steps form a cycle: a → b → c → a"}}},
		{"unreachable", hdr + "steps:\n  - id: a\n    uses: transform\n    next: [c]\n  - id: b\n    uses: transform\n    needs: [b2]\n  - id: c\n    uses: transform\n  - id: b2\n    uses: transform\n    needs: [b]\n",
			[]wantProblem{{8, 5, "steps form a cycle: b → b2 → b"}}},
		{"unreachable after a root", hdr + "steps:\n  - id: a\n    uses: switch\n    with: {cases: [{when: 'true', next: c}]}\n  - id: b\n    uses: transform\n    needs: [x]\n  - id: c\n    uses: transform\n",
			[]wantProblem{{10, 13, `unknown step "x" in needs`}}},
		{"with: missing, unknown and wrong type", hdr + "steps:\n  - id: a\n    uses: http.request\n    with:\n      method: PUT\n      headers: {X: 1}\n      bodee: {}\n",
			[]wantProblem{
				{7, 5, `missing required field "url"`},
				{8, 7, "with.method: value must be one of"},
				{9, 17, "with.headers.X: got number, want string"},
				{10, 7, `with: unknown field "bodee"`},
			}},
		{"settings checker", hdr + "steps:\n  - id: a\n    uses: http.request\n    with:\n      url: https://x.example\n      headers:\n        Authorization: Basic abc\n",
			[]wantProblem{{10, 9, "with.headers.Authorization: use the connector's credentials"}}},
		{"unterminated template", hdr + "steps:\n  - id: a\n    uses: transform\n    with: {value: \"{{ input.x \"}\n",
			[]wantProblem{{7, 12, "unterminated {{"}}},
		{"empty template", hdr + "steps:\n  - id: a\n    uses: transform\n    with: {value: \"a {{ }} b\"}\n",
			[]wantProblem{{7, 12, "empty {{ }}"}}},
		{"syntax error", hdr + "steps:\n  - id: a\n    uses: transform\n    with:\n      value: \"{{ input.x + }}\"\n",
			[]wantProblem{{8, 7, `invalid expression "input.x +": Syntax error`}}},
		{"undeclared", hdr + "steps:\n  - id: a\n    uses: transform\n    with:\n      value: \"{{ inptu.x }}\"\n",
			[]wantProblem{{8, 7, "undeclared reference to 'inptu'"}}},
		{"if is not boolean", hdr + "steps:\n  - id: a\n    uses: transform\n    if: 1 + 2\n",
			[]wantProblem{{7, 5, `expression "1 + 2" must be a boolean; it is int`}}},
		{"if with braces", hdr + "steps:\n  - id: a\n    uses: transform\n    if: \"{{ true }}\"\n",
			[]wantProblem{{7, 5, "if is an expression itself; write it without {{ }}"}}},
		{"when is not boolean", hdr + "steps:\n  - id: a\n    uses: switch\n    with:\n      cases:\n        - when: '\"refund\"'\n          next: b\n  - id: b\n    uses: transform\n",
			[]wantProblem{{9, 11, `expression "\"refund\"" must be a boolean; it is string`}}},
		{"reference to a later step", hdr + "steps:\n  - id: a\n    uses: transform\n    with: {value: \"{{ steps.b.output }}\"}\n  - id: b\n    uses: transform\n",
			[]wantProblem{{7, 12, `refers to steps.b, but step "b" does not come before step "a"; add "b" to its needs`}}},
		{"reference to a parallel step", hdr + "steps:\n  - id: a\n    uses: transform\n  - id: b\n    uses: transform\n    needs: []\n    if: steps.a.status == 'ok'\n",
			[]wantProblem{{10, 5, `refers to steps.a, but step "a" does not come before step "b"`}}},
		{"reference to itself", hdr + "steps:\n  - id: a\n    uses: transform\n    with: {value: \"{{ steps['a'].output }}\"}\n",
			[]wantProblem{{7, 12, `step "a" cannot refer to its own output`}}},
		{"reference to an unknown step", hdr + "steps:\n  - id: a\n    uses: transform\n  - id: b\n    uses: transform\n    with: {value: \"{{ steps.c.output }}\"}\n",
			[]wantProblem{{9, 12, `refers to steps.c, but there is no step "c"`}}},
		{"output names an unknown step", hdr + "steps:\n  - id: a\n    uses: transform\noutput: \"{{ steps.z.output }}\"\n",
			[]wantProblem{{7, 1, `there is no step "z"`}}},
		{"closed input", hdr + "input:\n  schema:\n    type: object\n    additionalProperties: false\n    properties: {email: {type: string}}\nsteps:\n  - id: a\n    uses: transform\n    with: {value: \"{{ input.emial }}\"}\n",
			[]wantProblem{{12, 12, `refers to input.emial, but the input schema has no field "emial" (fields: email)`}}},
		{"item outside foreach", hdr + "steps:\n  - id: a\n    uses: transform\n    with: {value: \"{{ item }}\"}\n",
			[]wantProblem{{7, 12, "item is only defined inside a nested step"}}},
		{"item shadowed by a macro is fine, index is not", hdr + "steps:\n  - id: a\n    uses: transform\n    with: {value: \"{{ [1].map(item, item + index) }}\"}\n",
			[]wantProblem{{7, 12, "index is only defined inside a nested step"}}},
		{"nested step", hdr + "steps:\n  - id: a\n    uses: foreach\n    with:\n      items: \"{{ [1] }}\"\n      step:\n        uses: http.request\n        with: {url: 5}\n  - id: b\n    uses: foreach\n    with:\n      items: \"{{ [1] }}\"\n      step: {uses: nope}\n",
			[]wantProblem{{11, 16, "with.url: got number, want string"}, {16, 14, `unknown node type "nope"`}}},
		{"nested step named by its settings", hdr + "steps:\n  - id: a\n    uses: loop\n    with:\n      items: \"{{ [1] }}\"\n      step:\n        uses: http.request\n        with:\n          url: 5\n  - id: b\n    uses: loop\n    with:\n      items: \"{{ [1] }}\"\n      step: {uses: nope, with: {}}\n",
			[]wantProblem{{12, 11, "with.url: got number, want string"}, {17, 14, `unknown node type "nope"`}}},
		{"credential", hdr + "steps:\n  - id: a\n    uses: http.request\n    with:\n      url: https://x.example\n      headers: {X-Key: \"{{ input.k }} AKIAIOSFODNN7EXAMPLE\"}\n",
			[]wantProblem{{9, 17, "looks like a credential (AWS access key id); store it with `moat secret set`"}}},
		{"credential inside a template is fine", hdr + "steps:\n  - id: a\n    uses: transform\n    with: {value: \"{{ input.k == 'x' }}\"}\n  - id: b\n    uses: transform\n    with: {value: \"sk-proj-abcdefghij0123456789ABCD\"}\n",
			[]wantProblem{{10, 12, "looks like a credential (OpenAI API key)"}}},
		{"invalid input schema", hdr + "input:\n  schema:\n    type: object\n    properties:\n      a: {type: strin}\n      b: {type: string, x-trust: maybe, x-data-class: 5}\nsteps: [{id: a, uses: transform}]\n",
			[]wantProblem{{8, 11, "invalid schema"}, {9, 25, `x-trust must be "trusted" or "untrusted"`}, {9, 41, "x-data-class must be a data class name"}}},
		{"invalid input schema regex", hdr + "input:\n  schema:\n    type: object\n    properties:\n      a: {type: string, pattern: \"(\"}\nsteps: [{id: a, uses: transform}]\n",
			[]wantProblem{{8, 25, "invalid schema"}}},
		{"external ref", hdr + "input:\n  schema:\n    $ref: file:///etc/passwd\nsteps: [{id: a, uses: transform}]\n",
			[]wantProblem{{5, 3, "not allowed"}}},
		{"schedule input", hdr + "trigger:\n  schedule:\n    cron: \"@hourly\"\n    input: {n: x}\ninput:\n  schema:\n    properties: {n: {type: integer}}\nsteps: [{id: a, uses: transform}]\n",
			[]wantProblem{{7, 13, "schedule input.n: got string, want integer"}}},
		{"no steps", hdr + "steps: []\n",
			[]wantProblem{{4, 1, "a workflow needs at least one step"}}},
		{"duplicate key", hdr + "steps: [{id: a, uses: transform}]\nname: u\n",
			[]wantProblem{{5, 1, `duplicate key "name"`}}},
		{"alias", hdr + "x: &v {a: 1}\nsteps: [{id: a, uses: transform, with: {value: *v}}]\n",
			[]wantProblem{{4, 1, `unknown field "x"`}, {5, 48, "YAML aliases (*v) are not supported"}}},
		{"merge key", hdr + "steps:\n  - id: a\n    uses: transform\n    with: {<<: {a: 1}}\n",
			[]wantProblem{{7, 12, "merge keys"}}},
		{"two documents", hdr + "steps: [{id: a, uses: transform}]\n---\nname: u\n",
			[]wantProblem{{5, 1, "a definition is a single YAML document"}}},
		{"yaml syntax", hdr + "steps:\n  - id: a\n   uses: transform\n",
			[]wantProblem{{6, 0, "invalid YAML"}}},
		{"not a mapping", "- a\n- b\n",
			[]wantProblem{{1, 1, "a workflow must be a mapping"}}},
		{"not UTF-8", hdr + "description: caf\xe9\n",
			[]wantProblem{{4, 17, "the definition is not UTF-8 text"}}},
		{"UTF-16", "\xfe\xff\x00a\x00:",
			[]wantProblem{{1, 1, "the definition is not UTF-8 text"}}},
		{"empty", "  \n",
			[]wantProblem{{0, 0, "the definition is empty"}}},
		{"non-finite number", hdr + "steps:\n  - id: a\n    uses: transform\n    with: {value: .nan}\n",
			[]wantProblem{{7, 19, ".nan is not a finite number"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkProblems(t, loadProblems(t, "wf.yaml", tt.src), tt.want)
		})
	}
}

// checkProblems requires exactly the wanted problems, in any order.
func checkProblems(t *testing.T, got Problems, want []wantProblem) {
	t.Helper()
	used := make([]bool, len(got))
	for _, w := range want {
		found := false
		for i, p := range got {
			if !used[i] && p.Line == w.line && p.Col == w.col && strings.Contains(p.Message, w.msg) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("missing problem %s", w)
		}
	}
	for i, p := range got {
		if !used[i] {
			t.Errorf("unexpected problem %s (pointer %s)", p, p.Pointer)
		}
	}
}

func TestProblemsInJSON(t *testing.T) {
	t.Parallel()
	src := "{\n  \"apiVersion\": \"moat/v1\",\n  \"kind\": \"Workflow\",\n  \"name\": \"t\",\n" +
		"  \"steps\": [\n    {\"id\": \"a\", \"uses\": \"transform\", \"extra\": true},\n" +
		"    {\"id\": \"b\", \"uses\": \"transform\", \"with\": {\"value\": \"{{ steps.zz }}\"}}\n  ]\n}\n"
	checkProblems(t, loadProblems(t, "wf.json", src), []wantProblem{
		{6, 38, `unknown field "extra" in a step`},
		{7, 47, `there is no step "zz"`},
	})
}

func TestJSONSyntaxError(t *testing.T) {
	t.Parallel()
	checkProblems(t, loadProblems(t, "wf.json", "{\n  \"a\": 1,\n  \"b\" 2\n}\n"), []wantProblem{
		{3, 7, "invalid JSON: invalid character '2' after object key"},
	})
}

func TestLimits(t *testing.T) {
	t.Parallel()
	var many strings.Builder
	many.WriteString(hdr + "steps:\n")
	for i := range MaxSteps + 1 {
		fmt.Fprintf(&many, "  - {id: s%d, uses: transform}\n", i)
	}
	var exprs strings.Builder
	exprs.WriteString(hdr + "steps:\n  - id: a\n    uses: transform\n    with:\n      value:\n")
	for i := range MaxExpressions + 1 {
		fmt.Fprintf(&exprs, "        - \"{{ %d }}\"\n", i)
	}
	large := hdr + "description: \"" + strings.Repeat("x", MaxSourceBytes) + "\"\n"
	deep := hdr + "steps:\n  - id: a\n    uses: transform\n    with: {value: " + strings.Repeat("[", 40) + strings.Repeat("]", 40) + "}\n"
	tests := []struct {
		name string
		src  string
		want []wantProblem
	}{
		{"too many steps", many.String(), []wantProblem{{4, 1, "the workflow has 501 steps; the limit is 500"}}},
		{"too many expressions", exprs.String(), []wantProblem{{2009, 11, "more than 2000 expressions"}}},
		{"expression too long", hdr + "steps:\n  - id: a\n    uses: transform\n    with: {value: \"{{ '" + strings.Repeat("x", MaxExprBytes) + "' }}\"}\n",
			[]wantProblem{{7, 12, "the expression is 4098 bytes; the limit is 4096"}}},
		{"too deep", deep, []wantProblem{{7, 47, "values are nested more than 32 levels deep"}}},
		{"too large", large, []wantProblem{{0, 0, fmt.Sprintf("the definition is %d bytes; the limit is 1048576 (1 MiB)", len(large))}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkProblems(t, loadProblems(t, "wf.yaml", tt.src), tt.want)
		})
	}
}

// TestManyProblemsAtOnce compares every problem of a broken definition
// with a golden file.
func TestManyProblemsAtOnce(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("testdata/broken.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Load("broken.yaml", src, testNodes)
	if err == nil {
		t.Fatal("broken.yaml loaded")
	}
	got := err.Error() + "\n"
	if *update {
		if err := os.WriteFile("testdata/broken.golden", []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("testdata/broken.golden")
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("problems differ from testdata/broken.golden (go test -run ManyProblems -update):\ngot:\n%s\nwant:\n%s", got, want)
	}
}

var update = flag.Bool("update", false, "rewrite golden files")

func TestProblemString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{File: "a.yaml", Line: 3, Col: 5, Pointer: "/x", Message: "m"}, "a.yaml:3:5: m"},
		{Problem{File: "a.yaml", Line: 3, Pointer: "/x", Message: "m"}, "a.yaml:3: m"},
		{Problem{File: "a.yaml", Pointer: "/steps/0/id", Message: "m"}, "a.yaml: /steps/0/id: m"},
		{Problem{Pointer: "/steps/0/id", Message: "m"}, "/steps/0/id: m"},
		{Problem{File: "a.yaml", Message: "m"}, "a.yaml: m"},
		{Problem{Line: 2, Col: 1, Message: "m"}, "2:1: m"},
		{Problem{Message: "m"}, "m"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.p, got, tt.want)
		}
	}
	ps := Problems{{File: "f", Line: 9, Col: 1, Message: "c"}, {File: "f", Pointer: "/a", Message: "d"}, {File: "f", Line: 2, Col: 7, Message: "b"}, {File: "f", Line: 2, Col: 3, Message: "a"}}
	if got, want := ps.Error(), "f:2:3: a\nf:2:7: b\nf:9:1: c\nf: /a: d"; got != want {
		t.Errorf("Problems.Error:\n%s\nwant:\n%s", got, want)
	}
}

func TestPositionsLookup(t *testing.T) {
	t.Parallel()
	_, pos, err := Parse("wf.yaml", []byte(hdr+"steps:\n  - id: a\n    uses: transform\n    with:\n      url: x\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ptr       string
		line, col int
		ok        bool
	}{
		{"", 1, 1, true},
		{"/name", 3, 1, true},
		{"/steps/0", 5, 5, true},
		{"/steps/0/with/url", 8, 7, true},
		{"/steps/0/with/url/deeper/still", 8, 7, true},
		{"/steps/0/retry/maxAttempts", 5, 5, true},
		{"/nope", 1, 1, true},
	}
	for _, tt := range tests {
		line, col, ok := pos.Lookup(tt.ptr)
		if line != tt.line || col != tt.col || ok != tt.ok {
			t.Errorf("Lookup(%q) = %d, %d, %v; want %d, %d, %v", tt.ptr, line, col, ok, tt.line, tt.col, tt.ok)
		}
	}
	var none *Positions
	if _, _, ok := none.Lookup("/a"); ok {
		t.Error("nil Positions found a position")
	}
}

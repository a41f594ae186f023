package api_test

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const greetV1 = `apiVersion: moat/v1
kind: Workflow
name: greet
project: wfp
input:
  schema:
    type: object
    required: [name]
    properties:
      name: {type: string, maxLength: 100}
steps:
  - id: hello
    uses: transform
    with:
      set:
        greeting: '"hello " + input.name'
`

// greetJSON is greetV1 written as JSON: the same model, so the same version.
const greetJSON = `{"apiVersion":"moat/v1","kind":"Workflow","name":"greet","project":"wfp",
 "input":{"schema":{"type":"object","required":["name"],"properties":{"name":{"type":"string","maxLength":100}}}},
 "steps":[{"id":"hello","uses":"transform","with":{"set":{"greeting":"\"hello \" + input.name"}}}]}`

var greetV2 = strings.Replace(greetV1, `'"hello " + input.name'`, `'"hi " + input.name'`, 1)

func saveBody(filename, source string) map[string]any {
	return map[string]any{"filename": filename, "source": source}
}

func TestWorkflowsSaveAndRead(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	var v1 savedWorkflow
	sameVersion := func(t *testing.T, _ *stack, res *response) {
		var got savedWorkflow
		res.Decode(t, &got)
		if got.Version.ID != v1.Version.ID || got.Version.Number != 1 || got.Created {
			t.Errorf("got version %+v created=%v, want the first version %s unchanged", got.Version, got.Created, v1.Version.ID)
		}
	}
	s.runScenarios(t, []scenario{
		{
			name: "save a new definition", method: http.MethodPost, path: "/api/v1/workflows", body: saveBody("greet.yaml", greetV1),
			wantStatus:   http.StatusCreated,
			wantContains: []string{`"created":true`, `"number":1`, `"name":"greet"`, `"project":"wfp"`, `"latestVersion":1`},
			// The save answer is short: the definition is fetched per version.
			wantNotContains: []string{`"source"`},
			after: func(t *testing.T, _ *stack, res *response) {
				res.Decode(t, &v1)
				if v1.Version.ID == "" || len(v1.Version.Hash) != 64 {
					t.Errorf("version %+v", v1.Version)
				}
			},
		},
		{
			name: "the same again makes no version", method: http.MethodPost, path: "/api/v1/workflows", body: saveBody("greet.yaml", greetV1),
			wantStatus: http.StatusOK, wantContains: []string{`"created":false`}, after: sameVersion,
		},
		{
			name: "a comment is not a change", method: http.MethodPost, path: "/api/v1/workflows",
			body:       saveBody("greet.yaml", "# says hello\n"+strings.Replace(greetV1, "steps:\n", "steps: # one step\n", 1)),
			wantStatus: http.StatusOK, wantContains: []string{`"created":false`}, after: sameVersion,
		},
		{
			name: "the same model in JSON is not a change", method: http.MethodPost, path: "/api/v1/workflows",
			body:       saveBody("greet.json", greetJSON),
			wantStatus: http.StatusOK, wantContains: []string{`"created":false`}, after: sameVersion,
		},
		{
			name: "a change makes version 2", method: http.MethodPost, path: "/api/v1/workflows", body: saveBody("greet.yaml", greetV2),
			wantStatus: http.StatusCreated, wantContains: []string{`"created":true`, `"number":2`, `"latestVersion":2`},
			after: func(t *testing.T, _ *stack, res *response) {
				var v2 savedWorkflow
				res.Decode(t, &v2)
				if v2.Version.ID == v1.Version.ID || v2.Workflow.ID != v1.Workflow.ID || v2.Version.Hash == v1.Version.Hash {
					t.Errorf("v2 %+v should be a new version of workflow %s", v2, v1.Workflow.ID)
				}
			},
		},
		{
			name: "going back to v1's content makes version 3", method: http.MethodPost, path: "/api/v1/workflows", body: saveBody("greet.yaml", greetV1),
			wantStatus: http.StatusCreated, wantContains: []string{`"created":true`, `"number":3`},
		},
		{
			name: "a definition without filename", method: http.MethodPost, path: "/api/v1/workflows",
			body:       map[string]any{"source": strings.Replace(greetV1, "name: greet", "name: other", 1)},
			wantStatus: http.StatusCreated, wantContains: []string{`"name":"other"`},
		},
		{
			name: "list the project's workflows", method: http.MethodGet, path: "/api/v1/projects/wfp/workflows",
			wantStatus: http.StatusOK, wantContains: []string{`"name":"greet"`, `"name":"other"`},
		},
		{
			name: "the project was created on the way", method: http.MethodGet, path: "/api/v1/projects/wfp",
			wantStatus: http.StatusOK, wantContains: []string{`"name":"wfp"`},
		},
		{
			name: "an empty project lists no workflows", method: http.MethodGet, path: "/api/v1/projects/empty/workflows",
			before:     func(t *testing.T, s *stack) { s.must(t, http.MethodPut, "/api/v1/projects/empty", `{}`, http.StatusOK) },
			wantStatus: http.StatusOK, wantContains: []string{`{"workflows":[]}`},
		},
		{
			name: "get a workflow with its versions", method: http.MethodGet, path: "/api/v1/projects/wfp/workflows/greet",
			wantStatus: http.StatusOK, wantContains: []string{`"name":"greet"`, `"versions":[`, `"number":1`, `"number":2`, `"number":3`},
			wantNotContains: []string{`"source"`, `"definition"`},
		},
		{
			name: "get version 1 with definition and source", method: http.MethodGet, path: "/api/v1/projects/wfp/workflows/greet/versions/1",
			wantStatus: http.StatusOK,
			wantContains: []string{`"number":1`, `"definition":{`, `"apiVersion":"moat/v1"`, `"source":"apiVersion: moat/v1\nkind: Workflow\nname: greet`,
				`\"hello \" + input.name`},
			after: func(t *testing.T, _ *stack, res *response) {
				if got := res.JSON(t)["source"]; got != greetV1 {
					t.Errorf("source = %q, want what was saved first", got)
				}
			},
		},
		{
			name: "get version 2", method: http.MethodGet, path: "/api/v1/projects/wfp/workflows/greet/versions/2",
			wantStatus: http.StatusOK, wantContains: []string{`"number":2`, `\"hi \" + input.name`},
		},
		{name: "unknown version", method: http.MethodGet, path: "/api/v1/projects/wfp/workflows/greet/versions/4", wantStatus: http.StatusNotFound},
		{name: "version 0", method: http.MethodGet, path: "/api/v1/projects/wfp/workflows/greet/versions/0", wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"path.number"}},
		{name: "version not a number", method: http.MethodGet, path: "/api/v1/projects/wfp/workflows/greet/versions/latest", wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"path.number"}},
		{name: "version overflowing int", method: http.MethodGet, path: "/api/v1/projects/wfp/workflows/greet/versions/99999999999999999999999", wantStatus: http.StatusUnprocessableEntity},
		{name: "unknown workflow", method: http.MethodGet, path: "/api/v1/projects/wfp/workflows/nope", wantStatus: http.StatusNotFound, wantContains: []string{`"status":404`}},
		{name: "unknown workflow's version", method: http.MethodGet, path: "/api/v1/projects/wfp/workflows/nope/versions/1", wantStatus: http.StatusNotFound},
		{name: "unknown project's workflows", method: http.MethodGet, path: "/api/v1/projects/nope/workflows", wantStatus: http.StatusNotFound},
		{name: "unknown project's workflow", method: http.MethodGet, path: "/api/v1/projects/nope/workflows/greet", wantStatus: http.StatusNotFound},
		{name: "workflow name too long", method: http.MethodGet, path: "/api/v1/projects/wfp/workflows/" + strings.Repeat("w", 64), wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"path.name"}},
	})
}

func TestWorkflowsInvalidDefinitions(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	head := "apiVersion: moat/v1\nkind: Workflow\nname: bad\nproject: wfp\nsteps:\n" // steps start on line 6
	tests := []struct {
		name     string
		source   string
		message  string // in one problem's message
		wantLine []int  // that problem's line is one of these
	}{
		{
			name:    "bad CEL",
			source:  head + "  - id: hello\n    uses: transform\n    with:\n      set:\n        greeting: 'input.name +'\n",
			message: "invalid expression", wantLine: []int{10},
		},
		{
			name:    "bad CEL in a template",
			source:  head + "  - id: hello\n    uses: respond\n    with:\n      body: {x: '{{ input. }}'}\n",
			message: "invalid expression", wantLine: []int{9},
		},
		{
			name:    "unknown node type",
			source:  head + "  - id: hello\n    uses: nosuch\n",
			message: `unknown node type "nosuch"`, wantLine: []int{7},
		},
		{
			name: "cycle",
			source: head + "  - {id: a, uses: transform, needs: [b], with: {set: {x: '1'}}}\n" +
				"  - {id: b, uses: transform, needs: [a], with: {set: {x: '1'}}}\n",
			message: "cycle", wantLine: []int{6, 7},
		},
		{
			name:    "reference to a missing step",
			source:  head + "  - {id: a, uses: transform, with: {set: {x: 'steps.nope.output'}}}\n",
			message: `no step "nope"`, wantLine: []int{6},
		},
		{
			name:    "unknown field",
			source:  "apiVersion: moat/v1\nkind: Workflow\nname: bad\nproject: wfp\nbogus: 1\nsteps:\n  - {id: a, uses: transform, with: {set: {x: '1'}}}\n",
			message: `unknown field "bogus"`, wantLine: []int{5},
		},
		{
			name:    "settings that fail the node's schema",
			source:  head + "  - {id: a, uses: wait, with: {duration: 1h, until: soon, forever: true}}\n",
			message: `unknown field "forever"`, wantLine: []int{6},
		},
		{
			name:    "YAML alias (billion laughs)",
			source:  head + "  - id: a\n    uses: transform\n    with: &x {set: *x}\n",
			message: "aliases", wantLine: []int{8},
		},
		{
			name:    "invalid webhook path",
			source:  "apiVersion: moat/v1\nkind: Workflow\nname: bad\nproject: wfp\ntrigger: {webhook: {path: '../admin'}}\nsteps:\n  - {id: a, uses: transform, with: {set: {x: '1'}}}\n",
			message: "webhook path", wantLine: []int{5},
		},
		{
			name:    "two documents",
			source:  head + "  - {id: a, uses: transform, with: {set: {x: '1'}}}\n---\nname: again\n",
			message: "single YAML document", wantLine: []int{7, 8},
		},
		{
			name:    "broken YAML",
			source:  head + "  - id: [a\n",
			message: "YAML", wantLine: []int{6, 7},
		},
	}
	located := regexp.MustCompile(`^my\.yaml:(\d+)(:\d+)?$`)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := s.do(t, http.MethodPost, "/api/v1/workflows", "", saveBody("my.yaml", tc.source), nil)
			if res.Status != http.StatusUnprocessableEntity {
				t.Fatalf("status %d, want 422\n%s", res.Status, res.Body)
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q", ct)
			}
			var p problemBody
			res.Decode(t, &p)
			if len(p.Errors) == 0 || !strings.Contains(p.Detail, "problem") {
				t.Fatalf("no problems listed:\n%s", p)
			}
			found := false
			for _, e := range p.Errors {
				m := located.FindStringSubmatch(e.Location)
				if m == nil {
					t.Errorf("location %q is not my.yaml:LINE:COL", e.Location)
					continue
				}
				line, _ := strconv.Atoi(m[1])
				if strings.Contains(e.Message, tc.message) && slices.Contains(tc.wantLine, line) {
					found = true
				}
			}
			if !found {
				t.Errorf("no problem mentioning %q on line %v:\n%s", tc.message, tc.wantLine, p)
			}
		})
	}
	t.Run("a column is given when one is known", func(t *testing.T) {
		res := s.do(t, http.MethodPost, "/api/v1/workflows", "", saveBody("my.yaml", tests[2].source), nil)
		var p problemBody
		res.Decode(t, &p)
		if len(p.Errors) != 1 || !regexp.MustCompile(`^my\.yaml:7:\d+$`).MatchString(p.Errors[0].Location) {
			t.Errorf("want one problem at my.yaml:7:COL:\n%s", p)
		}
	})
	t.Run("without filename the location names the workflow", func(t *testing.T) {
		res := s.do(t, http.MethodPost, "/api/v1/workflows", "", map[string]any{"source": tests[2].source}, nil)
		if res.Status != http.StatusUnprocessableEntity || !strings.Contains(string(res.Body), `"location":"workflow:7:`) {
			t.Errorf("status %d\n%s", res.Status, res.Body)
		}
	})
	t.Run("nothing was saved", func(t *testing.T) {
		res := s.do(t, http.MethodGet, "/api/v1/projects/wfp/workflows/bad", "", nil, nil)
		if res.Status != http.StatusNotFound {
			t.Errorf("status %d, want 404\n%s", res.Status, res.Body)
		}
	})
}

func TestWorkflowsRequestShape(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.runScenarios(t, []scenario{
		{name: "empty source", method: http.MethodPost, path: "/api/v1/workflows", body: `{"source":""}`, wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"body.source"}},
		{name: "no source", method: http.MethodPost, path: "/api/v1/workflows", body: `{"filename":"x.yaml"}`, wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"source"}},
		{name: "comments only", method: http.MethodPost, path: "/api/v1/workflows", body: `{"source":"# nothing\n"}`, wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"empty"}},
		{name: "unknown field", method: http.MethodPost, path: "/api/v1/workflows", body: map[string]any{"source": greetV1, "publish": true}, wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"body.publish"}},
		{name: "source of the wrong type", method: http.MethodPost, path: "/api/v1/workflows", body: `{"source":{"apiVersion":"moat/v1"}}`, wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"body.source"}},
		{name: "malformed JSON", method: http.MethodPost, path: "/api/v1/workflows", body: `{"source":"x`, wantStatus: http.StatusBadRequest},
		{name: "filename too long", method: http.MethodPost, path: "/api/v1/workflows", body: map[string]any{"source": greetV1, "filename": strings.Repeat("f", 256)}, wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"body.filename"}},
		{name: "source over 1 MiB", method: http.MethodPost, path: "/api/v1/workflows", body: map[string]any{"source": strings.Repeat("#", 1<<20+1)}, wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"body.source"}},
		{name: "body over the limit", method: http.MethodPost, path: "/api/v1/workflows", body: map[string]any{"source": strings.Repeat("\n", 1<<20)}, wantStatus: http.StatusRequestEntityTooLarge},
		{name: "deeply nested YAML", method: http.MethodPost, path: "/api/v1/workflows", body: saveBody("deep.yaml", strings.Repeat("[", 100000)+strings.Repeat("]", 100000)), wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"deep.yaml:1"}},
		{name: "deeply nested JSON", method: http.MethodPost, path: "/api/v1/workflows", body: saveBody("deep.json", strings.Repeat(`{"a":`, 20000)+"1"+strings.Repeat("}", 20000)), wantStatus: http.StatusUnprocessableEntity},
		{name: "binary garbage", method: http.MethodPost, path: "/api/v1/workflows", body: saveBody("bin.yaml", "\x00\xff\xfe\x01"), wantStatus: http.StatusUnprocessableEntity},
		{name: "huge expression", method: http.MethodPost, path: "/api/v1/workflows", body: saveBody("big.yaml", "apiVersion: moat/v1\nkind: Workflow\nname: big\nsteps:\n  - {id: a, uses: transform, with: {set: {x: '"+strings.Repeat("1+", 50000)+"1'}}}\n"), wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"limit"}},
		{name: "many steps", method: http.MethodPost, path: "/api/v1/workflows", body: saveBody("many.yaml", manySteps(5000)), wantStatus: http.StatusUnprocessableEntity},
	})
}

func manySteps(n int) string {
	var b strings.Builder
	b.WriteString("apiVersion: moat/v1\nkind: Workflow\nname: many\nsteps:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - {id: s%d, uses: transform, with: {set: {x: '1'}}}\n", i)
	}
	return b.String()
}

func TestWorkflowsWebhookPathConflict(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	hooked := func(name, path string) string {
		return fmt.Sprintf("apiVersion: moat/v1\nkind: Workflow\nname: %s\nproject: hooks\ntrigger: {webhook: {path: %s}}\nsteps:\n  - {id: a, uses: transform, with: {set: {x: '1'}}}\n", name, path)
	}
	s.runScenarios(t, []scenario{
		{name: "first takes the path", method: http.MethodPost, path: "/api/v1/workflows", body: saveBody("a.yaml", hooked("first", "orders/new")),
			wantStatus: http.StatusCreated, wantContains: []string{`"webhookPath":"orders/new"`}},
		{name: "another workflow cannot take it", method: http.MethodPost, path: "/api/v1/workflows", body: saveBody("b.yaml", hooked("second", "orders/new")),
			wantStatus: http.StatusConflict, wantContains: []string{`"status":409`}},
		{name: "the refused workflow was not created", method: http.MethodGet, path: "/api/v1/projects/hooks/workflows/second", wantStatus: http.StatusNotFound},
		{name: "the owner may save it again", method: http.MethodPost, path: "/api/v1/workflows", body: saveBody("a.yaml", hooked("first", "orders/new")+"# again\n"),
			wantStatus: http.StatusOK, wantContains: []string{`"created":false`}},
		{name: "a workflow in another project cannot take it either", method: http.MethodPost, path: "/api/v1/workflows",
			body:       saveBody("c.yaml", strings.Replace(hooked("third", "orders/new"), "project: hooks", "project: other", 1)),
			wantStatus: http.StatusConflict},
		{name: "the owner moves to another path", method: http.MethodPost, path: "/api/v1/workflows", body: saveBody("a.yaml", hooked("first", "orders/v2")),
			wantStatus: http.StatusCreated, wantContains: []string{`"number":2`}},
		{name: "the freed path can be taken", method: http.MethodPost, path: "/api/v1/workflows", body: saveBody("b.yaml", hooked("second", "orders/new")),
			wantStatus: http.StatusCreated},
	})
}

// TestWorkflowsIDPrefixes: ids name what they identify, as prj_, run_,
// task_ and tok_ do.
func TestWorkflowsIDPrefixes(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	saved := s.saveWorkflow(t, "greet.yaml", greetV1)
	project := s.must(t, http.MethodGet, "/api/v1/projects/wfp", nil, http.StatusOK).JSON(t)
	id, _ := project["id"].(string)
	if !strings.HasPrefix(id, "prj_") {
		t.Errorf("project id %q, want prj_…", id)
	}
	if strings.HasPrefix(saved.Version.ID, "wf_") {
		t.Errorf("version id %q shares the workflow prefix", saved.Version.ID)
	}
}

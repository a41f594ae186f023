package api_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const ticket = `{"email":"ada@example.com","subject":"Urgent: refund please","body":"I want a refund for order 7 ` + payloadCanary + `","amount":12.5}`

func TestHooksTicketTriage(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.saveWorkflow(t, "ticket-triage.yaml", example(t, "ticket-triage.yaml"))
	s.saveWorkflow(t, "fire.yaml", `apiVersion: moat/v1
kind: Workflow
name: fire-and-forget
project: support
trigger: {webhook: {path: events/new}}
steps:
  - {id: note, uses: transform, with: {set: {seen: 'true'}}}
`)
	runIDFromBody := func(t *testing.T, _ *stack, res *response) {
		body := res.JSON(t)
		id := res.Header.Get("X-Moat-Run-Id")
		if id == "" || body["run"] != id {
			t.Errorf("X-Moat-Run-Id %q, body run %v", id, body["run"])
		}
		// The run was started by the webhook with the body as its input.
		run := s.must(t, http.MethodGet, "/api/v1/runs/"+id, nil, http.StatusOK, http.StatusAccepted)
		var v runView
		run.Decode(t, &v)
		if v.Trigger != "webhook" || !strings.Contains(string(v.Input), `"ada@example.com"`) {
			t.Errorf("run trigger %q input %s", v.Trigger, v.Input)
		}
	}
	s.runScenarios(t, []scenario{
		{
			name: "a refund: the respond step's status and body", method: http.MethodPost, path: "/hooks/tickets", body: ticket,
			wantStatus: http.StatusAccepted, wantContains: []string{`"category":"refund"`, `"run":"run_`},
			wantHeaders: map[string]string{"X-Moat-Run-Id": "run_", "Content-Type": "application/json", "X-Content-Type-Options": "nosniff"},
			after: func(t *testing.T, s *stack, res *response) {
				runIDFromBody(t, s, res)
				// The run goes on after answering: it waits for a reviewer.
				id := res.Header.Get("X-Moat-Run-Id")
				s.awaitRun(t, id, func(r runView) bool { return r.Status == "waiting" })
				s.must(t, http.MethodGet, "/api/v1/tasks?run="+id, nil, http.StatusOK)
			},
		},
		{
			name: "a question", method: http.MethodPost, path: "/hooks/tickets",
			body:       `{"email":"bob@example.com","subject":"hours","body":"When are you open?"}`,
			wantStatus: http.StatusAccepted, wantContains: []string{`"category":"question"`},
			after: func(t *testing.T, s *stack, res *response) {
				s.awaitRun(t, res.Header.Get("X-Moat-Run-Id"), func(r runView) bool {
					st, _ := r.step("close")
					return r.Status == "succeeded" && st == "succeeded"
				})
			},
		},
		{
			name: "a JSON media type with parameters", method: http.MethodPost, path: "/hooks/tickets", body: ticket,
			headers:    map[string]string{"Content-Type": "application/json; charset=utf-8"},
			wantStatus: http.StatusAccepted,
		},
		{
			name: "no Content-Type is read as JSON", method: http.MethodPost, path: "/hooks/tickets", body: ticket,
			headers:    map[string]string{"Content-Type": ""},
			wantStatus: http.StatusAccepted,
		},
		{
			name: "a body that fails the schema", method: http.MethodPost, path: "/hooks/tickets",
			body:       `{"email":"not-an-email","subject":"","extra":"` + payloadCanary + `"}`,
			wantStatus: http.StatusUnprocessableEntity,
			wantContains: []string{"does not match the workflow's input schema",
				`"location":"body/email"`, `"location":"body/subject"`, `"location":"body/extra"`, `missing required field \"body\"`},
			wantNotContains: []string{"X-Moat-Run-Id"},
			after: func(t *testing.T, _ *stack, res *response) {
				var p problemBody
				res.Decode(t, &p)
				for _, loc := range p.locations() {
					if loc != "body" && !strings.HasPrefix(loc, "body/") {
						t.Errorf("location %q does not start with body/", loc)
					}
				}
				if res.Header.Get("X-Moat-Run-Id") != "" {
					t.Error("a refused body started a run")
				}
			},
		},
		{
			name: "a body that is not an object", method: http.MethodPost, path: "/hooks/tickets", body: `[1,2]`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{`"location":"body"`, "want object"},
		},
		{
			name: "an empty body is an empty input", method: http.MethodPost, path: "/hooks/tickets", body: ``,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{`missing required field \"email\"`},
		},
		{
			name: "malformed JSON", method: http.MethodPost, path: "/hooks/tickets", body: `{"email":`,
			wantStatus: http.StatusBadRequest, wantContains: []string{"malformed JSON body", `"location":"body"`},
		},
		{
			name: "trailing garbage after the JSON", method: http.MethodPost, path: "/hooks/tickets", body: ticket + `{}`,
			wantStatus: http.StatusBadRequest, wantContains: []string{"malformed JSON body"},
		},
		{
			name: "JSON nested too deep", method: http.MethodPost, path: "/hooks/tickets",
			body:       `{"email":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`,
			wantStatus: http.StatusBadRequest, wantContains: []string{"malformed JSON body", "depth"},
		},
		{
			name: "wrong Content-Type", method: http.MethodPost, path: "/hooks/tickets", body: ticket,
			headers:    map[string]string{"Content-Type": "text/plain"},
			wantStatus: http.StatusUnsupportedMediaType, wantContains: []string{"Content-Type: application/json"},
		},
		{
			name: "a form is not JSON", method: http.MethodPost, path: "/hooks/tickets", body: "email=a%40b.c",
			headers:    map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
			wantStatus: http.StatusUnsupportedMediaType,
		},
		{
			name: "an unparsable Content-Type", method: http.MethodPost, path: "/hooks/tickets", body: ticket,
			headers:    map[string]string{"Content-Type": "application/json; ===="},
			wantStatus: http.StatusUnsupportedMediaType,
		},
		{
			name: "over 1 MiB", method: http.MethodPost, path: "/hooks/tickets",
			body:       `{"email":"a@b.c","subject":"s","body":"` + strings.Repeat("x", 1<<20) + `"}`,
			wantStatus: http.StatusRequestEntityTooLarge, wantContains: []string{"1 MiB"},
		},
		{
			name: "unknown path", method: http.MethodPost, path: "/hooks/nothing-here", body: ticket,
			wantStatus: http.StatusNotFound, wantContains: []string{"/hooks/nothing-here"},
		},
		{
			name: "paths are case-sensitive", method: http.MethodPost, path: "/hooks/TICKETS", body: ticket,
			wantStatus: http.StatusNotFound,
		},
		{
			name: "no path", method: http.MethodPost, path: "/hooks/", body: ticket,
			wantStatus: http.StatusNotFound,
		},
		{
			name: "hooks take POST only", method: http.MethodGet, path: "/hooks/tickets",
			wantStatus: http.StatusMethodNotAllowed, wantHeaders: map[string]string{"Allow": "POST"},
		},
		{
			name: "a workflow without respond step: 202 with the run id", method: http.MethodPost, path: "/hooks/events/new", body: `{"any":"thing"}`,
			wantStatus: http.StatusAccepted, wantContains: []string{`"runId":"run_`},
			wantHeaders: map[string]string{"X-Moat-Run-Id": "run_", "Content-Type": "application/json"},
			after: func(t *testing.T, _ *stack, res *response) {
				if id := res.Header.Get("X-Moat-Run-Id"); res.JSON(t)["runId"] != id {
					t.Errorf("runId %v, header %q", res.JSON(t)["runId"], id)
				}
			},
		},
	})
}

// TestHooksRespondOutcomes covers how a run's course decides the webhook's
// answer.
func TestHooksRespondOutcomes(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	hook := func(name, steps string) string {
		return fmt.Sprintf("apiVersion: moat/v1\nkind: Workflow\nname: %s\nproject: outcomes\ntrigger: {webhook: {path: %s}}\n"+
			"input: {schema: {type: object, properties: {kind: {type: string}, x: {type: string}}}}\nsteps:\n%s", name, name, steps)
	}
	s.saveWorkflow(t, "a.yaml", hook("fails-first", fmt.Sprintf(
		"  - {id: call, uses: http.request, retry: {maxAttempts: 1}, with: {url: %q}}\n"+
			"  - {id: ack, uses: respond, with: {status: 200, body: {ok: true}}}\n", failing.URL)))
	s.saveWorkflow(t, "b.yaml", hook("branchy",
		"  - id: route\n    uses: switch\n    with:\n      cases:\n        - {when: 'input.kind == \"answer\"', next: ack}\n      default: quiet\n"+
			"  - {id: ack, uses: respond, with: {status: 201, body: {answered: true}}}\n"+
			"  - {id: quiet, uses: transform, with: {set: {x: '1'}}}\n"))
	s.saveWorkflow(t, "c.yaml", hook("headers",
		"  - id: ack\n    uses: respond\n    with:\n      status: 200\n      headers: {X-Custom: yes, Cache-Control: max-age=60, X-Content-Type-Options: sniff, "+
			"X-Frame-Options: ALLOWALL, X-Moat-Run-Id: forged}\n      body: {echo: '{{ input.x }}'}\n"))
	s.saveWorkflow(t, "d.yaml", hook("informational",
		"  - {id: ack, uses: respond, with: {status: '{{ 100 + 1 }}', body: {x: 1}}}\n"))
	s.saveWorkflow(t, "f.yaml", hook("bad-input",
		"  - {id: parse, uses: transform, with: {set: {n: 'int(input.x)'}}}\n"+
			"  - {id: ack, uses: respond, with: {status: 200, body: {n: '{{ steps.parse.output.n }}'}}}\n"))
	s.saveWorkflow(t, "e.yaml", hook("no-content",
		"  - {id: ack, uses: respond, with: {status: 204}}\n"))

	s.runScenarios(t, []scenario{
		{
			name: "the run fails before it responds: 502", method: http.MethodPost, path: "/hooks/fails-first", body: `{}`,
			wantStatus: http.StatusBadGateway, wantContains: []string{"failed before it responded"},
			wantHeaders: map[string]string{"X-Moat-Run-Id": "run_"},
		},
		{
			name: "the branch with the respond step", method: http.MethodPost, path: "/hooks/branchy", body: `{"kind":"answer"}`,
			wantStatus: http.StatusCreated, wantContains: []string{`{"answered":true}`},
		},
		{
			name: "the respond step is on a branch not taken: 202", method: http.MethodPost, path: "/hooks/branchy", body: `{"kind":"other"}`,
			wantStatus: http.StatusAccepted, wantContains: []string{`"runId":"run_`, `"status":"succeeded"`},
		},
		{
			name: "respond headers are sent, but not over Moat's own", method: http.MethodPost, path: "/hooks/headers", body: `{"x":"<b>hi</b>"}`,
			wantStatus: http.StatusOK, wantContains: []string{`"echo":"\u003cb\u003ehi\u003c/b\u003e"`},
			wantHeaders: map[string]string{"X-Custom": "yes", "Cache-Control": "max-age=60", "X-Content-Type-Options": "nosniff",
				"X-Frame-Options": "DENY", "X-Moat-Run-Id": "run_"},
		},
		{
			name: "a 1xx status from a template fails the step", method: http.MethodPost, path: "/hooks/informational", body: `{}`,
			wantStatus: http.StatusBadGateway, wantContains: []string{"failed before it responded", "101 is not a final HTTP status"},
		},
		{
			name: "a step fails on the input: 502, and the input stays out of the log", method: http.MethodPost, path: "/hooks/bad-input",
			body:       `{"x":"` + payloadCanary + `"}`,
			wantStatus: http.StatusBadGateway, wantContains: []string{"failed before it responded"},
		},
		{
			name: "204 without a body", method: http.MethodPost, path: "/hooks/no-content", body: `{}`,
			wantStatus: http.StatusNoContent,
		},
	})
}

// TestHooksRespondStatusValidated: a respond step's status is an answer's
// status, so saving a 1xx should be refused where the definition is checked.
func TestHooksRespondStatusValidated(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	res := s.do(t, http.MethodPost, "/api/v1/workflows", "", saveBody("r.yaml",
		"apiVersion: moat/v1\nkind: Workflow\nname: r\ntrigger: {webhook: {path: r}}\nsteps:\n  - {id: a, uses: respond, with: {status: 101}}\n"), nil)
	if res.Status != http.StatusUnprocessableEntity || !strings.Contains(string(res.Body), "r.yaml:6:") {
		t.Fatalf("status %d, want 422 at r.yaml:6\n%s", res.Status, res.Body)
	}
}

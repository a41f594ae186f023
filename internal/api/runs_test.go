package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
)

const waiterYAML = `apiVersion: moat/v1
kind: Workflow
name: waiter
project: wfp
steps:
  - id: first
    uses: transform
    with: {set: {x: '1'}}
  - id: nap
    uses: wait
    with: {duration: 1h}
  - id: after
    uses: transform
    with: {set: {done: 'true'}}
`

// greetLater calls an HTTP endpoint before greeting, so a run is still
// going when the start answers (pure steps may run inside the start's own
// transaction; an effect is a job of its own).
func greetLater(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(srv.Close)
	return strings.NewReplacer("name: greet", "name: greet-later",
		"steps:\n", "steps:\n  - {id: fetch, uses: http.request, with: {url: \""+srv.URL+"/ping\"}}\n").Replace(greetV1)
}

func TestRunsStartAndGet(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.saveWorkflow(t, "greet.yaml", greetV1)
	s.saveWorkflow(t, "waiter.yaml", waiterYAML)
	s.saveWorkflow(t, "greet-later.yaml", greetLater(t))
	var started runView
	s.runScenarios(t, []scenario{
		{
			name: "start answers 202 with the run", method: http.MethodPost, path: "/api/v1/projects/wfp/workflows/waiter/runs", body: `{}`,
			wantStatus: http.StatusAccepted, wantContains: []string{`"id":"run`, `"trigger":"api"`},
		},
		{
			name: "start with valid input", method: http.MethodPost, path: "/api/v1/projects/wfp/workflows/greet-later/runs",
			body:       `{"input":{"name":"Ada"}}`,
			wantStatus: http.StatusAccepted, wantContains: []string{`"id":"run`, `"input":{"name":"Ada"}`},
			wantNotContains: []string{`"output"`, `"status":"succeeded"`},
			after: func(t *testing.T, s *stack, res *response) {
				res.Decode(t, &started)
				s.set("run", started.ID)
			},
		},
		{
			name: "then get with wait: succeeded, with timeline and output", method: http.MethodGet,
			path:       "/api/v1/runs/{{run}}?wait=5s",
			wantStatus: http.StatusOK,
			wantContains: []string{`"status":"succeeded"`, `"output":{"greeting":"hello Ada"}`,
				`"steps":[{"id":"fetch","uses":"http.request","status":"succeeded"`, `{"id":"hello","uses":"transform","status":"succeeded"`, `"finishedAt"`},
		},
		{
			name: "start and wait in one request", method: http.MethodPost, path: "/api/v1/projects/wfp/workflows/greet-later/runs?wait=5s",
			body:       `{"input":{"name":"Bob"}}`,
			wantStatus: http.StatusOK, wantContains: []string{`"status":"succeeded"`, `"greeting":"hello Bob"`},
		},
		{
			name: "wait 0s answers at once", method: http.MethodPost, path: "/api/v1/projects/wfp/workflows/waiter/runs?wait=0s",
			body: `{}`, wantStatus: http.StatusAccepted,
		},
		{
			name: "a short wait on a long run answers 202 with the current state", method: http.MethodPost,
			path: "/api/v1/projects/wfp/workflows/waiter/runs?wait=300ms", body: `{}`,
			wantStatus: http.StatusAccepted, wantContains: []string{`"id":"run`}, wantNotContains: []string{`"id":""`},
		},
		{
			name: "input failing the schema", method: http.MethodPost, path: "/api/v1/projects/wfp/workflows/greet/runs",
			body:       `{"input":{"name":5,"note":"` + payloadCanary + `"}}`,
			wantStatus: http.StatusUnprocessableEntity,
			wantContains: []string{"does not match the workflow's input schema", `"location":"body.input/name"`,
				"got number, want string"},
		},
		{
			name: "input over a schema limit", method: http.MethodPost, path: "/api/v1/projects/wfp/workflows/greet/runs",
			body:       `{"input":{"name":"` + strings.Repeat("x", 101) + `"}}`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{`"location":"body.input/name"`, "maxLength"},
		},
		{
			name: "missing input is checked too", method: http.MethodPost, path: "/api/v1/projects/wfp/workflows/greet/runs",
			body:       `{}`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{`"location":"body.input"`, `missing required field \"name\"`},
		},
		{
			name: "input that is not an object", method: http.MethodPost, path: "/api/v1/projects/wfp/workflows/greet/runs",
			body:       `{"input":"Ada"}`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{`"location":"body.input"`, "want object"},
		},
		{
			name: "deeply nested input", method: http.MethodPost, path: "/api/v1/projects/wfp/workflows/greet/runs",
			body:       `{"input":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{`"location":"body.input"`, "nested"},
		},
		{
			name: "number out of range", method: http.MethodPost, path: "/api/v1/projects/wfp/workflows/greet/runs",
			body: `{"input":{"name":"a","n":1e999}}`, wantStatus: http.StatusBadRequest,
		},
		{
			name: "unknown field next to input", method: http.MethodPost, path: "/api/v1/projects/wfp/workflows/greet/runs",
			body:       `{"input":{"name":"Ada"},"priority":9}`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"body.priority"},
		},
		{
			name: "body over 1 MiB", method: http.MethodPost, path: "/api/v1/projects/wfp/workflows/greet/runs",
			body: `{"input":{"name":"` + strings.Repeat("x", 1<<20) + `"}}`, wantStatus: http.StatusRequestEntityTooLarge,
		},
		{
			name: "a pinned version that does not exist", method: http.MethodPost, path: "/api/v1/projects/wfp/workflows/greet/runs",
			body: `{"input":{"name":"Ada"},"version":9}`, wantStatus: http.StatusNotFound,
		},
		{
			name: "version 0 is refused", method: http.MethodPost, path: "/api/v1/projects/wfp/workflows/greet/runs",
			body: `{"input":{"name":"Ada"},"version":-1}`, wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"body.version"},
		},
		{name: "unknown workflow", method: http.MethodPost, path: "/api/v1/projects/wfp/workflows/nope/runs", body: `{}`, wantStatus: http.StatusNotFound},
		{name: "unknown project", method: http.MethodPost, path: "/api/v1/projects/nope/workflows/greet/runs", body: `{}`, wantStatus: http.StatusNotFound},
		{name: "unknown run", method: http.MethodGet, path: "/api/v1/runs/run_nope", wantStatus: http.StatusNotFound, wantContains: []string{`"status":404`}},
		{name: "unknown run, waiting", method: http.MethodGet, path: "/api/v1/runs/run_nope?wait=1s", wantStatus: http.StatusNotFound},
		{name: "run id too long", method: http.MethodGet, path: "/api/v1/runs/" + strings.Repeat("r", 65), wantStatus: http.StatusUnprocessableEntity},
	})

	for _, wait := range []string{"abc", "2m", "-1s", "1h", "10", "5s5", "9999999999999999999s"} {
		for _, sc := range []scenario{
			{method: http.MethodPost, path: "/api/v1/projects/wfp/workflows/greet/runs?wait=" + url.QueryEscape(wait), body: `{"input":{"name":"Ada"}}`},
			{method: http.MethodGet, path: "/api/v1/runs/run_nope?wait=" + url.QueryEscape(wait)},
		} {
			sc.name = sc.method + " wait=" + wait
			sc.wantStatus = http.StatusUnprocessableEntity
			sc.wantContains = []string{`"location":"query.wait"`, "between 0s and 1m"}
			s.runScenarios(t, []scenario{sc})
		}
	}
}

// TestRunsStartConsistency: a run's HTTP status matches its state.
func TestRunsStartConsistency(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.saveWorkflow(t, "greet.yaml", greetV1)
	res := s.do(t, http.MethodPost, "/api/v1/projects/wfp/workflows/greet/runs", "", `{"input":{"name":"Ada"}}`, nil)
	var run runView
	res.Decode(t, &run)
	switch {
	case res.Status == http.StatusAccepted && !final(run.Status):
	case res.Status == http.StatusOK && final(run.Status):
	default:
		t.Fatalf("status %d with run status %q", res.Status, run.Status)
	}
	got := s.awaitRun(t, run.ID, func(r runView) bool { return final(r.Status) })
	if got.Status != "succeeded" || string(got.Output) != `{"greeting":"hello Ada"}` || string(got.Input) != `{"name":"Ada"}` {
		t.Fatalf("run %+v", got)
	}
	if st, ok := got.step("hello"); !ok || st != "succeeded" {
		t.Fatalf("steps %+v", got.Steps)
	}
}

func TestRunsPinnedVersion(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.saveWorkflow(t, "greet.yaml", greetV1)
	s.saveWorkflow(t, "greet.yaml", greetV2)
	s.runScenarios(t, []scenario{
		{name: "latest by default", method: http.MethodPost, path: "/api/v1/projects/wfp/workflows/greet/runs?wait=5s",
			body: `{"input":{"name":"Ada"}}`, wantStatus: http.StatusOK, wantContains: []string{`"greeting":"hi Ada"`}},
		{name: "version 1 when asked", method: http.MethodPost, path: "/api/v1/projects/wfp/workflows/greet/runs?wait=5s",
			body: `{"input":{"name":"Ada"},"version":1}`, wantStatus: http.StatusOK, wantContains: []string{`"greeting":"hello Ada"`}},
	})
}

type runList struct {
	Runs []struct {
		ID         string `json:"id"`
		WorkflowID string `json:"workflowId"`
		Status     string `json:"status"`
	} `json:"runs"`
	NextCursor string `json:"nextCursor"`
}

func TestRunsList(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	greet := s.saveWorkflow(t, "greet.yaml", greetV1)
	s.saveWorkflow(t, "waiter.yaml", waiterYAML)
	s.saveWorkflow(t, "elsewhere.yaml", strings.NewReplacer("name: greet", "name: greet", "project: wfp", "project: p2").Replace(greetV1))

	var greetRuns []string // in start order
	for i := range 7 {
		r := s.startRun(t, "wfp", "greet", map[string]any{"name": fmt.Sprint("n", i)})
		greetRuns = append(greetRuns, r.ID)
	}
	for _, id := range greetRuns {
		s.awaitRun(t, id, func(r runView) bool { return r.Status == "succeeded" })
	}
	waiting := s.startRun(t, "wfp", "waiter", nil)
	s.awaitRun(t, waiting.ID, func(r runView) bool { return r.Status == "waiting" })
	s.startRun(t, "p2", "greet", map[string]any{"name": "x"})

	list := func(t *testing.T, query string) runList {
		t.Helper()
		var l runList
		s.must(t, http.MethodGet, "/api/v1/runs?"+query, nil, http.StatusOK).Decode(t, &l)
		return l
	}
	ids := func(l runList) []string {
		var out []string
		for _, r := range l.Runs {
			out = append(out, r.ID)
		}
		return out
	}

	t.Run("pages of 3 through one workflow's runs, newest first", func(t *testing.T) {
		var all []string
		var sizes []int
		cursor := ""
		for page := 0; ; page++ {
			if page > 5 {
				t.Fatal("pagination does not end")
			}
			q := "project=wfp&workflow=greet&limit=3"
			if cursor != "" {
				q += "&cursor=" + url.QueryEscape(cursor)
			}
			l := list(t, q)
			for _, r := range l.Runs {
				if r.WorkflowID != greet.Workflow.ID {
					t.Errorf("run %s of workflow %s in a list filtered on greet", r.ID, r.WorkflowID)
				}
			}
			all = append(all, ids(l)...)
			sizes = append(sizes, len(l.Runs))
			if l.NextCursor == "" {
				break
			}
			cursor = l.NextCursor
		}
		if !slices.Equal(sizes, []int{3, 3, 1}) {
			t.Errorf("page sizes %v, want [3 3 1]", sizes)
		}
		want := slices.Clone(greetRuns)
		slices.Reverse(want)
		if !slices.Equal(all, want) {
			t.Errorf("runs across pages\n got  %v\n want %v", all, want)
		}
	})
	t.Run("no cursor when everything fits", func(t *testing.T) {
		l := list(t, "project=wfp&workflow=greet&limit=7")
		if len(l.Runs) != 7 || l.NextCursor != "" {
			t.Errorf("%d runs, nextCursor %q", len(l.Runs), l.NextCursor)
		}
	})
	t.Run("by project", func(t *testing.T) {
		if n := len(list(t, "project=wfp").Runs); n != 8 {
			t.Errorf("%d runs in wfp, want 8", n)
		}
		if n := len(list(t, "project=p2").Runs); n != 1 {
			t.Errorf("%d runs in p2, want 1", n)
		}
	})
	t.Run("all", func(t *testing.T) {
		if n := len(list(t, "").Runs); n != 9 {
			t.Errorf("%d runs, want 9", n)
		}
	})
	t.Run("by status", func(t *testing.T) {
		if got := ids(list(t, "status=waiting")); !slices.Equal(got, []string{waiting.ID}) {
			t.Errorf("waiting runs %v, want [%s]", got, waiting.ID)
		}
		l := list(t, "project=wfp&status=succeeded")
		if len(l.Runs) != 7 {
			t.Errorf("%d succeeded runs in wfp, want 7", len(l.Runs))
		}
		for _, r := range l.Runs {
			if r.Status != "succeeded" {
				t.Errorf("run %s is %s", r.ID, r.Status)
			}
		}
		if n := len(list(t, "status=failed").Runs); n != 0 {
			t.Errorf("%d failed runs", n)
		}
	})
	t.Run("the list is short: no input, output or steps", func(t *testing.T) {
		res := s.must(t, http.MethodGet, "/api/v1/runs?project=wfp&workflow=greet&limit=1", nil, http.StatusOK)
		for _, field := range []string{`"input"`, `"output"`, `"steps"`} {
			if strings.Contains(string(res.Body), field) {
				t.Errorf("list shows %s: %s", field, res.Body)
			}
		}
	})

	s.runScenarios(t, []scenario{
		{name: "workflow without project", method: http.MethodGet, path: "/api/v1/runs?workflow=greet",
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{`"location":"query.project"`}},
		{name: "unknown project", method: http.MethodGet, path: "/api/v1/runs?project=nope", wantStatus: http.StatusNotFound},
		{name: "unknown workflow", method: http.MethodGet, path: "/api/v1/runs?project=wfp&workflow=nope", wantStatus: http.StatusNotFound},
		{name: "unknown status", method: http.MethodGet, path: "/api/v1/runs?status=bogus", wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"query.status"}},
		{name: "limit too large", method: http.MethodGet, path: "/api/v1/runs?limit=501", wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"query.limit"}},
		{name: "negative limit", method: http.MethodGet, path: "/api/v1/runs?limit=-1", wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"query.limit"}},
		{name: "limit not a number", method: http.MethodGet, path: "/api/v1/runs?limit=ten", wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"query.limit"}},
		{name: "cursor too long", method: http.MethodGet, path: "/api/v1/runs?cursor=" + strings.Repeat("A", 201), wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"query.cursor"}},
	})
}

// TestRunsListBadCursor: a cursor the client made up is the client's error.
func TestRunsListBadCursor(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	for _, cursor := range []string{"garbage", "!!!", strings.Repeat("A", 100), "MTIz"} {
		s.runScenarios(t, []scenario{{
			name: cursor, method: http.MethodGet, path: "/api/v1/runs?cursor=" + url.QueryEscape(cursor),
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"query.cursor"},
		}})
	}
}

func TestRunsCancel(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.saveWorkflow(t, "waiter.yaml", waiterYAML)
	s.saveWorkflow(t, "greet.yaml", greetV1)
	run := s.startRun(t, "wfp", "waiter", nil)
	s.awaitRun(t, run.ID, func(r runView) bool {
		st, _ := r.step("nap")
		return r.Status == "waiting" && st == "waiting"
	})
	done := s.startRun(t, "wfp", "greet", map[string]any{"name": "x"})
	s.awaitRun(t, done.ID, func(r runView) bool { return r.Status == "succeeded" })

	s.runScenarios(t, []scenario{
		{
			name: "cancel a waiting run", method: http.MethodPost, path: "/api/v1/runs/" + run.ID + "/cancel",
			wantStatus: http.StatusOK, wantContains: []string{`"status":"cancelled"`, `"finishedAt"`},
			after: func(t *testing.T, _ *stack, res *response) {
				var got runView
				res.Decode(t, &got)
				want := map[string]string{"first": "succeeded", "nap": "cancelled"}
				for id, status := range want {
					if st, _ := got.step(id); st != status {
						t.Errorf("step %s is %q, want %s", id, st, status)
					}
				}
				if st, ok := got.step("after"); ok && st != "cancelled" && st != "pending" {
					t.Errorf("step after is %q", st)
				}
			},
		},
		{
			name: "cancelling again is a conflict", method: http.MethodPost, path: "/api/v1/runs/" + run.ID + "/cancel",
			wantStatus: http.StatusConflict, wantContains: []string{`"status":409`, "cancelled"},
		},
		{
			name: "the run stays cancelled", method: http.MethodGet, path: "/api/v1/runs/" + run.ID,
			wantStatus: http.StatusOK, wantContains: []string{`"status":"cancelled"`},
		},
		{
			name: "a finished run cannot be cancelled", method: http.MethodPost, path: "/api/v1/runs/" + done.ID + "/cancel",
			wantStatus: http.StatusConflict, wantContains: []string{"succeeded"},
		},
		{
			name: "cancel an unknown run", method: http.MethodPost, path: "/api/v1/runs/run_nope/cancel",
			wantStatus: http.StatusNotFound,
		},
		{
			name: "cancel takes no body", method: http.MethodPost, path: "/api/v1/runs/run_nope/cancel", body: `{"force":true}`,
			wantStatus: http.StatusNotFound,
		},
	})
}

// TestRunsTimelineJSON: the view carries outputs as JSON, not strings.
func TestRunsTimelineJSON(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.saveWorkflow(t, "greet.yaml", greetV1)
	res := s.must(t, http.MethodPost, "/api/v1/projects/wfp/workflows/greet/runs?wait=5s", `{"input":{"name":"\u003cscript\u003e"}}`, http.StatusOK)
	var raw map[string]json.RawMessage
	res.Decode(t, &raw)
	for _, k := range []string{"input", "output", "steps"} {
		if len(raw[k]) == 0 || (raw[k][0] != '{' && raw[k][0] != '[') {
			t.Errorf("%s = %s, want JSON", k, raw[k])
		}
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
}

package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/engine"
	"github.com/moatproject/moat/internal/nodes"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/pgtest"
	"github.com/moatproject/moat/internal/store/sqlite"
)

// scenarios run against every store: SQLite always, Postgres when
// MOAT_TEST_DATABASE_URL is set.
var scenarios = map[string]func(t *testing.T, h *harness){
	"PureStepsRunInline":                scenarioPureStepsRunInline,
	"ParallelBranchesJoin":              scenarioParallelBranchesJoin,
	"SwitchSkipsBranchNotTaken":         scenarioSwitchSkipsBranchNotTaken,
	"FilterStopsBranch":                 scenarioFilterStopsBranch,
	"HTTPRetriesWithBackoffAndNewKeys":  scenarioHTTPRetriesWithBackoffAndNewKeys,
	"HTTPClientErrorIsNotRetried":       scenarioHTTPClientErrorIsNotRetried,
	"StepTimeout":                       scenarioStepTimeout,
	"CancelStopsWaitingRun":             scenarioCancelStopsWaitingRun,
	"ApprovalWaitsForDecision":          scenarioApprovalWaitsForDecision,
	"ApprovalTimesOut":                  scenarioApprovalTimesOut,
	"ForeachFansOutEffectsWithOwnKeys":  scenarioForeachFansOutEffectsWithOwnKeys,
	"InputIsValidated":                  scenarioInputIsValidated,
	"ScheduleStartsRuns":                scenarioScheduleStartsRuns,
	"UnchangedDefinitionMakesNoVersion": scenarioUnchangedDefinitionMakesNoVersion,
}

func TestScenariosSQLite(t *testing.T) {
	for name, run := range scenarios {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			run(t, newHarness(t))
		})
	}
}

func TestScenariosPostgres(t *testing.T) {
	pgtest.URL(t)
	for name, run := range scenarios {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			run(t, startHarness(t, pgtest.Open(t)))
		})
	}
}

type harness struct {
	t     testing.TB
	store store.Store
	eng   *engine.Engine
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir()+"/moat.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return startHarness(t, st)
}

// startHarness starts an engine whose http.request may reach the test
// servers on loopback.
func startHarness(t testing.TB, st store.Store) *harness {
	return startHarnessWith(t, st, nodes.EgressPolicy{AllowPrivate: true})
}

func startHarnessWith(t testing.TB, st store.Store, egress nodes.EgressPolicy) *harness {
	t.Helper()
	ctx := context.Background()
	eng, err := engine.New(engine.Config{
		Store:        st,
		Registry:     nodes.Builtins(),
		HTTP:         nodes.NewHTTPClient(egress),
		PollInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(ctx, st.Dialect() == store.SQLite); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		eng.Stop(stopCtx)
	})
	return &harness{t: t, store: st, eng: eng}
}

func (h *harness) save(src string) engine.Saved {
	h.t.Helper()
	saved, err := h.eng.SaveWorkflow(context.Background(), "test.yaml", []byte(src))
	if err != nil {
		h.t.Fatalf("save: %v", err)
	}
	return saved
}

func (h *harness) start(saved engine.Saved, input any) store.Run {
	h.t.Helper()
	run, err := h.eng.StartRun(context.Background(), engine.StartRequest{WorkflowID: saved.Workflow.ID, Input: input})
	if err != nil {
		h.t.Fatalf("start: %v", err)
	}
	return run
}

// wait blocks until the run is final or until cond holds.
func (h *harness) wait(runID string, cond func(store.Run, []store.Step) bool) (store.Run, map[string]store.Step) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	run, steps, err := h.eng.WaitFor(ctx, runID, cond)
	if err != nil {
		h.t.Fatalf("run %s did not settle: %v (status %s)", runID, err, run.Status)
	}
	byID := map[string]store.Step{}
	for _, s := range steps {
		byID[s.StepID] = s
	}
	return run, byID
}

func output(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("output %s: %v", b, err)
	}
	return m
}

func statuses(steps map[string]store.Step) string {
	var parts []string
	for id, s := range steps {
		parts = append(parts, id+"="+string(s.Status))
	}
	return strings.Join(parts, " ")
}

func scenarioPureStepsRunInline(t *testing.T, h *harness) {
	saved := h.save(`
apiVersion: moat/v1
kind: Workflow
name: pure
input:
  schema:
    type: object
    properties: {n: {type: integer}}
steps:
  - {id: a, uses: transform, with: {set: {v: "input.n + 1"}}}
  - {id: b, uses: transform, with: {set: {v: "steps.a.output.v * 2"}}}
  - {id: c, uses: transform, with: {set: {v: "steps.b.output.v + 3"}}}
  - {id: d, uses: transform, with: {set: {v: "steps.c.output.v - 1"}}}
  - {id: e, uses: transform, with: {set: {v: "steps.d.output.v", who: "run.workflow"}}}
`)
	run := h.start(saved, map[string]any{"n": int64(4)})
	run, steps := h.wait(run.ID, nil)
	if run.Status != store.RunSucceeded {
		t.Fatalf("status %s: %s", run.Status, run.Error)
	}
	out := output(t, run.Output)
	if out["v"] != float64(12) || out["who"] != "pure" {
		t.Fatalf("output %v", out)
	}
	if len(steps) != 5 {
		t.Fatalf("steps: %s", statuses(steps))
	}
}

func scenarioParallelBranchesJoin(t *testing.T, h *harness) {
	saved := h.save(`
apiVersion: moat/v1
kind: Workflow
name: join
steps:
  - {id: start, uses: transform, with: {set: {x: "1"}}}
  - {id: left, uses: transform, needs: [start], with: {set: {x: "steps.start.output.x + 10"}}}
  - {id: right, uses: wait, needs: [start], with: {duration: 50ms}}
  - {id: join, uses: transform, needs: [left, right], with: {set: {sum: "steps.left.output.x", waited: "steps.right.status"}}}
`)
	run, steps := h.wait(h.start(saved, nil).ID, nil)
	if run.Status != store.RunSucceeded {
		t.Fatalf("status %s: %s (%s)", run.Status, run.Error, statuses(steps))
	}
	out := output(t, run.Output)
	if out["sum"] != float64(11) || out["waited"] != "succeeded" {
		t.Fatalf("output %v", out)
	}
}

func scenarioSwitchSkipsBranchNotTaken(t *testing.T, h *harness) {
	saved := h.save(`
apiVersion: moat/v1
kind: Workflow
name: branch
input:
  schema: {type: object, properties: {kind: {type: string}}}
steps:
  - id: route
    uses: switch
    with:
      cases:
        - {when: 'input.kind == "a"', next: on_a}
      default: on_other
  - {id: on_a, uses: transform, with: {set: {branch: '"a"'}}}
  - {id: after_a, uses: transform, needs: [on_a], with: {set: {x: "1"}}}
  - {id: on_other, uses: transform, with: {set: {branch: '"other"'}}}
`)
	for _, tc := range []struct{ kind, ran, skipped string }{{"a", "on_a", "on_other"}, {"b", "on_other", "after_a"}} {
		run, steps := h.wait(h.start(saved, map[string]any{"kind": tc.kind}).ID, nil)
		if run.Status != store.RunSucceeded {
			t.Fatalf("%s: status %s: %s", tc.kind, run.Status, run.Error)
		}
		if steps[tc.ran].Status != store.StepSucceeded || steps[tc.skipped].Status != store.StepSkipped {
			t.Fatalf("%s: %s", tc.kind, statuses(steps))
		}
	}
}

func scenarioFilterStopsBranch(t *testing.T, h *harness) {
	saved := h.save(`
apiVersion: moat/v1
kind: Workflow
name: gate
input:
  schema: {type: object, properties: {n: {type: integer}}}
steps:
  - {id: gate, uses: filter, with: {condition: "input.n > 10"}}
  - {id: big, uses: transform, with: {set: {n: "input.n"}}}
`)
	_, steps := h.wait(h.start(saved, map[string]any{"n": int64(3)}).ID, nil)
	if steps["big"].Status != store.StepSkipped {
		t.Fatalf("small input: %s", statuses(steps))
	}
	_, steps = h.wait(h.start(saved, map[string]any{"n": int64(30)}).ID, nil)
	if steps["big"].Status != store.StepSucceeded {
		t.Fatalf("large input: %s", statuses(steps))
	}
}

// keyCounter is a receiver that applies each idempotency key once.
type keyCounter struct {
	mu       sync.Mutex
	seen     map[string]int
	failures atomic.Int32 // answer 503 this many more times
	delay    time.Duration
	status   int
}

func newKeyCounter() *keyCounter { return &keyCounter{seen: map[string]int{}} }

func (k *keyCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if k.delay > 0 {
		select {
		case <-time.After(k.delay):
		case <-r.Context().Done():
			return
		}
	}
	if k.failures.Add(-1) >= 0 {
		w.Header().Set("Retry-After", "0")
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	if k.status != 0 {
		http.Error(w, "no", k.status)
		return
	}
	k.mu.Lock()
	k.seen[r.Header.Get("Idempotency-Key")]++
	k.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"ok":true,"path":%q}`, r.URL.Path)
}

func (k *keyCounter) keys() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := map[string]int{}
	for key, n := range k.seen {
		out[key] = n
	}
	return out
}

func scenarioHTTPRetriesWithBackoffAndNewKeys(t *testing.T, h *harness) {
	counter := newKeyCounter()
	counter.failures.Store(2)
	srv := httptest.NewServer(counter)
	defer srv.Close()
	saved := h.save(fmt.Sprintf(`
apiVersion: moat/v1
kind: Workflow
name: retry
steps:
  - id: call
    uses: http.request
    retry: {maxAttempts: 3, backoff: 10ms}
    with: {method: POST, url: "%s/charge", body: {amount: 5}}
`, srv.URL))
	run, steps := h.wait(h.start(saved, nil).ID, nil)
	if run.Status != store.RunSucceeded {
		t.Fatalf("status %s: %s", run.Status, run.Error)
	}
	if steps["call"].Attempts != 3 {
		t.Fatalf("attempts = %d, want 3", steps["call"].Attempts)
	}
	attempts, err := h.store.ListAttempts(context.Background(), run.ID)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, a := range attempts {
		keys[a.IdempotencyKey] = true
	}
	if len(attempts) != 3 || len(keys) != 3 || attempts[2].Status != store.AttemptSucceeded {
		t.Fatalf("attempts %+v", attempts)
	}
	if got := counter.keys(); len(got) != 1 || got[engine.IdempotencyKey(run.ID, "call", 3)] != 1 {
		t.Fatalf("receiver saw %v", got)
	}
	body := output(t, steps["call"].Output)["body"].(map[string]any)
	if body["path"] != "/charge" {
		t.Fatalf("output body %v", body)
	}
}

func scenarioHTTPClientErrorIsNotRetried(t *testing.T, h *harness) {
	counter := newKeyCounter()
	counter.status = http.StatusNotFound
	srv := httptest.NewServer(counter)
	defer srv.Close()
	saved := h.save(fmt.Sprintf(`
apiVersion: moat/v1
kind: Workflow
name: notfound
steps:
  - {id: call, uses: http.request, retry: {maxAttempts: 5, backoff: 10ms}, with: {url: "%s/missing"}}
  - {id: after, uses: transform, with: {set: {x: "1"}}}
`, srv.URL))
	run, steps := h.wait(h.start(saved, nil).ID, nil)
	if run.Status != store.RunFailed || steps["call"].Attempts != 1 || !strings.Contains(run.Error, "status 404") {
		t.Fatalf("status %s attempts %d error %q", run.Status, steps["call"].Attempts, run.Error)
	}
	if steps["after"].Status != store.StepCancelled {
		t.Fatalf("after failure: %s", statuses(steps))
	}
}

func scenarioStepTimeout(t *testing.T, h *harness) {
	counter := newKeyCounter()
	counter.delay = 5 * time.Second
	srv := httptest.NewServer(counter)
	defer srv.Close()
	saved := h.save(fmt.Sprintf(`
apiVersion: moat/v1
kind: Workflow
name: slow
steps:
  - {id: call, uses: http.request, timeout: 100ms, with: {url: "%s/slow"}}
`, srv.URL))
	run, _ := h.wait(h.start(saved, nil).ID, nil)
	if run.Status != store.RunFailed || !strings.Contains(run.Error, "timed out") {
		t.Fatalf("status %s error %q", run.Status, run.Error)
	}
}

func TestEgressIsDeniedByDefault(t *testing.T) {
	t.Parallel()
	st, err := sqlite.Open(context.Background(), t.TempDir()+"/moat.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() }) // after the engine stops
	h := startHarnessWith(t, st, nodes.EgressPolicy{})
	counter := newKeyCounter()
	srv := httptest.NewServer(counter)
	defer srv.Close()
	saved := h.save(fmt.Sprintf(`
apiVersion: moat/v1
kind: Workflow
name: ssrf
steps:
  - {id: call, uses: http.request, with: {url: "%s/internal"}}
`, srv.URL))
	run, _ := h.wait(h.start(saved, nil).ID, nil)
	if run.Status != store.RunFailed || !strings.Contains(run.Error, "not allowed") {
		t.Fatalf("status %s error %q", run.Status, run.Error)
	}
	if len(counter.keys()) != 0 {
		t.Fatal("the request reached the loopback server")
	}
}

func scenarioCancelStopsWaitingRun(t *testing.T, h *harness) {
	saved := h.save(`
apiVersion: moat/v1
kind: Workflow
name: sleepy
steps:
  - {id: nap, uses: wait, with: {duration: 1h}}
  - {id: after, uses: transform, with: {set: {x: "1"}}}
`)
	run := h.start(saved, nil)
	h.wait(run.ID, func(r store.Run, _ []store.Step) bool { return r.Status == store.RunWaiting })
	if _, err := h.eng.Cancel(context.Background(), run.ID); err != nil {
		t.Fatal(err)
	}
	run, steps := h.wait(run.ID, nil)
	if run.Status != store.RunCancelled || steps["nap"].Status != store.StepCancelled || steps["after"].Status != store.StepCancelled {
		t.Fatalf("status %s: %s", run.Status, statuses(steps))
	}
	if _, err := h.eng.Cancel(context.Background(), run.ID); err == nil {
		t.Fatal("cancelling a finished run should fail")
	}
}

const approvalFlow = `
apiVersion: moat/v1
kind: Workflow
name: approve-%s
steps:
  - id: ask
    uses: approval
    with: {title: "Ship it?", role: reviewer, timeout: %s, onReject: %s}
  - {id: after, uses: transform, with: {set: {decision: "steps.ask.output.decision"}}}
`

func scenarioApprovalWaitsForDecision(t *testing.T, h *harness) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, onReject string
		approve        bool
		want           store.RunStatus
		decision       string
	}{
		{"approved", "fail", true, store.RunSucceeded, "approved"},
		{"rejected-fails", "fail", false, store.RunFailed, ""},
		{"rejected-continues", "continue", false, store.RunSucceeded, "rejected"},
	} {
		saved := h.save(fmt.Sprintf(approvalFlow, tc.name, "1h", tc.onReject))
		run := h.start(saved, nil)
		h.wait(run.ID, func(r store.Run, _ []store.Step) bool { return r.Status == store.RunWaiting })
		tasks, err := h.store.ListTasks(ctx, store.TaskFilter{RunID: run.ID, Status: store.TaskPending})
		if err != nil || len(tasks) != 1 || tasks[0].Title != "Ship it?" || tasks[0].Role != "reviewer" {
			t.Fatalf("%s: tasks %+v %v", tc.name, tasks, err)
		}
		if _, err := h.eng.Decide(ctx, tasks[0].ID, tc.approve, "alice", "looks fine"); err != nil {
			t.Fatal(err)
		}
		if _, err := h.eng.Decide(ctx, tasks[0].ID, tc.approve, "bob", ""); err == nil {
			t.Fatalf("%s: deciding twice should fail", tc.name)
		}
		run, _ = h.wait(run.ID, nil)
		if run.Status != tc.want {
			t.Fatalf("%s: status %s (%s)", tc.name, run.Status, run.Error)
		}
		if tc.decision != "" && output(t, run.Output)["decision"] != tc.decision {
			t.Fatalf("%s: output %s", tc.name, run.Output)
		}
	}
}

func scenarioApprovalTimesOut(t *testing.T, h *harness) {
	saved := h.save(fmt.Sprintf(approvalFlow, "timeout", "200ms", "fail"))
	run, steps := h.wait(h.start(saved, nil).ID, nil)
	if run.Status != store.RunFailed || !strings.Contains(steps["ask"].Error, "expired") {
		t.Fatalf("status %s: %s / %q", run.Status, statuses(steps), steps["ask"].Error)
	}
	tasks, _ := h.store.ListTasks(context.Background(), store.TaskFilter{RunID: run.ID})
	if len(tasks) != 1 || tasks[0].Status != store.TaskExpired {
		t.Fatalf("tasks %+v", tasks)
	}
}

func scenarioForeachFansOutEffectsWithOwnKeys(t *testing.T, h *harness) {
	counter := newKeyCounter()
	srv := httptest.NewServer(counter)
	defer srv.Close()
	saved := h.save(fmt.Sprintf(`
apiVersion: moat/v1
kind: Workflow
name: fanout
input:
  schema: {type: object, properties: {ids: {type: array, items: {type: integer}}}}
steps:
  - id: each
    uses: foreach
    with:
      items: "{{ input.ids }}"
      concurrency: 3
      step:
        uses: http.request
        with: {method: POST, url: "%s/items/{{ item }}"}
`, srv.URL))
	run, steps := h.wait(h.start(saved, map[string]any{"ids": []any{int64(1), int64(2), int64(3), int64(4), int64(5)}}).ID, nil)
	if run.Status != store.RunSucceeded {
		t.Fatalf("status %s: %s", run.Status, run.Error)
	}
	keys := counter.keys()
	if len(keys) != 5 {
		t.Fatalf("keys %v", keys)
	}
	items := output(t, steps["each"].Output)["items"].([]any)
	if items[4].(map[string]any)["body"].(map[string]any)["path"] != "/items/5" {
		t.Fatalf("items %v", items)
	}
}

func scenarioInputIsValidated(t *testing.T, h *harness) {
	saved := h.save(`
apiVersion: moat/v1
kind: Workflow
name: strict
input:
  schema:
    type: object
    required: [email]
    additionalProperties: false
    properties: {email: {type: string, format: email}}
steps:
  - {id: a, uses: transform, with: {set: {e: "input.email"}}}
`)
	_, err := h.eng.StartRun(context.Background(), engine.StartRequest{WorkflowID: saved.Workflow.ID, Input: map[string]any{"email": "nope", "extra": true}})
	var inputErr *engine.InputError
	if err == nil || !asInputError(err, &inputErr) || len(inputErr.Problems) < 2 {
		t.Fatalf("err = %v", err)
	}
}

func asInputError(err error, target **engine.InputError) bool {
	e, ok := err.(*engine.InputError)
	if ok {
		*target = e
	}
	return ok
}

func scenarioScheduleStartsRuns(t *testing.T, h *harness) {
	saved := h.save(`
apiVersion: moat/v1
kind: Workflow
name: ticker
trigger:
  schedule: {cron: "@every 1s", input: {n: 1}}
input:
  schema: {type: object, properties: {n: {type: integer}}}
steps:
  - {id: a, uses: transform, with: {set: {n: "input.n"}}}
`)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		runs, _, err := h.store.ListRuns(context.Background(), store.RunFilter{WorkflowID: saved.Workflow.ID})
		if err != nil {
			t.Fatal(err)
		}
		done := 0
		for _, r := range runs {
			if r.Status == store.RunSucceeded && r.Trigger == "schedule" {
				done++
			}
		}
		if done >= 2 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("schedule did not start two runs in 10s")
}

func scenarioUnchangedDefinitionMakesNoVersion(t *testing.T, h *harness) {
	src := `
apiVersion: moat/v1
kind: Workflow
name: same
steps:
  - {id: a, uses: transform, with: {set: {x: "1"}}}
`
	first := h.save(src)
	second := h.save("# a comment changes nothing\n" + src)
	if !first.Created || second.Created || first.Version.ID != second.Version.ID {
		t.Fatalf("first %+v second %+v", first.Version, second.Version)
	}
	third := h.save(strings.Replace(src, `"1"`, `"2"`, 1))
	if !third.Created || third.Version.Number != 2 {
		t.Fatalf("third %+v", third.Version)
	}
}

package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/moatproject/moat/internal/engine"
	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/manifest"
	"github.com/moatproject/moat/internal/nodes"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/pgtest"
	"github.com/moatproject/moat/internal/store/sqlite"
	"github.com/moatproject/moat/internal/workflow"
)

// scriptedAI is a fake gateway: it records each request and answers from
// its script in turn (the last answer repeats).
type scriptedAI struct {
	mu     sync.Mutex
	reqs   []gateway.Request
	script []scripted
}

type scripted struct {
	res gateway.Result
	err error
}

func (s *scriptedAI) Chat(_ context.Context, req gateway.Request) (gateway.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, req)
	a := s.script[min(len(s.reqs), len(s.script))-1]
	return a.res, a.err
}

func (s *scriptedAI) requests() []gateway.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]gateway.Request(nil), s.reqs...)
}

// startAIHarness starts an engine whose AI steps call ai and may name the
// connectors has knows.
func startAIHarness(t testing.TB, st store.Store, ai nodes.AI, has func(string) bool) *harness {
	t.Helper()
	ctx := context.Background()
	registry := nodes.Builtins()
	registry.SetConnectors(has)
	eng, err := engine.New(engine.Config{Store: st, Registry: registry, AI: ai, PollInterval: 20 * time.Millisecond})
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

func openSQLite(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), t.TempDir()+"/moat.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// aiScenarios run on SQLite, and on Postgres when it is configured.
var aiScenarios = map[string]func(t *testing.T, st store.Store){
	"ClassifyThroughTheGateway":       aiScenarioClassify,
	"RetryableRefusalIsRetried":       aiScenarioRetryable,
	"PermanentRefusalFailsTheStep":    aiScenarioPermanent,
	"UntrustedInputInPromptIsRefused": aiScenarioUntrustedPrompt,
}

func TestAIScenariosSQLite(t *testing.T) {
	for name, run := range aiScenarios {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			run(t, openSQLite(t))
		})
	}
}

func TestAIScenariosPostgres(t *testing.T) {
	pgtest.URL(t)
	for name, run := range aiScenarios {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			run(t, pgtest.Open(t))
		})
	}
}

func onlyLocal(name string) bool { return name == "local" }

const triageWorkflow = `
apiVersion: moat/v1
kind: Workflow
name: triage
project: support
input:
  schema:
    type: object
    properties:
      message: {type: string, x-data-class: customer.content, x-trust: untrusted}
      email: {type: string, x-data-class: pii.email}
steps:
  - id: classify
    uses: ai.classify
    connector: local
    retry: {maxAttempts: 2, backoff: 10ms}
    with:
      labels: [billing, technical]
      examples: [{text: charged twice, label: billing}, {text: app crashes, label: technical}]
      text: "{{ input.message }}"
      data: {email: "{{ input.email }}"}
  - id: route
    uses: transform
    with:
      set: {category: steps.classify.output.label, sent: steps.classify.output.sent}
`

var triageInput = map[string]any{"message": "I was charged twice", "email": "ana@example.com"}

func classified() gateway.Result {
	res := gateway.Result{
		Content: "billing", Value: "billing", Received: "billing",
		Record: gateway.Record{RequestID: "req-1", Connector: "local", Vendor: "moat-local", Model: "local-classifier",
			Findings: map[string]int{"pii.email": 1}, Decisions: map[string]int{"tokenize": 1}},
	}
	// Set from JSON: only the gateway imports the connectors.
	if err := json.Unmarshal([]byte(`[{"role":"user","content":"<data name=\"email\"><EMAIL_1></data>"}]`), &res.Sent); err != nil {
		panic(err)
	}
	return res
}

func aiScenarioClassify(t *testing.T, st store.Store) {
	ai := &scriptedAI{script: []scripted{{res: classified()}}}
	h := startAIHarness(t, st, ai, onlyLocal)
	saved := h.save(triageWorkflow)
	run := h.start(saved, triageInput)
	run, steps := h.wait(run.ID, nil)
	if run.Status != store.RunSucceeded {
		t.Fatalf("status %s: %s (%s)", run.Status, run.Error, statuses(steps))
	}
	out := output(t, run.Output)
	if out["category"] != "billing" || !strings.Contains(fmt.Sprint(out["sent"]), "<EMAIL_1>") {
		t.Fatalf("output %v", out)
	}
	step := output(t, steps["classify"].Output)
	if step["label"] != "billing" || step["requestId"] != "req-1" || step["vendor"] != "moat-local" {
		t.Fatalf("step output %v", step)
	}
	reqs := ai.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d calls", len(reqs))
	}
	req := reqs[0]
	want := gateway.Identity{Kind: "run", ID: run.ID, Run: run.ID, Project: "support", Workflow: "triage", Step: "classify"}
	if req.Identity != want {
		t.Errorf("identity %+v, want %+v", req.Identity, want)
	}
	if req.Connector != "local" || len(req.Labels) != 2 || len(req.Examples) != 2 || len(req.Data) != 2 {
		t.Errorf("request %+v", req)
	}
	if steps["classify"].Attempts != 1 {
		t.Errorf("attempts %d", steps["classify"].Attempts)
	}
}

func aiScenarioRetryable(t *testing.T, st store.Store) {
	limited := &gateway.Error{Stage: "limit", Code: gateway.CodeRateLimited, Message: "the connector's rate limit is reached"}
	ai := &scriptedAI{script: []scripted{{err: limited}, {res: classified()}}}
	h := startAIHarness(t, st, ai, onlyLocal)
	run := h.start(h.save(triageWorkflow), triageInput)
	run, steps := h.wait(run.ID, nil)
	if run.Status != store.RunSucceeded || steps["classify"].Attempts != 2 {
		t.Fatalf("status %s attempts %d: %s", run.Status, steps["classify"].Attempts, run.Error)
	}
}

func aiScenarioPermanent(t *testing.T, st store.Store) {
	blocked := &gateway.Error{Stage: "decide", Code: gateway.CodeBlocked, Message: "a secret (aws access key) may not leave"}
	ai := &scriptedAI{script: []scripted{{err: blocked}}}
	h := startAIHarness(t, st, ai, onlyLocal)
	run := h.start(h.save(triageWorkflow), triageInput)
	run, steps := h.wait(run.ID, nil)
	s := steps["classify"]
	if run.Status != store.RunFailed || s.Status != store.StepFailed || s.Attempts != 1 {
		t.Fatalf("status %s step %s attempts %d", run.Status, s.Status, s.Attempts)
	}
	if s.Error != blocked.Error() {
		t.Fatalf("step error %q, want the gateway's %q", s.Error, blocked.Error())
	}
}

func aiScenarioUntrustedPrompt(t *testing.T, st store.Store) {
	ai := &scriptedAI{script: []scripted{{res: classified()}}}
	h := startAIHarness(t, st, ai, onlyLocal)
	src := strings.Replace(triageWorkflow, `text: "{{ input.message }}"`, `prompt: "Classify: {{ input.message }}"`, 1)
	_, err := h.eng.SaveWorkflow(context.Background(), "triage.yaml", []byte(src))
	if err == nil || !strings.Contains(err.Error(), "with.prompt: untrusted input in instructions: input.message is declared x-trust: untrusted") {
		t.Fatalf("save: %v", err)
	}
	if len(ai.requests()) != 0 {
		t.Fatal("the gateway was called")
	}
}

func TestAIStepNamingAnUnknownConnectorIsRefusedAtSave(t *testing.T) {
	t.Parallel()
	h := startAIHarness(t, openSQLite(t), &scriptedAI{script: []scripted{{res: classified()}}}, nil)
	_, err := h.eng.SaveWorkflow(context.Background(), "triage.yaml", []byte(triageWorkflow))
	if err == nil || !strings.Contains(err.Error(), `unknown connector "local"`) {
		t.Fatalf("err %v", err)
	}
}

// memResources, memTokens and memRecorder stand in for the store and the
// audit log.
type memResources struct {
	mu  sync.Mutex
	res gateway.Resources
}

func (m *memResources) LoadResources(context.Context) (gateway.Resources, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.res, nil
}

func (m *memResources) set(res gateway.Resources) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.res = res
}

type memTokens struct {
	mu     sync.Mutex
	byRun  map[string][]gateway.TokenEntry
	loaded int
}

func (m *memTokens) LoadTokens(_ context.Context, runID string) ([]gateway.TokenEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loaded++
	return append([]gateway.TokenEntry(nil), m.byRun[runID]...), nil
}

func (m *memTokens) SaveTokens(_ context.Context, runID string, tokens []gateway.TokenEntry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var fresh []gateway.TokenEntry
	for _, t := range tokens {
		known := false
		for _, have := range m.byRun[runID] {
			if have.Token == t.Token && have.Value != t.Value {
				return errors.New("token taken")
			}
			// Saved already, by a step running beside this one: as the
			// store does, adding it again adds nothing.
			known = known || have == t
		}
		if !known {
			fresh = append(fresh, t)
		}
	}
	m.byRun[runID] = append(m.byRun[runID], fresh...)
	return nil
}

type memRecorder struct {
	mu      sync.Mutex
	records []gateway.Record
}

func (m *memRecorder) Record(_ context.Context, r gateway.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.records = append(m.records, r)
	return nil
}

func (m *memRecorder) all() []gateway.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]gateway.Record(nil), m.records...)
}

// exampleDocuments reads the documents of an example file: its gateway
// resources, and its workflows' sources.
func exampleDocuments(t *testing.T, path string) (gateway.Resources, [][]byte) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := manifest.Split(path, src)
	if err != nil {
		t.Fatal(err)
	}
	var res gateway.Resources
	var workflows [][]byte
	for _, d := range docs {
		var fields map[string]any
		if err := yaml.Unmarshal(d.Source, &fields); err != nil {
			t.Fatalf("%s:%d: %v", path, d.Line, err)
		}
		delete(fields, "apiVersion")
		delete(fields, "kind")
		body, err := json.Marshal(fields)
		if err != nil {
			t.Fatal(err)
		}
		decode := func(v any) {
			dec := json.NewDecoder(strings.NewReader(string(body)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(v); err != nil {
				t.Fatalf("%s:%d: %s: %v", path, d.Line, d.Kind, err)
			}
		}
		switch d.Kind {
		case gateway.KindVendor:
			var v gateway.Vendor
			decode(&v)
			res.Vendors = append(res.Vendors, v)
		case gateway.KindConnector:
			var c gateway.Connector
			decode(&c)
			res.Connectors = append(res.Connectors, c)
		case gateway.KindModel:
			var m gateway.Model
			decode(&m)
			res.Models = append(res.Models, m)
		case workflow.Kind:
			workflows = append(workflows, d.Source)
		default:
			t.Fatalf("%s:%d: unexpected kind %q", path, d.Line, d.Kind)
		}
	}
	return res, workflows
}

// TestQuickstartEndToEnd runs examples/quickstart.yaml through a real
// gateway with the local connector: personal data leaves as tokens, the
// same in every step of the run, and every call is recorded.
func TestQuickstartEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	res, workflows := exampleDocuments(t, "../../examples/quickstart.yaml")
	if len(res.Vendors) != 1 || len(res.Connectors) != 1 || len(workflows) != 1 {
		t.Fatalf("quickstart holds %d vendors, %d connectors, %d workflows", len(res.Vendors), len(res.Connectors), len(workflows))
	}
	resources := &memResources{res: res}
	tokens := &memTokens{byRun: map[string][]gateway.TokenEntry{}}
	recorder := &memRecorder{}
	gw, err := gateway.New(ctx, gateway.Config{Environment: "dev", Resources: resources, Tokens: tokens, Recorder: recorder})
	if err != nil {
		t.Fatal(err)
	}
	h := startAIHarness(t, openSQLite(t), gw, func(name string) bool { return gw.Catalog().HasConnector(name) })
	saved := h.save(string(workflows[0]))

	const email, card = "ana.lima@example.com", "4111 1111 1111 1111"
	input := map[string]any{
		"message": "I was charged twice this month, please refund the payment. Write to " + email + ".",
		"email":   email,
		"card":    card,
	}
	run := h.start(saved, input)
	run, steps := h.wait(run.ID, nil)
	if run.Status != store.RunSucceeded {
		t.Fatalf("status %s: %s (%s; classify: %s; entities: %s)", run.Status, run.Error, statuses(steps), steps["classify"].Error, steps["entities"].Error)
	}
	summary := output(t, run.Output)
	if summary["category"] != "billing" {
		t.Errorf("category %v", summary["category"])
	}

	classify := output(t, steps["classify"].Output)
	entities := output(t, steps["entities"].Output)
	for name, out := range map[string]map[string]any{"classify": classify, "entities": entities} {
		sent, received := fmt.Sprint(out["sent"]), fmt.Sprint(out["received"])
		for _, value := range []string{email, card, "4111"} {
			if strings.Contains(sent, value) || strings.Contains(received, value) {
				t.Errorf("%s: %q left as it is: sent %s received %s", name, value, sent, received)
			}
		}
		if !strings.Contains(sent, "<EMAIL_1>") || !strings.Contains(sent, "<CARD_1>") {
			t.Errorf("%s: sent has no tokens: %s", name, sent)
		}
		if out["connector"] != "local" || out["vendor"] != "moat-local" || out["requestId"] == "" {
			t.Errorf("%s: output %v", name, out)
		}
	}
	if classify["label"] != "billing" || classify["content"] != "billing" {
		t.Errorf("classify: label %v content %v", classify["label"], classify["content"])
	}
	// The run's tokens are kept: both steps stood for the e-mail address
	// with the same token, whichever ran first.
	var emailTokens []string
	for _, e := range tokens.byRun[run.ID] {
		if e.Value == email {
			emailTokens = append(emailTokens, e.Token)
		}
	}
	if len(emailTokens) != 1 || emailTokens[0] != "<EMAIL_1>" {
		t.Errorf("tokens of the e-mail address in the run: %v", emailTokens)
	}
	// What came back is restored: the extraction's answer holds no token.
	if content, _ := entities["content"].(string); strings.Contains(content, "<EMAIL_") || strings.Contains(content, "<CARD_") {
		t.Errorf("entities content still holds tokens: %s", content)
	}
	if _, ok := summary["entities"].([]any); !ok {
		t.Errorf("summary entities %v", summary["entities"])
	}
	if d, _ := summary["decisions"].(map[string]any); d["tokenize"] == nil {
		t.Errorf("summary decisions %v", summary["decisions"])
	}

	records := recorder.all()
	if len(records) != 2 {
		t.Fatalf("%d records, want 2", len(records))
	}
	for _, r := range records {
		if r.Identity.Run != run.ID || r.Identity.Workflow != "support-quickstart" || r.Identity.Project != "quickstart" || r.Outcome != "ok" {
			t.Errorf("record %+v", r)
		}
		if r.Findings["pii.email"] == 0 || r.Decisions["tokenize"] == 0 {
			t.Errorf("record of %s: findings %v decisions %v", r.Identity.Step, r.Findings, r.Decisions)
		}
	}

	// A connector removed after the workflow was saved fails the step at
	// run time with the gateway's reason; the version still loads.
	resources.set(gateway.Resources{Vendors: res.Vendors})
	if err := gw.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	run = h.start(saved, input)
	run, steps = h.wait(run.ID, nil)
	if run.Status != store.RunFailed || !strings.Contains(run.Error, `unknown connector "local"`) {
		t.Fatalf("without the connector: status %s (%s)", run.Status, run.Error)
	}
	failed := 0
	for _, id := range []string{"classify", "entities"} {
		if s := steps[id]; s.Status == store.StepFailed {
			failed++
			if s.Attempts != 1 || !strings.Contains(s.Error, `unknown connector "local"`) {
				t.Errorf("%s: attempts %d error %q", id, s.Attempts, s.Error)
			}
		}
	}
	if failed == 0 {
		t.Errorf("no AI step failed: %s", statuses(steps))
	}
}

// TestExampleWorkflowsCompile checks the AI examples against the
// connectors they name (`moat validate` knows only applied connectors).
func TestExampleWorkflowsCompile(t *testing.T) {
	t.Parallel()
	registry := nodes.Builtins()
	registry.SetConnectors(func(name string) bool { return name == "local" || name == "openai" })
	// The openai example builds on the quickstart's local connector.
	var all gateway.Resources
	for _, path := range []string{"../../examples/quickstart.yaml", "../../examples/openai/quickstart-openai.yaml"} {
		res, workflows := exampleDocuments(t, path)
		all.Vendors = append(all.Vendors, res.Vendors...)
		all.Connectors = append(all.Connectors, res.Connectors...)
		all.Models = append(all.Models, res.Models...)
		if err := all.Check(); err != nil {
			t.Errorf("%s: resources: %v", path, err)
		}
		for _, src := range workflows {
			if _, err := workflow.Load(path, src, registry); err != nil {
				t.Errorf("%s: %v", path, err)
			}
		}
	}
}

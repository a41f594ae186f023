package nodes

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/workflow"
)

// fakeAI records every request and answers with res or err.
type fakeAI struct {
	mu   sync.Mutex
	reqs []gateway.Request
	res  gateway.Result
	err  error
}

func (f *fakeAI) Chat(_ context.Context, req gateway.Request) (gateway.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, req)
	return f.res, f.err
}

func (f *fakeAI) only(t *testing.T) gateway.Request {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) != 1 {
		t.Fatalf("%d requests reached the gateway, want 1", len(f.reqs))
	}
	return f.reqs[0]
}

func (f *fakeAI) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

// aiRegistry knows one connector, "local".
func aiRegistry() *Registry {
	r := Builtins()
	r.SetConnectors(func(name string) bool { return name == "local" })
	return r
}

const aiHeader = `apiVersion: moat/v1
kind: Workflow
name: support
project: helpdesk
input:
  schema:
    type: object
    properties:
      message: {type: string, x-data-class: customer.content, x-trust: untrusted}
      email: {type: string, x-data-class: pii.email}
      card: {type: string, x-data-class: pii.card}
      name: {type: string, x-trust: trusted}
      topic: {type: string}
      list: {type: array, items: {type: string}}
      account:
        type: object
        properties:
          owner: {type: string, x-data-class: pii.name}
          notes: {$ref: "#/$defs/notes"}
    $defs:
      notes: {type: string, x-trust: untrusted}
steps:
`

var aiInput = map[string]any{
	"message": "My card was charged twice",
	"email":   "ana@example.com",
	"name":    "Ana",
	"topic":   "billing",
	"list":    []any{"one", "two"},
	"account": map[string]any{"owner": "Ana Lima", "notes": "VIP"},
}

func aiPlan(t *testing.T, steps string) *workflow.Plan {
	t.Helper()
	plan, err := workflow.Load("support.yaml", []byte(aiHeader+steps), aiRegistry())
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return plan
}

// runAIStep renders the step's settings and executes it as the engine does.
func runAIStep(t *testing.T, plan *workflow.Plan, stepID string, input map[string]any, ai AI) (Result, error) {
	t.Helper()
	ps := plan.Step(stepID)
	vars := workflow.Vars{"input": input, "steps": map[string]any{}, "run": map[string]any{"id": "run-1"}, "env": map[string]any{"name": "dev"}}
	with, err := plan.RenderWith(ps, vars)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	node, ok := aiRegistry().Node(ps.Uses)
	if !ok {
		t.Fatalf("no node %s", ps.Uses)
	}
	if node.Kind(ps.With) != Effect {
		t.Fatalf("%s is %s, want effect", ps.Uses, node.Kind(ps.With))
	}
	return node.(Executor).Execute(context.Background(), &Call{Plan: plan, Step: ps, With: with, Vars: vars, RunID: "run-1", Attempt: 1, Env: &Env{AI: ai}})
}

func okResult() gateway.Result {
	res := gateway.Result{
		Content:  "Hello Ana, write to ana@example.com",
		Received: "Hello Ana, write to <EMAIL_1>",
		Record: gateway.Record{
			RequestID: "req-1", Connector: "local", Vendor: "moat-local", Model: "local-classifier",
			Findings: map[string]int{"email": 1}, Decisions: map[string]int{"tokenize": 1}, CostMicros: 7,
		},
	}
	res.Record.Usage.PromptTokens, res.Record.Usage.CompletionTokens = 12, 3
	// Set from JSON: nodes (and their tests) never import the connectors.
	if err := json.Unmarshal([]byte(`[{"role":"system","content":"Be brief."},{"role":"user","content":"mail <EMAIL_1>"}]`), &res.Sent); err != nil {
		panic(err)
	}
	return res
}

func TestAIChatBuildsTheRequestFromSettings(t *testing.T) {
	t.Parallel()
	plan := aiPlan(t, `
  - id: answer
    uses: ai.chat
    connector: local
    with:
      system: Be brief.
      prompt: "Greet {{ input.name }} about {{ input.topic }}"
      data:
        message: "{{ input.message }}"
        email: "{{ input.email }}"
        card: "{{ input.?card.orValue('') }}"
        owner: "{{ input.account.owner }}"
        notes: "{{ input['account']['notes'] }}"
        note: {value: "{{ input.email }}", class: custom.contact, trust: trusted}
        count: "{{ size(input.list) }}"
        mixed: "from {{ input.email }}"
      maxTokens: 50
      temperature: 0.5
      restore: [pii.email]
      injection: fence
`)
	ai := &fakeAI{res: okResult()}
	if _, err := runAIStep(t, plan, "answer", aiInput, ai); err != nil {
		t.Fatal(err)
	}
	req := ai.only(t)
	wantID := gateway.Identity{Kind: "run", ID: "run-1", Run: "run-1", Project: "helpdesk", Workflow: "support", Step: "answer"}
	if req.Identity != wantID {
		t.Errorf("identity %+v, want %+v", req.Identity, wantID)
	}
	if req.Connector != "local" || req.Model != "" {
		t.Errorf("connector %q model %q", req.Connector, req.Model)
	}
	wantMsgs := []gateway.Message{
		{Role: "system", Content: "Be brief.", Trust: gateway.Trusted},
		// topic is not declared trusted: the gateway scans it as untrusted.
		{Role: "user", Content: "Greet Ana about billing", Trust: gateway.Untrusted},
	}
	if !reflect.DeepEqual(req.Messages, wantMsgs) {
		t.Errorf("messages %+v, want %+v", req.Messages, wantMsgs)
	}
	// Sorted by name; the absent optional card sends nothing.
	wantData := []gateway.DataItem{
		{Name: "count", Value: "2", Trust: gateway.Untrusted},
		{Name: "email", Value: "ana@example.com", Class: "pii.email", Trust: gateway.Untrusted},
		{Name: "message", Value: "My card was charged twice", Class: "customer.content", Trust: gateway.Untrusted},
		{Name: "mixed", Value: "from ana@example.com", Trust: gateway.Untrusted},
		{Name: "note", Value: "ana@example.com", Class: "custom.contact", Trust: gateway.Trusted},
		{Name: "notes", Value: "VIP", Trust: gateway.Untrusted},
		{Name: "owner", Value: "Ana Lima", Class: "pii.name", Trust: gateway.Untrusted},
	}
	if !reflect.DeepEqual(req.Data, wantData) {
		t.Errorf("data\n got %+v\nwant %+v", req.Data, wantData)
	}
	if req.MaxTokens != 50 || req.Temperature == nil || *req.Temperature != 0.5 {
		t.Errorf("maxTokens %d temperature %v", req.MaxTokens, req.Temperature)
	}
	if req.RestoreAll || !reflect.DeepEqual(req.Restore, []string{"pii.email"}) || req.Injection != gateway.InjectionFence {
		t.Errorf("restore %v/%v injection %q", req.RestoreAll, req.Restore, req.Injection)
	}
	if req.Schema != nil || req.Labels != nil || req.Repair {
		t.Errorf("a chat asks for no schema or labels: %+v", req)
	}

	// The card, when given, takes its declared class.
	withCard := map[string]any{"card": "4111 1111 1111 1111"}
	for k, v := range aiInput {
		withCard[k] = v
	}
	ai = &fakeAI{res: okResult()}
	if _, err := runAIStep(t, plan, "answer", withCard, ai); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range ai.only(t).Data {
		if d.Name == "card" {
			found = d.Class == "pii.card" && d.Trust == gateway.Untrusted && d.Value == "4111 1111 1111 1111"
		}
	}
	if !found {
		t.Errorf("card item: %+v", ai.only(t).Data)
	}
}

func TestAIDefaults(t *testing.T) {
	t.Parallel()
	plan := aiPlan(t, `
  - {id: plain, uses: ai.chat, with: {model: support, prompt: "Hi {{ input.name }}, it is {{ run.id }}"}}
  - {id: none, uses: ai.chat, needs: [], connector: local, with: {model: gpt-4o-mini, prompt: Hi, restore: none}}
`)
	ai := &fakeAI{res: okResult()}
	if _, err := runAIStep(t, plan, "plain", aiInput, ai); err != nil {
		t.Fatal(err)
	}
	req := ai.only(t)
	if req.Model != "support" || req.Connector != "" {
		t.Errorf("model %q connector %q, want the alias alone", req.Model, req.Connector)
	}
	if !req.RestoreAll || req.Restore != nil || req.Injection != gateway.InjectionBlock {
		t.Errorf("defaults: restoreAll %v restore %v injection %q", req.RestoreAll, req.Restore, req.Injection)
	}
	if req.MaxTokens != 0 || req.Temperature != nil {
		t.Errorf("unset options were set: %d %v", req.MaxTokens, req.Temperature)
	}
	// Trusted input and run facts keep the instruction trusted.
	if len(req.Messages) != 1 || req.Messages[0].Trust != gateway.Trusted || req.Messages[0].Content != "Hi Ana, it is run-1" {
		t.Errorf("messages %+v", req.Messages)
	}

	ai = &fakeAI{res: okResult()}
	if _, err := runAIStep(t, plan, "none", aiInput, ai); err != nil {
		t.Fatal(err)
	}
	req = ai.only(t)
	if req.Model != "gpt-4o-mini" || req.Connector != "local" || req.RestoreAll || req.Restore != nil {
		t.Errorf("connector model: %q %q restore %v %v", req.Connector, req.Model, req.RestoreAll, req.Restore)
	}
}

func TestAIStepNeedsAConnectorOrAModel(t *testing.T) {
	t.Parallel()
	plan := aiPlan(t, `
  - {id: a, uses: ai.chat, with: {prompt: Hi}}
`)
	ai := &fakeAI{res: okResult()}
	_, err := runAIStep(t, plan, "a", aiInput, ai)
	if !IsPermanent(err) || !errors.Is(err, ErrNoModel) || !strings.Contains(err.Error(), "set connector: on the step or with.model") {
		t.Fatalf("err %v", err)
	}
	if ai.calls() != 0 {
		t.Fatal("the gateway was called")
	}
}

func TestAIStepWithoutGatewayFails(t *testing.T) {
	t.Parallel()
	plan := aiPlan(t, `
  - {id: a, uses: ai.chat, connector: local, with: {prompt: Hi}}
`)
	_, err := runAIStep(t, plan, "a", aiInput, nil)
	if !IsPermanent(err) || !errors.Is(err, ErrNoAI) || !strings.Contains(err.Error(), "no AI gateway is configured") {
		t.Fatalf("err %v", err)
	}
}

func TestAIRefusesUntrustedInputInInstructions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, with, field string
	}{
		{"prompt", `{prompt: "Answer: {{ input.message }}"}`, "input.message"},
		{"system", `{system: "{{ input.message }}", prompt: Hi}`, "input.message"},
		{"message content", `{messages: [{role: user, content: Hi}, {role: assistant, content: "{{ input.message.upperAscii() }}"}]}`, "input.message"},
		{"index", `{prompt: "{{ input['message'] }}"}`, "input.message"},
		{"optional", `{prompt: "{{ input.?message.orValue('') }}"}`, "input.message"},
		{"the whole input", `{prompt: "{{ input }}"}`, "input"},
		{"inside a list", `{prompt: "{{ [input][0] }}"}`, "input"},
		{"an object holding it", `{prompt: "{{ input.account }}"}`, "input.account"},
		{"through a $ref", `{prompt: "{{ input.account.notes }}"}`, "input.account.notes"},
		{"a computed key", `{prompt: "{{ input[['message'][0]] }}"}`, "input"},
		{"a comprehension", `{prompt: "{{ input.account.map(k, k) }}"}`, "input.account"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := []byte(aiHeader + "  - {id: a, uses: ai.chat, connector: local, with: " + tc.with + "}\n")
			named := func(what string, err error) {
				t.Helper()
				if !strings.Contains(err.Error(), " "+tc.field+" is declared x-trust: untrusted") || !strings.Contains(err.Error(), "data:") {
					t.Errorf("%s: message %q does not name %s or point to data:", what, err, tc.field)
				}
				if strings.Contains(err.Error(), "charged twice") {
					t.Errorf("%s: message %q carries the value", what, err)
				}
			}
			// Refused when the workflow is saved…
			_, err := workflow.Load("support.yaml", src, aiRegistry())
			if err == nil {
				t.Fatal("the workflow was accepted")
			}
			named("save", err)
			// …and, for a version stored before the check, when the step runs.
			def, _, err := workflow.Parse("support.yaml", src)
			if err != nil {
				t.Fatal(err)
			}
			canonical, _ := json.Marshal(def)
			plan, err := workflow.FromCanonical(canonical, aiRegistry())
			if err != nil {
				t.Fatalf("stored version: %v", err)
			}
			ai := &fakeAI{res: okResult()}
			_, err = runAIStep(t, plan, "a", aiInput, ai)
			if !IsPermanent(err) || !errors.Is(err, ErrUntrustedInstruction) {
				t.Fatalf("err %v, want a permanent refusal", err)
			}
			named("run", err)
			if ai.calls() != 0 {
				t.Error("the gateway was called")
			}
		})
	}
	// The same field as data is fine; a shadowing variable is not the input.
	plan := aiPlan(t, `
  - {id: a, uses: ai.chat, connector: local, with: {prompt: "{{ [1].map(input, input) }}", data: {message: "{{ input.message }}"}}}
`)
	ai := &fakeAI{res: okResult()}
	if _, err := runAIStep(t, plan, "a", aiInput, ai); err != nil {
		t.Fatal(err)
	}
	if m := ai.only(t).Messages; len(m) != 1 || m[0].Trust != gateway.Trusted {
		t.Errorf("messages %+v", m)
	}
}

func TestAIErrorsMapToRetries(t *testing.T) {
	t.Parallel()
	plan := aiPlan(t, `
  - {id: a, uses: ai.chat, connector: local, with: {prompt: Hi}}
`)
	for _, tc := range []struct {
		err       error
		permanent bool
	}{
		{&gateway.Error{Stage: "limit", Code: gateway.CodeRateLimited, Message: "rate limit of connector local reached"}, false},
		{&gateway.Error{Stage: "call", Code: gateway.CodeUnavailable, Message: "upstream unavailable"}, false},
		{&gateway.Error{Stage: "record", Code: gateway.CodeInternal, Message: "the audit record could not be written"}, false},
		{&gateway.Error{Stage: "decide", Code: gateway.CodeBlocked, Message: "a secret (aws key) is blocked"}, true},
		{&gateway.Error{Stage: "who", Code: gateway.CodeUnknownModel, Message: "no connector local"}, true},
		{&gateway.Error{Stage: "check", Code: gateway.CodeCheckFailed, Message: "answer failed its checks"}, true},
		{errors.New("connection reset"), false},
	} {
		ai := &fakeAI{err: tc.err}
		res, err := runAIStep(t, plan, "a", aiInput, ai)
		if err == nil || IsPermanent(err) != tc.permanent {
			t.Errorf("%v: permanent %v, want %v", tc.err, IsPermanent(err), tc.permanent)
			continue
		}
		if err.Error() != tc.err.Error() {
			t.Errorf("error text %q, want the gateway's %q", err, tc.err)
		}
		if res.Output != nil {
			t.Errorf("%v: output %v without a record", tc.err, res.Output)
		}
	}
	// A refused call that was recorded shows why.
	blocked := gateway.Result{Received: "mail bob@example.org", Record: gateway.Record{RequestID: "req-9", Connector: "local", Findings: map[string]int{"secret": 1}, Decisions: map[string]int{"block": 1}}}
	ai := &fakeAI{res: blocked, err: &gateway.Error{Stage: "check", Code: gateway.CodeCheckFailed, Message: "the answer holds personal data that was not in the prompt"}}
	res, err := runAIStep(t, plan, "a", aiInput, ai)
	out, _ := res.Output.(map[string]any)
	if !IsPermanent(err) || out["requestId"] != "req-9" || !reflect.DeepEqual(out["decisions"], map[string]any{"block": int64(1)}) {
		t.Fatalf("err %v output %v", err, out)
	}
	for _, key := range []string{"content", "received"} {
		if _, has := out[key]; has {
			t.Errorf("a refused call keeps no %s: %v", key, out)
		}
	}
}

func TestAIOutputShowsWhatLeftAndCameBack(t *testing.T) {
	t.Parallel()
	plan := aiPlan(t, `
  - {id: a, uses: ai.chat, connector: local, with: {system: Be brief., data: {email: "{{ input.email }}"}}}
`)
	ai := &fakeAI{res: okResult()}
	res, err := runAIStep(t, plan, "a", aiInput, ai)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"content": "Hello Ana, write to ana@example.com", "model": "local-classifier", "connector": "local", "vendor": "moat-local",
		"requestId": "req-1", "usage": map[string]any{"promptTokens": int64(12), "completionTokens": int64(3)}, "costMicros": int64(7),
		"sent": []any{
			map[string]any{"role": "system", "content": "Be brief."},
			map[string]any{"role": "user", "content": "mail <EMAIL_1>"},
		},
		"received": "Hello Ana, write to <EMAIL_1>", "findings": map[string]any{"email": int64(1)}, "decisions": map[string]any{"tokenize": int64(1)},
	}
	if !reflect.DeepEqual(res.Output, want) {
		t.Fatalf("output\n got %#v\nwant %#v", res.Output, want)
	}
	// It is what a step stores: plain JSON.
	if _, err := json.Marshal(res.Output); err != nil {
		t.Fatal(err)
	}
}

func TestAIClassify(t *testing.T) {
	t.Parallel()
	plan := aiPlan(t, `
  - id: triage
    uses: ai.classify
    connector: local
    with:
      labels: [billing, technical, account]
      examples:
        - {text: I was charged twice, label: billing}
        - {text: The app crashes, label: technical}
        - {text: Reset my password, label: account}
      text: "{{ input.message }}"
      data: {email: "{{ input.email }}"}
`)
	res := okResult()
	res.Content, res.Value = "Billing", "billing"
	ai := &fakeAI{res: res}
	out, err := runAIStep(t, plan, "triage", aiInput, ai)
	if err != nil {
		t.Fatal(err)
	}
	req := ai.only(t)
	if !reflect.DeepEqual(req.Labels, []string{"billing", "technical", "account"}) {
		t.Errorf("labels %v", req.Labels)
	}
	wantEx := []gateway.Example{{Text: "I was charged twice", Label: "billing"}, {Text: "The app crashes", Label: "technical"}, {Text: "Reset my password", Label: "account"}}
	if !reflect.DeepEqual(req.Examples, wantEx) {
		t.Errorf("examples %v", req.Examples)
	}
	wantData := []gateway.DataItem{
		{Name: "email", Value: "ana@example.com", Class: "pii.email", Trust: gateway.Untrusted},
		{Name: "text", Value: "My card was charged twice", Class: "customer.content", Trust: gateway.Untrusted},
	}
	if !reflect.DeepEqual(req.Data, wantData) || len(req.Messages) != 0 {
		t.Errorf("data %+v messages %+v", req.Data, req.Messages)
	}
	if got := out.Output.(map[string]any)["label"]; got != "billing" {
		t.Errorf("label %v", got)
	}

	// An answer outside the labels never steers the workflow.
	res.Content, res.Value = "refund", nil
	_, err = runAIStep(t, plan, "triage", aiInput, &fakeAI{res: res})
	if !IsPermanent(err) {
		t.Fatalf("err %v", err)
	}
}

func TestAIExtract(t *testing.T) {
	t.Parallel()
	plan := aiPlan(t, `
  - id: fields
    uses: ai.extract
    connector: local
    with:
      data: {message: "{{ input.message }}"}
      schema:
        type: object
        properties:
          entities: {type: array, maxItems: 10}
        required: [entities]
`)
	res := okResult()
	res.Value = map[string]any{"entities": []any{map[string]any{"type": "email", "start": float64(3)}}}
	ai := &fakeAI{res: res}
	out, err := runAIStep(t, plan, "fields", aiInput, ai)
	if err != nil {
		t.Fatal(err)
	}
	req := ai.only(t)
	if !req.Repair || req.SchemaName != "fields" || req.Schema["type"] != "object" {
		t.Errorf("schema %v name %q repair %v", req.Schema, req.SchemaName, req.Repair)
	}
	want := map[string]any{"entities": []any{map[string]any{"type": "email", "start": int64(3)}}}
	if got := out.Output.(map[string]any)["value"]; !reflect.DeepEqual(got, want) {
		t.Errorf("value %#v, want plain values %#v", got, want)
	}
}

func TestAIInsideForeach(t *testing.T) {
	t.Parallel()
	plan := aiPlan(t, `
  - id: each
    uses: foreach
    connector: local
    with:
      items: "{{ input.list }}"
      step:
        uses: ai.classify
        with: {labels: [a, b], text: "{{ item }}", system: "Classify for {{ input.name }}"}
`)
	res := okResult()
	res.Value = "a"
	ai := &fakeAI{res: res}
	out, err := runAIStep(t, plan, "each", aiInput, ai)
	if err != nil {
		t.Fatal(err)
	}
	if ai.calls() != 2 || out.Output.(map[string]any)["count"] != int64(2) {
		t.Fatalf("calls %d output %v", ai.calls(), out.Output)
	}
	for _, r := range ai.reqs {
		if r.Connector != "local" || len(r.Data) != 1 || r.Data[0].Trust != gateway.Untrusted || r.Messages[0].Trust != gateway.Trusted {
			t.Errorf("request %+v", r)
		}
	}
	// The step a foreach repeats is checked at save like any other.
	_, err = workflow.Load("support.yaml", []byte(aiHeader+`
  - id: each
    uses: foreach
    connector: local
    with:
      items: "{{ input.list }}"
      step: {uses: ai.chat, with: {prompt: "{{ item }} {{ input.message }}"}}
`), aiRegistry())
	if err == nil || !strings.Contains(err.Error(), "input.message is declared x-trust: untrusted") {
		t.Fatalf("err %v", err)
	}
}

func TestAIChecksAtSave(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, step, want string
	}{
		{"too few labels", `{id: a, uses: ai.classify, connector: local, with: {labels: [a], text: x}}`, "/steps/0/with/labels"},
		{"duplicate labels", `{id: a, uses: ai.classify, connector: local, with: {labels: [a, a], text: x}}`, "/steps/0/with/labels"},
		{"example label not in labels", `{id: a, uses: ai.classify, connector: local, with: {labels: [a, b], text: x, examples: [{text: t, label: c}]}}`, "/steps/0/with/examples/0/label"},
		{"templated label", `{id: a, uses: ai.classify, connector: local, with: {labels: [a, "{{ input.topic }}"], text: x}}`, "/steps/0/with/labels/1"},
		{"nothing to classify", `{id: a, uses: ai.classify, connector: local, with: {labels: [a, b]}}`, "/steps/0/with"},
		{"text twice", `{id: a, uses: ai.classify, connector: local, with: {labels: [a, b], text: x, data: {text: y}}}`, "/steps/0/with/data/text"},
		{"schema does not compile", `{id: a, uses: ai.extract, connector: local, with: {data: {m: x}, schema: {type: 5}}}`, "/steps/0/with/schema"},
		{"schema refers outside", `{id: a, uses: ai.extract, connector: local, with: {data: {m: x}, schema: {$ref: "https://example.com/s.json"}}}`, "/steps/0/with/schema"},
		{"schema missing", `{id: a, uses: ai.extract, connector: local, with: {data: {m: x}}}`, "/steps/0/with"},
		{"prompt and messages", `{id: a, uses: ai.chat, connector: local, with: {prompt: x, messages: [{role: user, content: y}]}}`, "/steps/0/with/messages"},
		{"chat with nothing", `{id: a, uses: ai.chat, connector: local, with: {system: x}}`, "/steps/0/with"},
		{"bad role", `{id: a, uses: ai.chat, connector: local, with: {messages: [{role: tool, content: y}]}}`, "/steps/0/with/messages/0/role"},
		{"maxTokens", `{id: a, uses: ai.chat, connector: local, with: {prompt: x, maxTokens: 0}}`, "/steps/0/with/maxTokens"},
		{"temperature", `{id: a, uses: ai.chat, connector: local, with: {prompt: x, temperature: 3}}`, "/steps/0/with/temperature"},
		{"restore", `{id: a, uses: ai.chat, connector: local, with: {prompt: x, restore: some}}`, "/steps/0/with/restore"},
		{"injection", `{id: a, uses: ai.chat, connector: local, with: {prompt: x, injection: allow}}`, "/steps/0/with/injection"},
		{"data name", `{id: a, uses: ai.chat, connector: local, with: {data: {"a b": x}}}`, "/steps/0/with"},
		{"data trust", `{id: a, uses: ai.chat, connector: local, with: {data: {a: {value: x, trust: maybe}}}}`, "/steps/0/with/data/a"},
		{"unknown connector", `{id: a, uses: ai.chat, connector: openai, with: {prompt: x}}`, "/steps/0/connector"},
		{"unknown setting", `{id: a, uses: ai.chat, connector: local, with: {prompt: x, tools: []}}`, "/steps/0/with"},
	} {
		_, err := workflow.Load("support.yaml", []byte("apiVersion: moat/v1\nkind: Workflow\nname: s\nsteps:\n  - "+tc.step+"\n"), aiRegistry())
		var ps workflow.Problems
		if !errors.As(err, &ps) {
			t.Errorf("%s: err %v, want problems", tc.name, err)
			continue
		}
		found := false
		for _, p := range ps {
			found = found || p.Pointer == tc.want || strings.HasPrefix(p.Pointer, tc.want+"/")
		}
		if !found {
			t.Errorf("%s: no problem at %s in %v", tc.name, tc.want, err)
		}
	}
}

func TestStoredVersionLoadsAfterItsConnectorIsRemoved(t *testing.T) {
	t.Parallel()
	r := Builtins()
	r.SetConnectors(func(name string) bool { return name == "local" })
	src := []byte("apiVersion: moat/v1\nkind: Workflow\nname: s\nsteps:\n  - {id: a, uses: ai.chat, connector: local, with: {prompt: x}}\n")
	plan, err := workflow.Load("s.yaml", src, r)
	if err != nil {
		t.Fatal(err)
	}
	r.SetConnectors(nil)
	if _, err := workflow.Load("s.yaml", src, r); err == nil || !strings.Contains(err.Error(), `unknown connector "local"`) {
		t.Fatalf("saving again: %v", err)
	}
	if _, err := workflow.FromCanonical(plan.Canonical, r); err != nil {
		t.Fatalf("the stored version no longer loads: %v", err)
	}
}

func TestRegistryConnectorsMayChangeWhileRead(t *testing.T) {
	t.Parallel()
	r := Builtins()
	if r.HasConnector("local") {
		t.Fatal("a registry knows no connector until told")
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 200 {
				if i%2 == 0 {
					r.SetConnectors(func(name string) bool { return name == "local" })
				} else if j%2 == 0 {
					r.SetConnectors(nil)
				}
				r.HasConnector("local")
			}
		})
	}
	wg.Wait()
	r.SetConnectors(func(name string) bool { return name == "local" })
	if !r.HasConnector("local") || r.HasConnector("openai") {
		t.Fatal("HasConnector does not follow SetConnectors")
	}
}

func TestExpressionRefs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		src    string
		input  []string // paths, joined with '.'
		other  []string
		single string // "-" when not a single path
	}{
		{"input.a.b", []string{"a.b"}, nil, "a.b"},
		{`input["a"].b`, []string{"a.b"}, nil, "a.b"},
		{"input.?a.orValue('')", []string{"a"}, nil, "a"},
		{"input.list[0].x", []string{"list.\x00[].x"}, nil, "list.\x00[].x"},
		{"input[k].x", []string{""}, []string{"k"}, "-"},
		{"input", []string{""}, nil, ""},
		{"steps.a.output + input.b", []string{"b"}, []string{"steps"}, "-"},
		{"[1].map(input, input + 1)", nil, nil, "-"},
		{"input.a.exists(x, x == item)", []string{"a"}, []string{"item"}, "-"},
		{"'literal'", nil, nil, "-"},
	} {
		refs, err := expressionRefs(tc.src)
		if err != nil {
			t.Errorf("%s: %v", tc.src, err)
			continue
		}
		var got []string
		for _, p := range refs.input {
			got = append(got, strings.Join(p, "."))
		}
		if !reflect.DeepEqual(got, tc.input) || !reflect.DeepEqual(refs.other, tc.other) {
			t.Errorf("%s: input %q other %q, want %q %q", tc.src, got, refs.other, tc.input, tc.other)
		}
		p, ok, err := singlePath(tc.src)
		if err != nil || ok != (tc.single != "-") || (ok && strings.Join(p, ".") != tc.single) {
			t.Errorf("%s: single %q %v %v, want %q", tc.src, p, ok, err, tc.single)
		}
	}
}

// FuzzAIInputTrust feeds templates and input schemas to what reads their
// references and annotations: nothing may panic, and a template that refers
// to a field is refused as an instruction whenever that field is declared
// untrusted.
func FuzzAIInputTrust(f *testing.F) {
	f.Add("{{ input.message }}", `{"type":"object","properties":{"message":{"type":"string","x-trust":"untrusted"}}}`)
	f.Add("Hi {{ input['a'][0].b }} {{ steps.x.output }}", `{"properties":{"a":{"items":{"properties":{"b":{"x-data-class":"pii.email"}}}}}}`)
	f.Add("{{ input.a }}", `{"$ref":"#","properties":{"a":{"$ref":"#/$defs/x"}},"$defs":{"x":{"allOf":[{"$ref":"#/$defs/x"}],"x-trust":"untrusted"}}}`)
	f.Add("{{ {'a': {'b': 1}} }} {{ input.?a.orValue(1) }}", `{"patternProperties":{"(":{"x-trust":"untrusted"}}}`)
	f.Fuzz(func(t *testing.T, tmpl, schema string) {
		var root map[string]any
		if json.Unmarshal([]byte(schema), &root) != nil {
			root = nil
		}
		trust := newInputTrust(&workflow.Input{Schema: root})
		_, err := trust.instruction("prompt", tmpl)
		if err != nil && !IsPermanent(err) {
			t.Fatalf("a refusal must be permanent: %v", err)
		}
		class, declared, err := trust.declared("data.x", tmpl)
		if err != nil && !IsPermanent(err) {
			t.Fatalf("a refusal must be permanent: %v", err)
		}
		if err == nil && declared != "" && declared != gateway.Trusted && declared != gateway.Untrusted {
			t.Fatalf("trust %q", declared)
		}
		_ = class
		exprs, _, err := workflow.TemplateExpressions(tmpl)
		if err != nil {
			return
		}
		for _, src := range exprs {
			refs, err := expressionRefs(src)
			if err != nil {
				continue
			}
			for _, p := range refs.input {
				if trust.untrustedWithin(p) {
					if _, err := trust.instruction("prompt", tmpl); err == nil {
						t.Fatalf("%q refers to untrusted %s but is accepted: %v", tmpl, pathName(p), err)
					}
				}
			}
		}
	})
}

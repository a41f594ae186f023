package governance_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/governance"
	"github.com/moatproject/moat/internal/nodes"
	"github.com/moatproject/moat/internal/workflow"
)

// testResources: an alias whose chain goes from a managed service to an
// on-premises model server, and a connector that runs in Moat.
func testResources() gateway.Resources {
	zero, thirty := 0, 30
	return gateway.Resources{
		Vendors: []gateway.Vendor{
			{Name: "acme-ai", Location: gateway.ManagedService, Region: "eu-west", RetentionDays: &thirty},
			{Name: "in-house", Location: gateway.OnPremises, RetentionDays: &zero},
			{Name: "trainer", Location: gateway.ManagedService, TrainsOnCustomerData: true, RetentionDays: &zero},
			{Name: "moat-local", Location: gateway.OnPremises, RetentionDays: &zero},
		},
		Connectors: []gateway.Connector{
			{Name: "acme", Type: gateway.TypeOpenAI, Vendor: "acme-ai", BaseURL: "https://api.acme.example/v1",
				Credential: &gateway.Credential{Env: "ACME_KEY"}, Models: []string{"acme-large"}},
			{Name: "ollama", Type: gateway.TypeOpenAI, Vendor: "in-house", BaseURL: "http://ollama.internal:11434/v1", Models: []string{"llama3"}},
			{Name: "cheap", Type: gateway.TypeAnthropic, Vendor: "trainer", Credential: &gateway.Credential{Env: "CHEAP_KEY"}},
			{Name: "local", Type: gateway.TypeLocal, Vendor: "moat-local", Models: []string{"classifier"}},
		},
		Models: []gateway.Model{
			{Name: "support", Chain: []gateway.ModelTarget{{Connector: "acme", Model: "acme-large"}, {Connector: "ollama"}}},
			{Name: "bargain", Chain: []gateway.ModelTarget{{Connector: "cheap"}}},
		},
	}
}

func testCatalog(t *testing.T) *gateway.Catalog {
	t.Helper()
	cat, err := gateway.BuildCatalog(testResources(), gateway.CatalogOptions{
		Environment: "prod",
		Getenv:      func(string) string { return "test-key" },
	})
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

const triage = `apiVersion: moat/v1
kind: Workflow
name: triage
project: support
input:
  schema:
    type: object
    required: [email, body]
    properties:
      email: {type: string, x-data-class: pii.email}
      body: {type: string, x-data-class: customer.content, x-trust: untrusted}
      customer:
        type: object
        properties:
          name: {type: string, x-data-class: pii.name}
          card: {type: string, x-data-class: pii.card}
steps:
  - id: summarise
    uses: ai.chat
    with:
      model: support
      system: Summarise the customer's message in one line.
      data:
        body: "{{ input.body }}"
  - id: reply
    uses: ai.chat
    with:
      model: support
      prompt: "Write a short reply for {{ input.customer }}."
      data:
        email: "{{ input.email }}"
        summary: "{{ steps.summarise.output.content }}"
  - id: notify
    uses: http.request
    if: input.email != ""
    with:
      method: POST
      url: https://hooks.example.com/notify
      body: {to: "{{ input.email }}"}
`

func load(t *testing.T, src string) *workflow.Plan {
	t.Helper()
	reg := nodes.Builtins()
	reg.SetConnectors(testCatalog(t).HasConnector)
	plan, err := workflow.Load("test.yaml", []byte(src), reg)
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

func build(t *testing.T, src string, policy *gateway.Policy) *governance.Map {
	t.Helper()
	m, err := governance.Build(load(t, src), governance.Options{Catalog: testCatalog(t), Policy: policy, Nodes: nodes.Builtins(), Version: 3})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func stepOf(t *testing.T, m *governance.Map, id string) governance.Step {
	t.Helper()
	for _, s := range m.Steps {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no step %s in the map", id)
	return governance.Step{}
}

// flows lists a target's classes as "class coverage action/vendorAction".
func flows(tg governance.Target) []string {
	var out []string
	for _, c := range tg.Classes {
		out = append(out, c.Class+" "+c.Coverage+" "+string(c.Action)+"/"+string(c.VendorAction))
	}
	return out
}

func TestBuildFollowsEachClassToEachConnector(t *testing.T) {
	t.Parallel()
	m := build(t, triage, gateway.DefaultPolicy())
	if m.Project != "support" || m.Workflow != "triage" || m.Version != 3 || m.Environment != "prod" || m.Hash == "" {
		t.Fatalf("header: %+v", m)
	}
	wantInputs := []governance.InputField{
		{Path: "input.body", Class: "customer.content", Trust: gateway.Untrusted},
		{Path: "input.customer"},
		{Path: "input.customer.card", Class: "pii.card"},
		{Path: "input.customer.name", Class: "pii.name"},
		{Path: "input.email", Class: "pii.email"},
	}
	if !slices.Equal(m.Inputs, wantInputs) {
		t.Errorf("inputs: %+v", m.Inputs)
	}

	tests := []struct {
		step    string
		targets [][]string // per target, in chain order
	}{
		// It reads only the body: the e-mail address and the customer's
		// name and card never reach its connectors.
		{"summarise", [][]string{
			{"customer.content item allow/allow"},
			{"customer.content item allow/allow"},
		}},
		// The e-mail is a data item: tokenised whole. The customer object
		// is in the prompt, so only what the detectors recognise of it is
		// tokenised; the summary carries the body's class.
		{"reply", [][]string{
			{"customer.content detected allow/allow", "pii.card detected tokenize/tokenize", "pii.email item tokenize/tokenize", "pii.name detected tokenize/tokenize"},
			{"customer.content detected allow/allow", "pii.card detected tokenize/tokenize", "pii.email item tokenize/tokenize", "pii.name detected tokenize/tokenize"},
		}},
	}
	for _, tt := range tests {
		s := stepOf(t, m, tt.step)
		if s.AI == nil || s.AI.Alias != "support" || s.AI.Unresolved != "" {
			t.Fatalf("%s: %+v", tt.step, s.AI)
		}
		if len(s.AI.Targets) != len(tt.targets) {
			t.Fatalf("%s: %d targets, want %d", tt.step, len(s.AI.Targets), len(tt.targets))
		}
		for i, want := range tt.targets {
			tg := s.AI.Targets[i]
			if got := flows(tg); !slices.Equal(got, want) {
				t.Errorf("%s → %s: %q, want %q", tt.step, tg.Connector, got, want)
			}
			if tg.Fallback != i {
				t.Errorf("%s → %s: fallback %d, want %d", tt.step, tg.Connector, tg.Fallback, i)
			}
		}
		acme, ollama := s.AI.Targets[0], s.AI.Targets[1]
		if acme.Connector != "acme" || acme.Model != "acme-large" || acme.Type != "openai" || !acme.Leaves ||
			acme.Vendor != (governance.Vendor{Name: "acme-ai", Location: gateway.ManagedService, Region: "eu-west", RetentionDays: 30}) {
			t.Errorf("%s: first target %+v", tt.step, acme)
		}
		if ollama.Connector != "ollama" || ollama.Model != "llama3" || ollama.Vendor.Name != "in-house" || ollama.Vendor.Location != gateway.OnPremises {
			t.Errorf("%s: fallback %+v", tt.step, ollama)
		}
	}

	reply := stepOf(t, m, "reply")
	for _, c := range reply.AI.Targets[0].Classes {
		if c.Class == "pii.email" && (c.Rule != "pii-tokenized" || !slices.Equal(c.From, []string{"input.email"}) || c.Trust != gateway.Untrusted) {
			t.Errorf("pii.email: %+v", c)
		}
		if c.Class == "customer.content" && !slices.Equal(c.From, []string{"steps.summarise"}) {
			t.Errorf("customer.content comes from %q, want steps.summarise", c.From)
		}
	}
	if got := stepOf(t, m, "summarise").Carries; !slices.Equal(got, []string{"customer.content"}) {
		t.Errorf("summarise carries %q", got)
	}

	notify := stepOf(t, m, "notify")
	if notify.HTTP == nil || notify.HTTP.Host != "hooks.example.com" || notify.HTTP.Method != "POST" {
		t.Fatalf("notify: %+v", notify.HTTP)
	}
	if want := []governance.Sent{{Class: "pii.email", Coverage: governance.CoverageNone, From: []string{"input.email"}}}; !slices.EqualFunc(notify.HTTP.Sends, want, sentEqual) {
		t.Errorf("notify sends %+v", notify.HTTP.Sends)
	}
	// Its condition reads the e-mail too, but sends nothing.
	if len(notify.Reads) != 1 || !slices.Equal(notify.Reads[0].Settings, []string{"/if", "/with/body/to"}) {
		t.Errorf("notify reads %+v", notify.Reads)
	}
	if got := stepOf(t, m, "summarise").Next; !slices.Equal(got, []string{"reply"}) {
		t.Errorf("summarise next %q", got)
	}
}

func sentEqual(a, b governance.Sent) bool {
	return a.Class == b.Class && a.Coverage == b.Coverage && a.Trust == b.Trust && slices.Equal(a.From, b.From)
}

// TestBuildAsksThePolicyGiven: the map shows the decisions of the policy
// it is handed, per vendor and, as the gateway applies them, the strictest
// over the chain.
func TestBuildAsksThePolicyGiven(t *testing.T) {
	t.Parallel()
	onPremAllowed, err := gateway.CompilePolicy(append([]gateway.Rule{{
		Name: "pii-on-premises", When: `class.startsWith("pii.") && vendor.location == "on-premises"`, Action: gateway.Allow,
	}, {
		Name: "untrusted-content-masked", When: `class == "customer.content" && trust == "untrusted"`, Action: gateway.Mask,
	}}, gateway.DefaultRules()...), gateway.PolicyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := build(t, triage, onPremAllowed)
	reply := stepOf(t, m, "reply")
	var email []string
	for _, tg := range reply.AI.Targets {
		for _, c := range tg.Classes {
			if c.Class == "pii.email" {
				email = append(email, tg.Connector+" "+string(c.Action)+" "+c.Rule+" / "+string(c.VendorAction)+" "+c.VendorRule)
			}
		}
	}
	// The on-premises server alone would see the address; on this route
	// the managed service's decision wins, for whichever answers.
	want := []string{
		"acme tokenize pii-tokenized / tokenize pii-tokenized",
		"ollama tokenize pii-tokenized / allow pii-on-premises",
	}
	if !slices.Equal(email, want) {
		t.Errorf("pii.email: %q, want %q", email, want)
	}
	summarise := stepOf(t, m, "summarise")
	if got := flows(summarise.AI.Targets[0]); !slices.Equal(got, []string{"customer.content item mask/mask"}) {
		t.Errorf("summarise: %q (the body is untrusted, so the trust rule applies)", got)
	}
}

func TestBuildRoutes(t *testing.T) {
	t.Parallel()
	const tmpl = `apiVersion: moat/v1
kind: Workflow
name: routes
input:
  schema:
    type: object
    properties:
      email: {type: string, x-data-class: pii.email}
      token: {type: string, x-data-class: secret.api_key}
      people:
        type: array
        items:
          type: object
          properties:
            name: {type: string, x-data-class: pii.name}
            note: {type: string}
steps:
  - {id: bargain, uses: ai.chat, needs: [], with: {model: bargain, data: {email: "{{ input.email }}"}}}
  - {id: local, uses: ai.classify, needs: [], connector: local, with: {labels: [a, b], text: "{{ input.email }}"}}
  - {id: unknown, uses: ai.chat, needs: [], with: {model: nope, prompt: hello}}
  - {id: secret, uses: ai.chat, needs: [], with: {model: support, data: {key: "{{ input.token }}"}}}
  - id: each
    uses: foreach
    needs: []
    with:
      items: "{{ input.people }}"
      step: {uses: ai.chat, with: {model: support, data: {who: "{{ item.name }}"}}}
  - {id: computed, uses: http.request, needs: [], with: {url: "https://{{ input.email }}/x"}}
`
	m := build(t, tmpl, gateway.DefaultPolicy())

	bargain := stepOf(t, m, "bargain")
	if got := flows(bargain.AI.Targets[0]); !slices.Equal(got, []string{"pii.email item block/block"}) || bargain.AI.Targets[0].Classes[0].Reaches() {
		t.Errorf("a vendor that trains on what it is sent: %q", got)
	}
	if r := bargain.AI.Targets[0].Classes[0].Rule; r != "pii-to-training-or-retention" {
		t.Errorf("blocked by %q", r)
	}

	local := stepOf(t, m, "local")
	if len(local.AI.Targets) != 1 || local.AI.Targets[0].Leaves || local.AI.Targets[0].Type != "local" || local.AI.Connector != "local" {
		t.Errorf("local: %+v", local.AI)
	}
	if got := flows(local.AI.Targets[0]); !slices.Equal(got, []string{"pii.email item tokenize/tokenize"}) {
		t.Errorf("ai.classify's text is a data item: %q", got)
	}

	if u := stepOf(t, m, "unknown").AI; !strings.Contains(u.Unresolved, `unknown model "nope"`) || len(u.Targets) != 0 {
		t.Errorf("unknown alias: %+v", u)
	}

	secret := stepOf(t, m, "secret")
	if got := flows(secret.AI.Targets[0]); !slices.Equal(got, []string{"secret.api_key item block/block"}) || secret.AI.Targets[0].Classes[0].Rule != gateway.RuleSecret {
		t.Errorf("secrets are blocked by the hard rule: %q", got)
	}

	each := stepOf(t, m, "each")
	if each.Repeats != "ai.chat" || each.AI == nil || len(each.AI.Targets) != 2 {
		t.Fatalf("foreach: %+v", each)
	}
	// The item is a person: every class of the list may be in it.
	if got := flows(each.AI.Targets[0]); !slices.Equal(got, []string{"pii.name detected tokenize/tokenize"}) {
		t.Errorf("foreach item: %q", got)
	}

	computed := stepOf(t, m, "computed")
	if computed.HTTP == nil || computed.HTTP.Host != "" {
		t.Errorf("a computed host: %+v", computed.HTTP)
	}
}

func TestBuildWithoutAGateway(t *testing.T) {
	t.Parallel()
	m, err := governance.Build(load(t, triage), governance.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := stepOf(t, m, "reply")
	if s.AI.Unresolved != "this server has no AI gateway" || len(s.AI.Sends) == 0 {
		t.Errorf("reply: %+v", s.AI)
	}
	if _, err := governance.Build(load(t, triage), governance.Options{Catalog: testCatalog(t)}); err == nil {
		t.Error("a catalog without its policy was accepted")
	}
	if _, err := governance.Build(nil, governance.Options{}); err == nil {
		t.Error("no plan was accepted")
	}
}

func TestVendorsReport(t *testing.T) {
	t.Parallel()
	m := build(t, triage, gateway.DefaultPolicy())
	r := governance.Vendors("support", []*governance.Map{m})
	if r.Environment != "prod" || len(r.Workflows) != 1 || r.Workflows[0] != (governance.WorkflowRef{Project: "support", Workflow: "triage", Version: 3}) {
		t.Fatalf("report: %+v", r)
	}
	var got []string
	for _, v := range r.Vendors {
		for _, c := range v.Classes {
			var steps []string
			for _, s := range c.Sources {
				steps = append(steps, s.Step+":"+string(s.Action))
			}
			got = append(got, v.Name+" "+c.Class+" "+strings.Join(steps, ","))
		}
	}
	want := []string{
		"acme-ai customer.content summarise:allow,reply:allow",
		"acme-ai pii.card reply:tokenize",
		"acme-ai pii.email reply:tokenize",
		"acme-ai pii.name reply:tokenize",
		"in-house customer.content summarise:allow,reply:allow",
		"in-house pii.card reply:tokenize",
		"in-house pii.email reply:tokenize",
		"in-house pii.name reply:tokenize",
	}
	if !slices.Equal(got, want) {
		t.Errorf("vendors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(r.Hosts) != 1 || r.Hosts[0].Host != "hooks.example.com" || r.Hosts[0].Classes[0].Class != "pii.email" {
		t.Errorf("hosts: %+v", r.Hosts)
	}
	var b strings.Builder
	if err := governance.WriteVendorsText(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"acme-ai", "managed-service", "eu-west", "pii.email", "tokenize", "support/triage@3 reply", "hooks.example.com"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
}

func TestRenderFormats(t *testing.T) {
	t.Parallel()
	m := build(t, triage, gateway.DefaultPolicy())
	tests := []struct {
		format governance.Format
		want   []string
	}{
		{governance.FormatJSON, []string{`"workflow": "triage"`, `"action": "tokenize"`}},
		{governance.FormatMermaid, []string{"flowchart LR\n", `"input.email<br/>pii.email"`, `"acme (openai)<br/>vendor acme-ai`, "fallback 1<br/>customer.content: allow"}},
		{governance.FormatDot, []string{"digraph flow {\n", `label="support/triage version 3\nenvironment prod"`, `pii.email: tokenize`, "shape=cylinder"}},
	}
	for _, tt := range tests {
		out, err := governance.Render(m, tt.format)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range tt.want {
			if !strings.Contains(string(out), want) {
				t.Errorf("%s lacks %q:\n%s", tt.format, want, out)
			}
		}
	}
	var back governance.Map
	out, _ := governance.Render(m, governance.FormatJSON)
	if err := json.Unmarshal(out, &back); err != nil || back.Steps[1].AI.Targets[1].Connector != "ollama" {
		t.Errorf("json does not read back: %v", err)
	}
	for _, bad := range []string{"svg", "JSON", "mermaid "} {
		if _, err := governance.ParseFormat(bad); err == nil {
			t.Errorf("format %q accepted", bad)
		}
	}
}

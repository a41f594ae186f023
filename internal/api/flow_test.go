package api_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/api"
	"github.com/moatproject/moat/internal/engine"
	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/governance"
	"github.com/moatproject/moat/internal/nodes"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/sqlite"
)

// storeResources reads the gateway's resources from the stack's store, as
// the server does, so resources put through the API reach the gateway.
type storeResources struct{ st store.Store }

func (s storeResources) LoadResources(ctx context.Context) (gateway.Resources, error) {
	all, err := s.st.ListResources(ctx, "")
	if err != nil {
		return gateway.Resources{}, err
	}
	return api.DecodeResources(all)
}

// refuseRecorder fails every record: drawing a map makes no AI call, and
// one that did would fail here.
type refuseRecorder struct{}

func (refuseRecorder) Record(context.Context, gateway.Record) error {
	return errors.New("flow tests make no AI calls")
}

// newGatewayStack is newStack with an AI gateway in environment prod on the
// store's resources, and the engine knowing its connectors.
func newGatewayStack(t *testing.T) *stack {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	gw, err := gateway.New(ctx, gateway.Config{
		Environment: "prod", Resources: storeResources{st}, Recorder: refuseRecorder{},
		Getenv: func(string) string { return "" },
	})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	reg := nodes.Builtins()
	reg.SetConnectors(func(name string) bool { return gw.Catalog().HasConnector(name) })
	eng, err := engine.New(engine.Config{Store: st, Registry: reg, Logger: log, PollInterval: 20 * time.Millisecond, AI: gw})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	if err := eng.Migrate(ctx); err != nil {
		st.Close()
		t.Fatal(err)
	}
	err = st.InTx(ctx, func(tx store.Tx) error {
		return tx.CreateToken(ctx, store.Token{ID: store.NewID("tok"), Name: "bootstrap", Role: "admin",
			Hash: api.HashToken(bootstrapToken), CreatedAt: time.Now().UTC()})
	})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Deps{Store: st, Engine: eng, Gateway: gw, Logger: log, Version: "test",
		Ready: func(context.Context) error { return nil }}))
	t.Cleanup(func() {
		srv.Close()
		st.Close()
		if strings.Contains(logs.String(), `"msg":"request failed"`) {
			t.Errorf("the API hit an internal error:\n%s", logs.String())
		}
		if strings.Contains(logs.String(), bootstrapToken) {
			t.Errorf("the token was written to the log:\n%s", logs.String())
		}
	})
	return &stack{URL: srv.URL, Store: st, Eng: eng, logs: logs}
}

const flowWorkflow = `apiVersion: moat/v1
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
steps:
  - id: summarise
    uses: ai.chat
    with:
      model: support
      system: Summarise the message in one line.
      data: {body: "{{ input.body }}"}
  - id: reply
    uses: ai.chat
    with:
      model: support
      prompt: Write a short reply.
      data: {email: "{{ input.email }}", summary: "{{ steps.summarise.output.content }}"}
  - id: local
    uses: ai.classify
    connector: ollama
    with: {labels: [refund, other], text: "{{ input.body }}"}
`

// putFlowResources configures a managed service and an on-premises model
// server, and an alias that falls back from the first to the second.
func putFlowResources(t *testing.T, s *stack) {
	t.Helper()
	for _, r := range []struct{ path, body string }{
		{"/api/v1/vendors/acme-ai", `{"location":"managed-service","region":"eu-west","retentionDays":30}`},
		{"/api/v1/vendors/in-house", `{"location":"on-premises","retentionDays":0}`},
		{"/api/v1/connectors/acme", `{"type":"openai","vendor":"acme-ai","baseURL":"https://api.acme.example/v1","models":["acme-large"],"credential":{"env":"ACME_KEY"}}`},
		{"/api/v1/connectors/ollama", `{"type":"openai","vendor":"in-house","baseURL":"http://ollama.internal:11434/v1","models":["llama3"]}`},
		{"/api/v1/models/support", `{"chain":[{"connector":"acme","model":"acme-large"},{"connector":"ollama"}]}`},
	} {
		s.must(t, http.MethodPut, r.path, r.body, http.StatusCreated)
	}
}

// classesTo lists, per target of a step, "connector class action".
func classesTo(m governance.Map, step string) []string {
	var out []string
	for _, s := range m.Steps {
		if s.ID != step || s.AI == nil {
			continue
		}
		for _, tg := range s.AI.Targets {
			for _, c := range tg.Classes {
				out = append(out, tg.Connector+" "+c.Class+" "+string(c.Action))
			}
		}
	}
	return out
}

func TestFlowMap(t *testing.T) {
	t.Parallel()
	s := newGatewayStack(t)
	putFlowResources(t, s)
	s.saveWorkflow(t, "triage.yaml", flowWorkflow)
	const base = "/api/v1/projects/support/workflows/triage/flow"
	s.runScenarios(t, []scenario{
		{
			name: "json by default", method: http.MethodGet, path: base,
			wantStatus:   http.StatusOK,
			wantContains: []string{`"workflow": "triage"`, `"environment": "prod"`, `"location": "managed-service"`, `"region": "eu-west"`},
			wantHeaders:  map[string]string{"Content-Type": "application/json"},
			after: func(t *testing.T, s *stack, res *response) {
				var m governance.Map
				res.Decode(t, &m)
				if m.Version != 1 {
					t.Errorf("version %d", m.Version)
				}
				tests := map[string][]string{
					// Only the body leaves this step: the address never reaches either connector.
					"summarise": {"acme customer.content allow", "ollama customer.content allow"},
					"reply": {
						"acme customer.content allow", "acme pii.email tokenize",
						"ollama customer.content allow", "ollama pii.email tokenize",
					},
					"local": {"ollama customer.content allow"},
				}
				for step, want := range tests {
					if got := classesTo(m, step); !slices.Equal(got, want) {
						t.Errorf("%s: %q, want %q", step, got, want)
					}
				}
				for _, st := range m.Steps {
					if st.ID == "reply" && (st.AI.Targets[1].Vendor.Location != gateway.OnPremises || st.AI.Targets[1].Fallback != 1) {
						t.Errorf("the fallback: %+v", st.AI.Targets[1])
					}
				}
			},
		},
		{
			name: "mermaid", method: http.MethodGet, path: base + "?format=mermaid",
			wantStatus:   http.StatusOK,
			wantContains: []string{"flowchart LR\n", `"input.email<br/>pii.email"`, `pii.email: tokenize`, `-.->|"fallback 1`},
			wantHeaders:  map[string]string{"Content-Type": "text/vnd.mermaid"},
		},
		{
			name: "dot", method: http.MethodGet, path: base + "?format=dot&version=1",
			wantStatus:   http.StatusOK,
			wantContains: []string{"digraph flow {", `label="support/triage version 1\nenvironment prod"`, "shape=cylinder"},
			wantHeaders:  map[string]string{"Content-Type": "text/vnd.graphviz"},
		},
		{
			name: "an unknown format names the parameter", method: http.MethodGet, path: base + "?format=svg",
			wantStatus: http.StatusBadRequest, wantContains: []string{"query.format", "mermaid, dot or json"},
		},
		{
			name: "an unknown workflow", method: http.MethodGet, path: "/api/v1/projects/support/workflows/nope/flow",
			wantStatus: http.StatusNotFound, wantContains: []string{`no workflow named \"nope\" in project \"support\"`},
		},
		{
			name: "an unknown version", method: http.MethodGet, path: base + "?version=9",
			wantStatus: http.StatusNotFound, wantContains: []string{"workflow support/triage has no version 9; the latest is 1"},
		},
		{
			name: "no token", method: http.MethodGet, path: base, token: noToken,
			wantStatus: http.StatusUnauthorized,
		},
		{
			name: "vendors of a project", method: http.MethodGet, path: "/api/v1/flow/vendors?project=support",
			wantStatus: http.StatusOK,
			after: func(t *testing.T, s *stack, res *response) {
				var r governance.VendorReport
				res.Decode(t, &r)
				var got []string
				for _, v := range r.Vendors {
					for _, c := range v.Classes {
						var from []string
						for _, src := range c.Sources {
							from = append(from, src.Step+":"+string(src.Action))
						}
						got = append(got, v.Name+" "+v.Location+" "+c.Class+" "+strings.Join(from, ","))
					}
				}
				want := []string{
					"acme-ai managed-service customer.content summarise:allow,reply:allow",
					"acme-ai managed-service pii.email reply:tokenize",
					"in-house on-premises customer.content summarise:allow,reply:allow,local:allow",
					"in-house on-premises pii.email reply:tokenize",
				}
				if !slices.Equal(got, want) || r.Environment != "prod" || r.Project != "support" {
					t.Errorf("report: %q (environment %q)\nwant %q", got, r.Environment, want)
				}
			},
		},
		{
			name: "vendors of every project", method: http.MethodGet, path: "/api/v1/flow/vendors",
			wantStatus: http.StatusOK, wantContains: []string{`"name":"acme-ai"`, `"workflow":"triage"`},
		},
		{
			name: "vendors of an unknown project", method: http.MethodGet, path: "/api/v1/flow/vendors?project=nope",
			wantStatus: http.StatusNotFound, wantContains: []string{`no project named \"nope\"`},
		},
	})

	// A new version that sends the address to the summary step as well:
	// the latest map shows it, version 1 still does not.
	s.saveWorkflow(t, "triage.yaml", strings.Replace(flowWorkflow, `data: {body: "{{ input.body }}"}`, `data: {body: "{{ input.body }}", email: "{{ input.email }}"}`, 1))
	var latest, first governance.Map
	s.must(t, http.MethodGet, base, nil, http.StatusOK).Decode(t, &latest)
	s.must(t, http.MethodGet, base+"?version=1", nil, http.StatusOK).Decode(t, &first)
	if got := classesTo(latest, "summarise"); !slices.Contains(got, "acme pii.email tokenize") || latest.Version != 2 {
		t.Errorf("version 2 summarise: %q", got)
	}
	if got := classesTo(first, "summarise"); slices.Contains(got, "acme pii.email tokenize") || first.Version != 1 {
		t.Errorf("version 1 summarise: %q", got)
	}
}

// TestFlowMapWithoutAGateway: a server without a gateway still maps
// inputs and steps, and says why AI steps have no route.
func TestFlowMapWithoutAGateway(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.saveWorkflow(t, "triage.yaml", flowWorkflow[:strings.Index(flowWorkflow, "  - id: local")])
	s.runScenarios(t, []scenario{{
		name: "no route", method: http.MethodGet, path: "/api/v1/projects/support/workflows/triage/flow",
		wantStatus: http.StatusOK, wantContains: []string{`"unresolved": "this server has no AI gateway"`, `"class": "pii.email"`},
	}})
}

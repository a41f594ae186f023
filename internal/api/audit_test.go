package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/moatproject/moat/internal/audit"
	"github.com/moatproject/moat/internal/audit/audittest"
	"github.com/moatproject/moat/internal/engine"
	"github.com/moatproject/moat/internal/nodes"
	"github.com/moatproject/moat/internal/retention"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/sqlite"
	"github.com/moatproject/moat/internal/vault"
)

// auditToken is the bearer token of an audited stack.
const auditToken = "moat_test_audit_token_8c1e5a"

// auditCanary is planted in request bodies (a secret's value, a vendor's
// description, a webhook's input, an unseal passphrase); no audit record
// or log line may hold it, in clear or encoded.
const auditCanary = "sk-audit-canary-Qz71Nw4Hb9"

// auditStack is the whole API with a real audit log: SQLite in a temp dir,
// the engine with the built-in nodes, a vault and audit keys made for the
// test.
type auditStack struct {
	URL     string
	Store   store.Store // the data
	Audit   *audit.Log
	AuditSt store.Store // where the audit log writes: Store unless separate
	TokenID string
	logs    *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type nopAccessHook struct{}

func (nopAccessHook) SecretAccessed(context.Context, vault.Event) error { return nil }

func openTestStore(t testing.TB, name string) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func createToken(t testing.TB, st store.Store) string {
	t.Helper()
	id := store.NewID("tok")
	err := st.InTx(context.Background(), func(tx store.Tx) error {
		return tx.CreateToken(context.Background(), store.Token{ID: id, Name: "auditor-test", Role: "admin",
			Hash: HashToken(auditToken), CreatedAt: time.Now().UTC()})
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// newAuditStack starts the server. With separateAuditStore the audit log
// writes to a database of its own, which a test can break alone.
func newAuditStack(t *testing.T, separateAuditStore bool) *auditStack {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st := openTestStore(t, "moat.db")
	auditSt := st
	if separateAuditStore {
		auditSt = openTestStore(t, "audit.db")
	}
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	eng, err := engine.New(engine.Config{
		Store: st, Registry: nodes.Builtins(), Logger: logger, PollInterval: 20 * time.Millisecond,
		HTTP: nodes.NewHTTPClient(nodes.EgressPolicy{AllowPrivate: true}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(ctx, true); err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(ctx, vault.Config{Store: st, Source: vault.KeyFile{Path: filepath.Join(dir, vault.KeyFileName), Create: true}, Hook: nopAccessHook{}})
	if err != nil {
		t.Fatal(err)
	}
	log := audittest.OpenLog(t, auditSt)
	runKeys, err := sqlite.OpenRunKeys(ctx, filepath.Join(dir, "run-keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { runKeys.Close() })
	cipher := v.PayloadKeys(runKeys, vault.PayloadKeysOptions{})
	digest := func(s string) []byte { return []byte(log.HMAC(s)) }
	st.SetPayloadSealer(&retention.Sealer{Cipher: cipher, Digest: digest})
	purger := &retention.Purger{Store: st, Cipher: cipher, Digest: digest, Audit: log}
	s := &auditStack{Store: st, Audit: log, AuditSt: auditSt, TokenID: createToken(t, st), logs: logs}
	srv := httptest.NewServer(New(Deps{Store: st, Engine: eng, Vault: v, Audit: log, Retention: purger, Logger: logger, Version: "test",
		Ready: func(context.Context) error { return nil }}))
	s.URL = srv.URL
	t.Cleanup(func() {
		srv.Close()
		stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = eng.Stop(stopCtx)
		for _, enc := range encodings(auditCanary) {
			if strings.Contains(logs.String(), enc) {
				t.Errorf("the planted value was written to the log:\n%s", logs.String())
			}
		}
	})
	return s
}

type answer struct {
	Status int
	Header http.Header
	Body   []byte
}

func (s *auditStack) do(t *testing.T, method, path, body string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+auditToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{Status: res.StatusCode, Header: res.Header, Body: b}
}

func (s *auditStack) must(t *testing.T, method, path, body string, want ...int) answer {
	t.Helper()
	a := s.do(t, method, path, body)
	if !slices.Contains(want, a.Status) {
		t.Fatalf("%s %s: status %d, want %v: %s", method, path, a.Status, want, a.Body)
	}
	return a
}

func (s *auditStack) records(t *testing.T) []store.AuditRecord {
	t.Helper()
	recs, err := s.AuditSt.ListAudit(context.Background(), 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// waitingTask starts a run of the approval workflow and returns its id and
// the id of the task its approval step raised.
func (s *auditStack) waitingTask(t *testing.T) (runID, taskID string) {
	t.Helper()
	var run struct{ ID string }
	if err := json.Unmarshal(s.must(t, http.MethodPost, "/api/v1/projects/money/workflows/refund/runs", `{"input":{"amount":5}}`,
		http.StatusAccepted, http.StatusOK).Body, &run); err != nil || run.ID == "" {
		t.Fatalf("start run: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var l struct{ Tasks []struct{ ID string } }
		if err := json.Unmarshal(s.must(t, http.MethodGet, "/api/v1/tasks?run="+run.ID, "", http.StatusOK).Body, &l); err != nil {
			t.Fatal(err)
		}
		if len(l.Tasks) > 0 {
			return run.ID, l.Tasks[0].ID
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s raised no task", run.ID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const refundWorkflow = `apiVersion: moat/v1
kind: Workflow
name: refund
project: money
trigger: {webhook: {path: refunds}}
input:
  schema:
    type: object
    required: [amount]
    properties:
      amount: {type: number}
      note: {type: string}
steps:
  - id: review
    uses: approval
    with: {title: "Refund", role: reviewer}
`

// mutatingRoutes lists every mutating route the server registers: the
// operations of its OpenAPI document with POST, PUT, PATCH or DELETE, and
// the patterns server.go gives the plain mux that take any other method
// than GET, HEAD and OPTIONS (a pattern without a method takes all).
func mutatingRoutes(t *testing.T, s *auditStack) []string {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	a := s.must(t, http.MethodGet, "/api/openapi.json", "", http.StatusOK)
	if err := json.Unmarshal(a.Body, &doc); err != nil {
		t.Fatal(err)
	}
	var routes []string
	for path, item := range doc.Paths {
		for method := range item {
			switch m := strings.ToUpper(method); m {
			case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
				routes = append(routes, m+" "+path)
			}
		}
	}
	if len(routes) == 0 {
		t.Fatal("the OpenAPI document lists no mutating operation")
	}

	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "server.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	plain := 0
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || (sel.Sel.Name != "HandleFunc" && sel.Sel.Name != "Handle") {
			return true
		}
		if recv, ok := sel.X.(*ast.Ident); !ok || recv.Name != "mux" {
			return true
		}
		lit, ok := call.Args[0].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			t.Fatalf("%s: a mux pattern that is not a string literal; list its routes here", fset.Position(call.Pos()))
		}
		pattern, err := strconv.Unquote(lit.Value)
		if err != nil {
			t.Fatal(err)
		}
		plain++
		method, _, hasMethod := strings.Cut(pattern, " ")
		if !hasMethod || !safeMethod(method) {
			routes = append(routes, pattern)
		}
		return true
	})
	if plain == 0 {
		t.Fatal("found no mux.HandleFunc in server.go")
	}
	slices.Sort(routes)
	return routes
}

// routeCall drives one mutating route and says what its records must be.
type routeCall struct {
	pattern      string
	method, path string
	body         string
	wantStatus   []int
	action       string
	resource     string
}

// TestAuditEveryMutatingRoute drives every mutating route the server
// registers through the real server and checks that each left a requested
// record before it ran and a record of its outcome, under one request id.
func TestAuditEveryMutatingRoute(t *testing.T) {
	t.Parallel()
	s := newAuditStack(t, false)

	calls := []routeCall{
		{pattern: "PUT /api/v1/projects/{project}", method: "PUT", path: "/api/v1/projects/money", body: `{"description":"refunds"}`,
			wantStatus: []int{200, 201}, action: "project.put", resource: "project/money"},
		{pattern: "POST /api/v1/workflows", method: "POST", path: "/api/v1/workflows",
			body:       mustJSON(t, map[string]string{"filename": "refund.yaml", "source": refundWorkflow}),
			wantStatus: []int{201}, action: "workflow.save", resource: "workflow"},
		{pattern: "POST /api/v1/projects/{project}/workflows/{name}/runs", method: "POST", path: "/api/v1/projects/money/workflows/refund/runs",
			body: `{"input":{"amount":12.5}}`, wantStatus: []int{202, 200}, action: "run.start", resource: "workflow/money/refund"},
		{pattern: "POST /api/v1/tasks/{id}/approve", method: "POST", path: "/api/v1/tasks/{{task1}}/approve", body: `{"comment":"fine"}`,
			wantStatus: []int{200}, action: "task.approve", resource: "task/{{task1}}"},
		{pattern: "POST /api/v1/tasks/{id}/reject", method: "POST", path: "/api/v1/tasks/{{task2}}/reject",
			wantStatus: []int{200}, action: "task.reject", resource: "task/{{task2}}"},
		{pattern: "POST /api/v1/runs/{id}/cancel", method: "POST", path: "/api/v1/runs/{{run3}}/cancel",
			wantStatus: []int{200, 202}, action: "run.cancel", resource: "run/{{run3}}"},
		// No run holds the planted value: nothing is erased.
		{pattern: "POST /api/v1/runs/erase", method: "POST", path: "/api/v1/runs/erase", body: `{"subject":"` + auditCanary + `"}`,
			wantStatus: []int{404}, action: "runs.erase", resource: "runs"},
		{pattern: "POST /api/v1/runs/purge", method: "POST", path: "/api/v1/runs/purge",
			wantStatus: []int{200}, action: "runs.purge", resource: "runs"},
		{pattern: "POST /hooks/{path...}", method: "POST", path: "/hooks/refunds", body: `{"amount":3}`,
			wantStatus: []int{202}, action: "webhook.trigger", resource: "webhook/refunds"},
		{pattern: "PUT /api/v1/vendors/{name}", method: "PUT", path: "/api/v1/vendors/openai", body: `{"location":"managed-service","retentionDays":30}`,
			wantStatus: []int{201}, action: "vendor.put", resource: "vendor/openai"},
		{pattern: "PUT /api/v1/connectors/{name}", method: "PUT", path: "/api/v1/connectors/gpt", body: `{"type":"openai","vendor":"openai","models":["gpt-4o-mini"]}`,
			wantStatus: []int{201}, action: "connector.put", resource: "connector/gpt"},
		{pattern: "PUT /api/v1/models/{name}", method: "PUT", path: "/api/v1/models/fast", body: `{"chain":[{"connector":"gpt","model":"gpt-4o-mini"}]}`,
			wantStatus: []int{201}, action: "model.put", resource: "model/fast"},
		// Refused while the connector refers to the vendor: denied.
		{pattern: "DELETE /api/v1/vendors/{name}", method: "DELETE", path: "/api/v1/vendors/openai",
			wantStatus: []int{409}, action: "vendor.delete", resource: "vendor/openai"},
		{pattern: "DELETE /api/v1/models/{name}", method: "DELETE", path: "/api/v1/models/fast",
			wantStatus: []int{204}, action: "model.delete", resource: "model/fast"},
		{pattern: "DELETE /api/v1/connectors/{name}", method: "DELETE", path: "/api/v1/connectors/gpt",
			wantStatus: []int{204}, action: "connector.delete", resource: "connector/gpt"},
		{pattern: "PUT /api/v1/secrets/{environment}/{name}", method: "PUT", path: "/api/v1/secrets/prod/openai-key",
			body: `{"value":"` + auditCanary + `","connectors":["gpt"]}`, wantStatus: []int{201}, action: "secret.set", resource: "secret/prod/openai-key"},
		{pattern: "DELETE /api/v1/secrets/{environment}/{name}", method: "DELETE", path: "/api/v1/secrets/prod/openai-key",
			wantStatus: []int{204}, action: "secret.delete", resource: "secret/prod/openai-key"},
		{pattern: "POST /api/v1/vault/rotate", method: "POST", path: "/api/v1/vault/rotate",
			wantStatus: []int{200}, action: "vault.rotate", resource: "vault"},
		{pattern: "POST /api/v1/vault/rewrap", method: "POST", path: "/api/v1/vault/rewrap",
			wantStatus: []int{200}, action: "vault.rewrap", resource: "vault"},
		// Term 9 does not exist: refused.
		{pattern: "POST /api/v1/vault/min-decryption-term", method: "POST", path: "/api/v1/vault/min-decryption-term", body: `{"term":9}`,
			wantStatus: []int{409, 422}, action: "vault.retire_terms", resource: "vault"},
		{pattern: "POST /api/v1/vault/seal", method: "POST", path: "/api/v1/vault/seal",
			wantStatus: []int{200}, action: "vault.seal", resource: "vault"},
		{pattern: "POST /api/v1/vault/unseal", method: "POST", path: "/api/v1/vault/unseal", body: `{}`,
			wantStatus: []int{200}, action: "vault.unseal", resource: "vault"},
		// Not a vendor name: the handler refuses it, and it is recorded.
		{pattern: "PUT /api/v1/vendors/{name}", method: "PUT", path: "/api/v1/vendors/Bad%20Name", body: `{"location":"on-premises"}`,
			wantStatus: []int{422}, action: "vendor.put", resource: "vendor/Bad Name"},
	}

	routes := mutatingRoutes(t, s)
	driven := map[string]bool{}
	for _, c := range calls {
		driven[c.pattern] = true
	}
	for _, r := range routes {
		if reason, ok := auditedElsewhere[r]; ok {
			t.Logf("%s: not audited here: %s", r, reason)
			continue
		}
		if _, ok := auditedRoutes[r]; !ok {
			t.Errorf("mutating route %s has no action in auditedRoutes", r)
		}
		if !driven[r] {
			t.Errorf("mutating route %s is not driven by this test; add a call", r)
		}
	}
	for p := range driven {
		if !slices.Contains(routes, p) {
			t.Errorf("this test drives %s, which the server does not register", p)
		}
	}
	for p := range auditedRoutes {
		if !slices.Contains(routes, p) {
			t.Errorf("auditedRoutes names %s, which the server does not register", p)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	vars := map[string]string{}
	expand := func(v string) string {
		for k, x := range vars {
			v = strings.ReplaceAll(v, "{{"+k+"}}", x)
		}
		return v
	}
	seen := map[string]bool{}
	for _, c := range calls {
		switch c.action {
		case "task.approve":
			_, vars["task1"] = s.waitingTask(t)
		case "task.reject":
			_, vars["task2"] = s.waitingTask(t)
		case "run.cancel":
			vars["run3"], _ = s.waitingTask(t)
		}
		path, resource := expand(c.path), expand(c.resource)
		a := s.must(t, c.method, path, c.body, c.wantStatus...)
		t.Logf("%s %s: %d, recorded as %s %s", c.method, path, a.Status, c.action, resource)
		id := a.Header.Get(headerRequestID)
		if !strings.HasPrefix(id, "req_") || seen[id] {
			t.Fatalf("%s %s: request id %q", c.method, path, id)
		}
		seen[id] = true

		var mine []store.AuditRecord
		for _, r := range s.records(t) {
			var d map[string]any
			if err := json.Unmarshal(r.Details, &d); err != nil {
				t.Fatal(err)
			}
			if d["requestId"] == id {
				mine = append(mine, r)
			}
		}
		if len(mine) != 2 {
			t.Fatalf("%s %s: %d audit records with its request id, want 2", c.method, path, len(mine))
		}
		req, res := mine[0], mine[1]
		wantOutcome := "ok"
		switch {
		case a.Status >= 500:
			wantOutcome = "failed"
		case a.Status >= 400:
			wantOutcome = "denied"
		}
		for i, r := range mine {
			want := []string{"requested", wantOutcome}[i]
			if r.Actor != "key:"+s.TokenID || r.Action != c.action || r.Resource != resource || r.Outcome != want {
				t.Errorf("%s %s: record %d = %s %s %s %s, want key:%s %s %s %s", c.method, path, i,
					r.Actor, r.Action, r.Resource, r.Outcome, s.TokenID, c.action, resource, want)
			}
		}
		if req.Seq >= res.Seq {
			t.Errorf("%s %s: the outcome (seq %d) precedes the request (seq %d)", c.method, path, res.Seq, req.Seq)
		}
		var rd, od map[string]any
		_ = json.Unmarshal(req.Details, &rd)
		_ = json.Unmarshal(res.Details, &od)
		wantReq := map[string]any{
			"method": c.method, "route": c.pattern, "keyName": "auditor-test",
			"contentLength": float64(len(c.body)), "bodyHmac": s.Audit.HMAC(c.body),
		}
		for k, v := range wantReq {
			if rd[k] != v {
				t.Errorf("%s %s: requested record %s = %v, want %v", c.method, path, k, rd[k], v)
			}
		}
		if client, _ := rd["client"].(string); !strings.HasPrefix(client, "127.0.0.1:") {
			t.Errorf("%s %s: client %v", c.method, path, rd["client"])
		}
		if od["status"] != float64(a.Status) {
			t.Errorf("%s %s: outcome status %v, want %d", c.method, path, od["status"], a.Status)
		}
		if _, ok := od["durationUs"].(float64); !ok {
			t.Errorf("%s %s: outcome has no duration: %s", c.method, path, res.Details)
		}
	}

	// Reads and unrouted requests leave no record.
	before := len(s.records(t))
	s.must(t, http.MethodGet, "/api/v1/vendors", "", http.StatusOK)
	s.must(t, http.MethodPost, "/api/v1/nowhere", "{}", http.StatusNotFound)
	s.must(t, http.MethodPatch, "/api/v1/vendors/openai", "{}", http.StatusMethodNotAllowed)
	if after := len(s.records(t)); after != before {
		t.Errorf("reads and unrouted requests left %d audit records", after-before)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAuditFailsClosed: when the audit log cannot take the requested
// record, the change is not made and the client is told so.
func TestAuditFailsClosed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		fail func(t *testing.T, s *auditStack)
	}{
		{"closed log", func(t *testing.T, s *auditStack) {
			if err := s.Audit.Close(); err != nil {
				t.Fatal(err)
			}
		}},
		{"failing store", func(t *testing.T, s *auditStack) { s.AuditSt.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newAuditStack(t, true)
			s.must(t, http.MethodPut, "/api/v1/vendors/openai", `{"location":"managed-service","region":"us"}`, http.StatusCreated)
			tc.fail(t, s)

			for _, c := range []struct{ method, path, body string }{
				{http.MethodPut, "/api/v1/vendors/openai", `{"location":"managed-service","region":"eu"}`},
				{http.MethodPut, "/api/v1/vendors/mistral", `{"location":"managed-service"}`},
				{http.MethodDelete, "/api/v1/vendors/openai", ""},
				{http.MethodPut, "/api/v1/secrets/dev/openai-key", `{"value":"` + auditCanary + `"}`},
				{http.MethodPut, "/api/v1/projects/support", `{}`},
				{http.MethodPost, "/api/v1/vault/seal", ""},
			} {
				a := s.do(t, c.method, c.path, c.body)
				if a.Status != http.StatusServiceUnavailable || a.Header.Get("Content-Type") != "application/problem+json" ||
					!strings.Contains(string(a.Body), "audit log unavailable: the change was not made") {
					t.Errorf("%s %s with the audit log broken: %d %s", c.method, c.path, a.Status, a.Body)
				}
			}
			got := s.must(t, http.MethodGet, "/api/v1/vendors/openai", "", http.StatusOK)
			if !strings.Contains(string(got.Body), `"region":"us"`) {
				t.Errorf("the vendor changed: %s", got.Body)
			}
			s.must(t, http.MethodGet, "/api/v1/vendors/mistral", "", http.StatusNotFound)
			s.must(t, http.MethodGet, "/api/v1/secrets/dev/openai-key", "", http.StatusNotFound)
			s.must(t, http.MethodGet, "/api/v1/projects/support", "", http.StatusNotFound)
			if v := s.must(t, http.MethodGet, "/api/v1/vault", "", http.StatusOK); !strings.Contains(string(v.Body), `"sealed":false`) {
				t.Errorf("the vault was sealed: %s", v.Body)
			}
			if !strings.Contains(s.logs.String(), "audit log unavailable: mutating request refused") {
				t.Error("the refusals were not logged")
			}
		})
	}
}

// encodings are the forms in which a planted value must not appear.
func encodings(v string) []string {
	b := []byte(v)
	return []string{v,
		base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b),
		hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b)),
	}
}

// TestAuditRecordsNoPayload plants a value in a secret, a vendor, a webhook
// body and an unseal passphrase, and finds it in no audit record, in clear
// or encoded. The body's HMAC is there, so whoever holds the audit key can
// still match a body they have.
func TestAuditRecordsNoPayload(t *testing.T) {
	t.Parallel()
	s := newAuditStack(t, false)
	bodies := []struct{ method, path, body string }{
		{http.MethodPut, "/api/v1/secrets/prod/openai-key", `{"value":"` + auditCanary + `"}`},
		{http.MethodPut, "/api/v1/secrets/prod/openai-key", `{"value":"` + auditCanary + `-2","rotationPeriod":"2160h"}`},
		{http.MethodPut, "/api/v1/vendors/openai", `{"location":"managed-service","description":"` + auditCanary + `"}`},
		{http.MethodPut, "/api/v1/projects/money", `{"description":"` + auditCanary + `"}`},
		{http.MethodPost, "/api/v1/workflows", mustJSON(t, map[string]string{"source": refundWorkflow})},
		{http.MethodPost, "/hooks/refunds", `{"amount":1,"note":"` + auditCanary + `"}`},
		{http.MethodPost, "/api/v1/vault/unseal", `{"passphrase":"` + auditCanary + `"}`},
	}
	for _, b := range bodies {
		s.do(t, b.method, b.path, b.body)
	}
	recs := s.records(t)
	if len(recs) != 2*len(bodies) {
		t.Fatalf("%d audit records, want %d", len(recs), 2*len(bodies))
	}
	hmacs := map[string]bool{}
	for _, r := range recs {
		all := strings.Join([]string{r.Actor, r.Action, r.Resource, r.Outcome, string(r.Details)}, "\n")
		for _, enc := range encodings(auditCanary) {
			if strings.Contains(all, enc) {
				t.Errorf("record %d (%s) holds the planted value: %s", r.Seq, r.Action, r.Details)
			}
		}
		var d map[string]any
		_ = json.Unmarshal(r.Details, &d)
		if h, ok := d["bodyHmac"].(string); ok {
			hmacs[h] = true
		}
	}
	for _, b := range bodies {
		if !hmacs[s.Audit.HMAC(b.body)] {
			t.Errorf("no record holds the HMAC of the body of %s %s", b.method, b.path)
		}
	}
}

// auditedMux is a server made of mux routes around the auditor, for the
// cases the real server cannot produce on demand.
func auditedMux(t *testing.T, routes map[string]http.HandlerFunc) (http.Handler, *auditor, *audit.Log, store.Store, *syncBuffer) {
	t.Helper()
	st := openTestStore(t, "audit.db")
	l := audittest.OpenLog(t, st)
	mux := http.NewServeMux()
	for p, h := range routes {
		mux.HandleFunc(p, h)
	}
	logs := &syncBuffer{}
	a := newAuditor(l, mux, slog.New(slog.NewJSONHandler(logs, nil)))
	return a.middleware(mux), a, l, st, logs
}

// When the outcome record cannot be written, the answer stands (the change
// is made), and the failure is logged and counted.
func TestAuditOutcomeFailureIsCounted(t *testing.T) {
	t.Parallel()
	var l *audit.Log
	h, a, log, st, logs := auditedMux(t, map[string]http.HandlerFunc{
		"PUT /api/v1/vendors/{name}": func(w http.ResponseWriter, _ *http.Request) {
			_ = l.Close()
			w.WriteHeader(http.StatusNoContent)
		},
	})
	l = log
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, "/api/v1/vendors/openai", strings.NewReader(`{}`)))
	if rec.Code != http.StatusNoContent {
		t.Fatalf("status %d, want the handler's 204", rec.Code)
	}
	if n := a.outcomeFailures.Load(); n != 1 {
		t.Errorf("%d outcome failures counted, want 1", n)
	}
	if !strings.Contains(logs.String(), "outcome record not written") || !strings.Contains(logs.String(), `"outcome_failures":1`) {
		t.Errorf("log: %s", logs.String())
	}
	recs, err := st.ListAudit(context.Background(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Outcome != "requested" || recs[0].Actor != "anonymous" {
		t.Errorf("records: %+v", recs)
	}
}

// A mutating route without an action is refused before it runs, and so is
// any method on a pattern without a method; reads of it pass.
func TestAuditRefusesUnlistedRoutes(t *testing.T) {
	t.Parallel()
	ran := 0
	h, _, _, st, _ := auditedMux(t, map[string]http.HandlerFunc{
		"POST /api/v1/unlisted/{x}": func(http.ResponseWriter, *http.Request) { ran++ },
		"/api/v1/anything":          func(http.ResponseWriter, *http.Request) { ran++ },
	})
	for _, c := range []struct{ method, path, route string }{
		{http.MethodPost, "/api/v1/unlisted/a", "POST /api/v1/unlisted/{x}"},
		{http.MethodDelete, "/api/v1/anything", "/api/v1/anything"},
		{"PROPFIND", "/api/v1/anything", "/api/v1/anything"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), c.route) {
			t.Errorf("%s %s: %d %s", c.method, c.path, rec.Code, rec.Body)
		}
	}
	if ran != 0 {
		t.Fatalf("an unlisted route ran %d times", ran)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/anything", nil))
	if ran != 1 {
		t.Error("a read of a pattern without a method did not pass")
	}
	if recs, _ := st.ListAudit(context.Background(), 0, 10); len(recs) != 0 {
		t.Errorf("%d records of refused or read requests", len(recs))
	}
}

// Bodies the handler would refuse anyway are refused without running it,
// and recorded; a panicking handler is recorded as failed and still panics.
func TestAuditBodyLimitAndPanic(t *testing.T) {
	t.Parallel()
	ran := false
	h, _, _, st, _ := auditedMux(t, map[string]http.HandlerFunc{
		"PUT /api/v1/projects/{project}": func(http.ResponseWriter, *http.Request) { ran = true },
		"POST /api/v1/vault/seal":        func(http.ResponseWriter, *http.Request) { panic("boom") },
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, "/api/v1/projects/big", bytes.NewReader(make([]byte, maxAuditedBody+1))))
	if rec.Code != http.StatusRequestEntityTooLarge || ran {
		t.Errorf("oversized body: status %d, handler ran %v", rec.Code, ran)
	}
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Errorf("recovered %v, want the handler's panic", p)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/api/v1/vault/seal", nil))
	}()
	recs, err := st.ListAudit(context.Background(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.Action+" "+r.Resource+" "+r.Outcome)
	}
	want := []string{"project.put project/big requested", "project.put project/big denied", "vault.seal vault requested", "vault.seal vault failed"}
	if !slices.Equal(got, want) {
		t.Errorf("records %q, want %q", got, want)
	}
	if len(recs) == 4 {
		if !strings.Contains(string(recs[0].Details), `"bodyTooLarge":true`) || !strings.Contains(string(recs[3].Details), `"panicked":true`) {
			t.Errorf("details: %s / %s", recs[0].Details, recs[3].Details)
		}
	}
}

func TestOutcomeOf(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		status int
		want   audit.Outcome
	}{
		{200, audit.OK}, {201, audit.OK}, {202, audit.OK}, {204, audit.OK}, {307, audit.OK},
		{400, audit.Denied}, {401, audit.Denied}, {403, audit.Denied}, {404, audit.Denied},
		{409, audit.Denied}, {413, audit.Denied}, {422, audit.Denied}, {429, audit.Denied},
		{500, audit.Failed}, {502, audit.Failed}, {503, audit.Failed},
	} {
		if got := outcomeOf(c.status); got != c.want {
			t.Errorf("outcomeOf(%d) = %s, want %s", c.status, got, c.want)
		}
	}
}

func TestExpandResource(t *testing.T) {
	t.Parallel()
	values := map[string]string{"environment": "prod", "name": "openai-key", "bad": "a\xffb", "long": strings.Repeat("é", 600)}
	for _, c := range []struct{ tmpl, want string }{
		{"vault", "vault"},
		{"secret/{environment}/{name}", "secret/prod/openai-key"},
		{"x/{bad}", "x/a\uFFFDb"},
		{"x/{missing}", "x/"},
		{"x/{unclosed", "x/{unclosed"},
		{"x/{long}", "x/" + strings.Repeat("é", 499) + "…"},
		{"xy/{long}", "xy/" + strings.Repeat("é", 498) + "…"}, // cut before a rune, not through it
	} {
		if got := expandResource(c.tmpl, func(k string) string { return values[k] }); got != c.want {
			t.Errorf("expandResource(%q) = %q, want %q", c.tmpl, got, c.want)
		}
	}
}

// FuzzExpandResource: whatever a client puts in a path value, the resource
// is valid UTF-8 that the audit log accepts.
func FuzzExpandResource(f *testing.F) {
	f.Add("secret/{environment}/{name}", "prod", "k")
	f.Add("webhook/{path}", "a/b/../c", "")
	f.Add("{a}{b}", "\xff\xfe", strings.Repeat("z", 2000))
	f.Fuzz(func(t *testing.T, tmpl, a, b string) {
		if len(tmpl) > 200 {
			return
		}
		got := expandResource(tmpl, func(k string) string {
			if len(k)%2 == 0 {
				return a
			}
			return b
		})
		if !utf8.ValidString(got) {
			t.Fatalf("invalid UTF-8: %q", got)
		}
		if len(got) > maxResourceLen+len("…") {
			t.Fatalf("%d bytes", len(got))
		}
	})
}

// BenchmarkPutVendor measures a PUT of a vendor through the whole server
// (SQLite in a temp dir), without and with the audit log (two appends per
// request, on the same database), one request at a time and from
// concurrent clients (each on its own vendor). Every PUT changes the
// vendor, so each is a real write.
func BenchmarkPutVendor(b *testing.B) {
	bodies := []string{`{"location":"managed-service","region":"us"}`, `{"location":"managed-service","region":"eu"}`}
	put := func(b *testing.B, h http.Handler, name string, i int) {
		req := httptest.NewRequest(http.MethodPut, "/api/v1/vendors/"+name, strings.NewReader(bodies[i%2]))
		req.Header.Set("Authorization", "Bearer "+auditToken)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK && rec.Code != http.StatusCreated {
			b.Errorf("status %d: %s", rec.Code, rec.Body)
		}
	}
	server := func(b *testing.B, audited bool) http.Handler {
		st := openTestStore(b, "moat.db")
		d := Deps{Store: st, Version: "bench"}
		if audited {
			d.Audit = audittest.OpenLog(b, st)
		}
		createToken(b, st)
		return New(d)
	}
	for _, audited := range []bool{false, true} {
		b.Run(fmt.Sprintf("audit=%v", audited), func(b *testing.B) {
			h := server(b, audited)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				put(b, h, "openai", i)
			}
		})
		b.Run(fmt.Sprintf("audit=%v/parallel", audited), func(b *testing.B) {
			h := server(b, audited)
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				name := fmt.Sprintf("vendor-%d", next.Add(1))
				for i := 0; pb.Next(); i++ {
					put(b, h, name, i)
				}
			})
		})
	}
}

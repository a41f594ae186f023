package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/api"
	"github.com/moatproject/moat/internal/engine"
	"github.com/moatproject/moat/internal/nodes"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/sqlite"
)

// bootstrapToken is the bearer token every stack accepts (name "bootstrap").
// It is planted in requests and must never show up in a log line.
const bootstrapToken = "moat_test_bootstrap_canary_3f9a1c"

// payloadCanary is planted in run inputs and webhook bodies; like the token
// it must never show up in a log line.
const payloadCanary = "canary-payload-7d41"

// noToken in a scenario sends no Authorization header at all; an empty
// token sends the stack's bootstrap token.
const noToken = "-"

// stack is a real Moat behind an httptest server: SQLite in t.TempDir(),
// the engine with the built-in nodes, and the HTTP API.
type stack struct {
	URL   string
	Store store.Store
	Eng   *engine.Engine
	logs  *logBuffer

	varsMu sync.Mutex
	vars   map[string]string // {{name}} in a scenario's path and expected strings
}

// set remembers a value that later scenarios name in their path as {{key}}.
func (s *stack) set(key, value string) {
	s.varsMu.Lock()
	defer s.varsMu.Unlock()
	if s.vars == nil {
		s.vars = map[string]string{}
	}
	s.vars[key] = value
}

func (s *stack) expandAll(t *testing.T, list []string) []string {
	t.Helper()
	out := make([]string, len(list))
	for i, v := range list {
		out[i] = s.expand(t, v)
	}
	return out
}

// expand replaces {{key}} in a path or an expected string with what set
// remembered.
func (s *stack) expand(t *testing.T, path string) string {
	t.Helper()
	s.varsMu.Lock()
	defer s.varsMu.Unlock()
	for k, v := range s.vars {
		path = strings.ReplaceAll(path, "{{"+k+"}}", v)
	}
	if strings.Contains(path, "{{") {
		t.Fatalf("%s names a value no scenario set", path)
	}
	return path
}

func newStack(t *testing.T) *stack {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	eng, err := engine.New(engine.Config{
		Store:        st,
		Registry:     nodes.Builtins(),
		HTTP:         nodes.NewHTTPClient(nodes.EgressPolicy{AllowPrivate: true}),
		Logger:       log,
		PollInterval: 20 * time.Millisecond,
	})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	if err := eng.Migrate(ctx); err != nil {
		st.Close()
		t.Fatal(err)
	}
	if err := eng.Start(ctx, true); err != nil {
		st.Close()
		t.Fatal(err)
	}
	err = st.InTx(ctx, func(tx store.Tx) error {
		return tx.CreateToken(ctx, store.Token{ID: store.NewID("tok"), Name: "bootstrap", Role: "admin",
			Hash: api.HashToken(bootstrapToken), CreatedAt: time.Now().UTC()})
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Deps{Store: st, Engine: eng, Logger: log, Version: "test",
		Ready: func(context.Context) error { return nil }}))
	s := &stack{URL: srv.URL, Store: st, Eng: eng, logs: logs}
	t.Cleanup(func() {
		srv.Close()
		stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = eng.Stop(stopCtx)
		st.Close()
		// Conventions: no token or payload in any log line.
		// The API logs these only on its internal-error paths.
		for _, msg := range []string{`"msg":"request failed"`, `"msg":"webhook failed"`} {
			if strings.Contains(logs.String(), msg) {
				t.Errorf("the API hit an internal error (%s):\n%s", msg, logs.String())
			}
		}
		for _, canary := range []string{bootstrapToken, payloadCanary} {
			if strings.Contains(logs.String(), canary) {
				t.Errorf("%q was written to the log:\n%s", canary, logs.String())
			}
		}
	})
	return s
}

// logBuffer collects log lines from concurrent goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// scenario is one HTTP exchange and what its answer must show.
type scenario struct {
	name   string
	method string
	path   string
	// token: "" sends the bootstrap token, noToken sends none, anything
	// else is sent as "Bearer <token>".
	token string
	// body: string and []byte are sent as they are, anything else as JSON.
	body    any
	headers map[string]string

	wantStatus      int
	wantContains    []string
	wantNotContains []string
	wantHeaders     map[string]string // header → substring its value must contain
	// before runs first (to prepare state); after checks the answer further.
	before func(t *testing.T, s *stack)
	after  func(t *testing.T, s *stack, res *response)
}

// response is a read answer.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a generic value.
func (r *response) JSON(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, r.Body)
	}
	return m
}

// Decode decodes the body into v.
func (r *response) Decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %T: %v\n%s", v, err, r.Body)
	}
}

// runScenarios runs the table in order against one stack; later scenarios
// may depend on what earlier ones created.
func (s *stack) runScenarios(t *testing.T, scenarios []scenario) {
	t.Helper()
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			if sc.before != nil {
				sc.before(t, s)
			}
			sc.path = s.expand(t, sc.path)
			sc.wantContains = s.expandAll(t, sc.wantContains)
			sc.wantNotContains = s.expandAll(t, sc.wantNotContains)
			res := s.do(t, sc.method, sc.path, sc.token, sc.body, sc.headers)
			checkResponse(t, sc, res)
			if sc.after != nil {
				sc.after(t, s, res)
			}
		})
	}
}

func checkResponse(t *testing.T, sc scenario, res *response) {
	t.Helper()
	if res.Status != sc.wantStatus {
		t.Errorf("%s %s: status %d, want %d\n%s", sc.method, sc.path, res.Status, sc.wantStatus, trim(res.Body))
	}
	if res.Status >= 500 && sc.wantStatus < 500 {
		t.Errorf("%s %s answered a server error", sc.method, sc.path)
	}
	body := string(res.Body)
	for _, want := range sc.wantContains {
		if !strings.Contains(body, want) {
			t.Errorf("%s %s: body lacks %q\n%s", sc.method, sc.path, want, trim(res.Body))
		}
	}
	for _, not := range sc.wantNotContains {
		if strings.Contains(body, not) {
			t.Errorf("%s %s: body has %q\n%s", sc.method, sc.path, not, trim(res.Body))
		}
	}
	for h, want := range sc.wantHeaders {
		if got := res.Header.Get(h); !strings.Contains(got, want) {
			t.Errorf("%s %s: header %s = %q, want it to contain %q", sc.method, sc.path, h, got, want)
		}
	}
	// Every error is an RFC 9457 problem.
	if res.Status >= 400 {
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
			t.Errorf("%s %s: error answered with Content-Type %q, want application/problem+json", sc.method, sc.path, ct)
		}
	}
}

func trim(b []byte) string {
	if len(b) > 2000 {
		return string(b[:2000]) + "…"
	}
	return string(b)
}

// do sends one request and reads the answer.
func (s *stack) do(t *testing.T, method, path, token string, body any, headers map[string]string) *response {
	t.Helper()
	var rd io.Reader
	contentType := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd, contentType = strings.NewReader(b), "application/json"
	case []byte:
		rd, contentType = bytes.NewReader(b), "application/json"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd, contentType = bytes.NewReader(j), "application/json"
	}
	if method == "" {
		method = http.MethodGet
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	switch token {
	case "":
		req.Header.Set("Authorization", "Bearer "+bootstrapToken)
	case noToken:
	default:
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// must sends a request with the bootstrap token and fails the test unless
// the status is one of want.
func (s *stack) must(t *testing.T, method, path string, body any, want ...int) *response {
	t.Helper()
	res := s.do(t, method, path, "", body, nil)
	for _, w := range want {
		if res.Status == w {
			return res
		}
	}
	t.Fatalf("%s %s: status %d, want %v\n%s", method, path, res.Status, want, trim(res.Body))
	return nil
}

// savedWorkflow is the answer of POST /api/v1/workflows.
type savedWorkflow struct {
	Workflow struct {
		ID            string `json:"id"`
		Project       string `json:"project"`
		Name          string `json:"name"`
		LatestVersion int    `json:"latestVersion"`
		WebhookPath   string `json:"webhookPath"`
	} `json:"workflow"`
	Version struct {
		ID     string `json:"id"`
		Number int    `json:"number"`
		Hash   string `json:"hash"`
	} `json:"version"`
	Created bool `json:"created"`
}

// saveWorkflow stores a definition through the API and fails unless it is
// accepted.
func (s *stack) saveWorkflow(t *testing.T, filename, source string) savedWorkflow {
	t.Helper()
	res := s.must(t, http.MethodPost, "/api/v1/workflows", map[string]any{"filename": filename, "source": source},
		http.StatusCreated, http.StatusOK)
	var out savedWorkflow
	res.Decode(t, &out)
	return out
}

// runView is the part of a run's answer the tests look at.
type runView struct {
	ID         string          `json:"id"`
	WorkflowID string          `json:"workflowId"`
	Status     string          `json:"status"`
	Trigger    string          `json:"trigger"`
	Error      string          `json:"error"`
	Input      json.RawMessage `json:"input"`
	Output     json.RawMessage `json:"output"`
	Steps      []struct {
		ID     string          `json:"id"`
		Uses   string          `json:"uses"`
		Status string          `json:"status"`
		Output json.RawMessage `json:"output"`
	} `json:"steps"`
}

func (r runView) step(id string) (status string, ok bool) {
	for _, s := range r.Steps {
		if s.ID == id {
			return s.Status, true
		}
	}
	return "", false
}

// startRun starts a run through the API and returns its first answer.
func (s *stack) startRun(t *testing.T, project, name string, input any) runView {
	t.Helper()
	body := map[string]any{}
	if input != nil {
		body["input"] = input
	}
	res := s.must(t, http.MethodPost, "/api/v1/projects/"+project+"/workflows/"+name+"/runs", body,
		http.StatusAccepted, http.StatusOK)
	var run runView
	res.Decode(t, &run)
	if run.ID == "" {
		t.Fatalf("start run: no id in %s", res.Body)
	}
	return run
}

// awaitRun polls the run (with the API's own ?wait) until cond holds; it
// fails the test when the run ends otherwise or after a generous deadline.
// It never asserts how long anything took.
func (s *stack) awaitRun(t *testing.T, id string, cond func(runView) bool) runView {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res := s.must(t, http.MethodGet, "/api/v1/runs/"+id+"?wait=200ms", nil, http.StatusOK, http.StatusAccepted)
		var run runView
		res.Decode(t, &run)
		if cond(run) {
			return run
		}
		if final(run.Status) || time.Now().After(deadline) {
			t.Fatalf("run %s never reached the expected state; last: %s", id, trim(res.Body))
		}
	}
}

func final(status string) bool {
	return status == "succeeded" || status == "failed" || status == "cancelled"
}

// example reads a workflow from examples/.
func example(t *testing.T, name string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "examples", name))
	if err != nil {
		t.Fatalf("example %s: %v", name, err)
	}
	return string(b)
}

// problemBody is an RFC 9457 answer.
type problemBody struct {
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Errors []struct {
		Message  string `json:"message"`
		Location string `json:"location"`
	} `json:"errors"`
}

func (p problemBody) locations() []string {
	out := make([]string, len(p.Errors))
	for i, e := range p.Errors {
		out[i] = e.Location
	}
	return out
}

func (p problemBody) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s: %s", p.Status, p.Title, p.Detail)
	for _, e := range p.Errors {
		fmt.Fprintf(&b, "\n  %s: %s", e.Location, e.Message)
	}
	return b.String()
}

// jsonString quotes s as a JSON string, for building bodies by hand.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/connectors"
)

// memRecorder keeps records in memory; for tests only.
type memRecorder struct {
	mu   sync.Mutex
	recs []Record
	fail error
}

func (m *memRecorder) Record(_ context.Context, r Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.recs = append(m.recs, r)
	return nil
}

func (m *memRecorder) all() []Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Record(nil), m.recs...)
}

func (m *memRecorder) last(t *testing.T) Record {
	t.Helper()
	all := m.all()
	if len(all) == 0 {
		t.Fatal("no record written")
	}
	return all[len(all)-1]
}

// memTokens is an in-memory TokenStore that refuses a token taken for
// another value, as the durable one does.
type memTokens struct {
	mu   sync.Mutex
	runs map[string][]TokenEntry
	fail error
}

func (m *memTokens) LoadTokens(_ context.Context, run string) ([]TokenEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]TokenEntry(nil), m.runs[run]...), nil
}

func (m *memTokens) SaveTokens(_ context.Context, run string, toks []TokenEntry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	if m.runs == nil {
		m.runs = map[string][]TokenEntry{}
	}
	for _, nt := range toks {
		for _, old := range m.runs[run] {
			if old.Token == nt.Token && old != nt {
				return errors.New("token conflict")
			}
		}
		m.runs[run] = append(m.runs[run], nt)
	}
	return nil
}

type staticResources struct {
	mu  sync.Mutex
	res Resources
	err error
}

func (s *staticResources) LoadResources(context.Context) (Resources, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.res, s.err
}

// chatBody is what the fake upstream reads of an OpenAI request.
type chatBody struct {
	Model    string `json:"model"`
	Stream   bool   `json:"stream"`
	Messages []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
}

func (b chatBody) lastUser() string {
	for i := len(b.Messages) - 1; i >= 0; i-- {
		if b.Messages[i].Role == "user" {
			return b.Messages[i].Content
		}
	}
	return ""
}

func (b chatBody) system() string {
	for _, m := range b.Messages {
		if m.Role == "system" {
			return m.Content
		}
	}
	return ""
}

// fakeUpstream is an OpenAI-compatible server that records every request
// body. By default it answers with the last user message (echo).
type fakeUpstream struct {
	srv *httptest.Server

	mu     sync.Mutex
	bodies []string
	// answer computes the reply; fault, when it returns true, has written
	// the response itself (n counts requests from 1).
	answer func(b chatBody) string
	fault  func(n int, w http.ResponseWriter, r *http.Request) bool
	// chunks splits a streamed answer; one chunk when nil.
	chunks func(answer string) []string
}

func newFakeUpstream(t *testing.T) *fakeUpstream {
	t.Helper()
	up := &fakeUpstream{}
	up.srv = httptest.NewServer(http.HandlerFunc(up.serve))
	t.Cleanup(up.srv.Close)
	return up
}

func (up *fakeUpstream) requests() []string {
	up.mu.Lock()
	defer up.mu.Unlock()
	return append([]string(nil), up.bodies...)
}

func (up *fakeUpstream) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	up.mu.Lock()
	up.bodies = append(up.bodies, string(raw))
	n := len(up.bodies)
	answer, fault, chunks := up.answer, up.fault, up.chunks
	up.mu.Unlock()
	if fault != nil && fault(n, w, r) {
		return
	}
	var b chatBody
	if err := json.Unmarshal(raw, &b); err != nil {
		http.Error(w, `{"error":{"type":"invalid_request_error"}}`, http.StatusBadRequest)
		return
	}
	text := b.lastUser()
	if answer != nil {
		text = answer(b)
	}
	if !b.Stream {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": b.Model,
			"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": text}, "finish_reason": "stop"}},
			"usage":   map[string]any{"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
		})
		return
	}
	parts := []string{text}
	if chunks != nil {
		parts = chunks(text)
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl, _ := w.(http.Flusher)
	for _, p := range parts {
		ev, _ := json.Marshal(map[string]any{
			"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": b.Model,
			"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": p}}},
		})
		fmt.Fprintf(w, "data: %s\n\n", ev)
		if fl != nil {
			fl.Flush()
		}
	}
	ev, _ := json.Marshal(map[string]any{
		"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": b.Model,
		"choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": "stop"}},
	})
	fmt.Fprintf(w, "data: %s\n\n", ev)
	ev, _ = json.Marshal(map[string]any{
		"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": b.Model,
		"choices": []any{}, "usage": map[string]any{"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
	})
	fmt.Fprintf(w, "data: %s\n\ndata: [DONE]\n\n", ev)
}

func intPtr(n int) *int { return &n }

// upstreamResources: one managed-service vendor keeping nothing, one
// openai connector to the fake upstream, and the alias "chat".
func upstreamResources(baseURL string) Resources {
	return Resources{
		Vendors: []Vendor{{Name: "acme", Location: ManagedService, RetentionDays: intPtr(0)}},
		Connectors: []Connector{{
			Name: "openai", Type: TypeOpenAI, Vendor: "acme", BaseURL: baseURL,
			Credential: &Credential{Env: "FAKE_OPENAI_KEY"}, Models: []string{"gpt-test"},
			Prices: map[string]ModelPrice{"gpt-test": {Input: 1, Output: 2}},
		}},
		Models: []Model{{Name: "chat", Chain: []ModelTarget{{Connector: "openai", Model: "gpt-test"}}}},
	}
}

type testGateway struct {
	*Gateway
	rec    *memRecorder
	tokens *memTokens
	slept  *[]time.Duration
}

func fakeGetenv(name string) string {
	if name == "FAKE_OPENAI_KEY" {
		return "sk-fake-test-key"
	}
	return ""
}

// newTestGateway builds a gateway on res; tweak may change the config.
func newTestGateway(t testing.TB, res Resources, tweak func(*Config)) *testGateway {
	t.Helper()
	tg := &testGateway{rec: &memRecorder{}, tokens: &memTokens{}, slept: new([]time.Duration)}
	var mu sync.Mutex
	cfg := Config{
		Environment: "dev",
		Resources:   &staticResources{res: res},
		Tokens:      tg.tokens,
		Recorder:    tg.rec,
		HashKey:     []byte("test-hash-key"),
		Getenv:      fakeGetenv,
		Caller: CallerConfig{
			AttemptTimeout: 2 * time.Second,
			Sleep: func(ctx context.Context, d time.Duration) error {
				mu.Lock()
				*tg.slept = append(*tg.slept, d)
				mu.Unlock()
				return ctx.Err()
			},
			Jitter: func() float64 { return 0.5 },
		},
	}
	if tweak != nil {
		tweak(&cfg)
	}
	g, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	tg.Gateway = g
	return tg
}

func keyIdentity() Identity { return Identity{Kind: "key", ID: "key_1", Name: "test", Role: "ai"} }

func runIdentity(run string) Identity {
	return Identity{Kind: "run", ID: run, Project: "p", Workflow: "w", Run: run, Step: "s"}
}

func userMsg(text string) Message { return Message{Role: connectors.User, Content: text} }

// wantCode asserts err is an *Error with code.
func wantCode(t *testing.T, err error, code string) *Error {
	t.Helper()
	var ge *Error
	if !errors.As(err, &ge) {
		t.Fatalf("error = %v (%T), want *Error with code %s", err, err, code)
	}
	if ge.Code != code {
		t.Fatalf("code = %s (%v), want %s", ge.Code, ge, code)
	}
	return ge
}

func TestChatEndToEnd(t *testing.T) {
	t.Parallel()
	up := newFakeUpstream(t)
	g := newTestGateway(t, upstreamResources(up.srv.URL), nil)
	res, err := g.Chat(context.Background(), Request{
		Identity: keyIdentity(), Model: "chat",
		Messages:   []Message{userMsg("Write to jane.doe@example.com please")},
		RestoreAll: true,
	})
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	if res.Content != "Write to jane.doe@example.com please" {
		t.Errorf("content = %q", res.Content)
	}
	if !strings.Contains(res.Received, "<EMAIL_1>") || strings.Contains(res.Received, "jane.doe") {
		t.Errorf("received = %q, want the token only", res.Received)
	}
	if len(res.Sent) != 2 || res.Sent[0].Role != connectors.System || !strings.Contains(res.Sent[1].Content, "<EMAIL_1>") {
		t.Errorf("sent = %+v", res.Sent)
	}
	rec := g.rec.last(t)
	if rec.Outcome != "ok" || rec.RequestID != res.Record.RequestID || !strings.HasPrefix(rec.RequestID, "req_") || len(rec.RequestID) != 20 {
		t.Errorf("record = %+v", rec)
	}
	if rec.Findings["pii.email"] != 1 || rec.Decisions["tokenize"] != 1 || rec.Alias != "chat" || rec.Connector != "openai" || rec.Vendor != "acme" || rec.Model != "gpt-test" {
		t.Errorf("record = %+v", rec)
	}
	if rec.InputDigest != digestMessages(res.Sent) || rec.OutputDigest != digestText(res.Received) {
		t.Errorf("digests do not match what was sent and received")
	}
	if rec.Usage.PromptTokens != 12 || rec.Usage.CompletionTokens != 7 || rec.CostMicros != 26 || len(rec.Attempts) != 1 {
		t.Errorf("usage %+v cost %d attempts %+v", rec.Usage, rec.CostMicros, rec.Attempts)
	}
}

func TestNewNeedsResourcesAndRecorder(t *testing.T) {
	t.Parallel()
	if _, err := New(context.Background(), Config{Recorder: &memRecorder{}}); err == nil {
		t.Error("New without resources succeeded")
	}
	if _, err := New(context.Background(), Config{Resources: &staticResources{}}); err == nil || !strings.Contains(err.Error(), "recorder") {
		t.Errorf("New without a recorder: %v", err)
	}
	if _, err := New(context.Background(), Config{Resources: &staticResources{err: errors.New("db down")}, Recorder: &memRecorder{}}); err == nil {
		t.Error("New with a failing resource store succeeded")
	}
}

func TestReloadSwapsOrKeepsTheCatalog(t *testing.T) {
	t.Parallel()
	up := newFakeUpstream(t)
	store := &staticResources{res: upstreamResources(up.srv.URL)}
	g := newTestGateway(t, Resources{}, func(c *Config) { c.Resources = store })
	before := g.Catalog()
	if !before.HasModel("chat") || before.HasModel("chat2") {
		t.Fatal("catalog does not hold what the store has")
	}
	store.mu.Lock()
	store.res.Models = append(store.res.Models, Model{Name: "chat2", Chain: []ModelTarget{{Connector: "openai"}}})
	store.mu.Unlock()
	if err := g.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !g.Catalog().HasModel("chat2") {
		t.Fatal("reload did not pick up the new alias")
	}
	store.mu.Lock()
	store.err = errors.New("db down")
	store.mu.Unlock()
	if err := g.Reload(context.Background()); err == nil {
		t.Fatal("a failing reload succeeded")
	}
	if !g.Catalog().HasModel("chat2") {
		t.Fatal("a failed reload dropped the catalog in use")
	}
	store.mu.Lock()
	store.err = nil
	store.res.Models = append(store.res.Models, Model{Name: "broken", Chain: []ModelTarget{{Connector: "nowhere"}}})
	store.mu.Unlock()
	if err := g.Reload(context.Background()); err == nil {
		t.Fatal("reloading invalid resources succeeded")
	}
	if _, err := g.Chat(context.Background(), Request{Identity: keyIdentity(), Model: "chat2", Messages: []Message{userMsg("hi")}}); err != nil {
		t.Fatalf("the kept catalog does not serve: %v", err)
	}
}

func TestWhoAndShapeRefuse(t *testing.T) {
	t.Parallel()
	f := &fakeConn{}
	g := newInProcessGateway(t, nil, f)
	ok := func() Request {
		return Request{Identity: keyIdentity(), Model: "fake-chat", Messages: []Message{userMsg("hi")}}
	}
	two := 2.5
	nan := math.NaN()
	for _, c := range []struct {
		name string
		edit func(r *Request)
		code string
	}{
		{"no identity", func(r *Request) { r.Identity = Identity{} }, CodeForbidden},
		{"odd kind", func(r *Request) { r.Identity.Kind = "user" }, CodeForbidden},
		{"key without id", func(r *Request) { r.Identity.ID = "" }, CodeForbidden},
		{"viewer key", func(r *Request) { r.Identity.Role = "viewer" }, CodeForbidden},
		{"unknown alias", func(r *Request) { r.Model = "gpt-nope" }, CodeUnknownModel},
		{"nothing to send", func(r *Request) { r.Messages = nil }, CodeInvalid},
		{"bad role", func(r *Request) { r.Messages[0].Role = "tool" }, CodeInvalid},
		{"bad trust", func(r *Request) { r.Messages[0].Trust = "sort of" }, CodeInvalid},
		{"bad utf-8", func(r *Request) { r.Messages[0].Content = "a\xffb" }, CodeInvalid},
		{"too many messages", func(r *Request) {
			for range MaxMessages {
				r.Messages = append(r.Messages, userMsg("x"))
			}
		}, CodeInvalid},
		{"bad data name", func(r *Request) { r.Data = []DataItem{{Name: "Ticket", Value: "v"}} }, CodeInvalid},
		{"data name twice", func(r *Request) { r.Data = []DataItem{{Name: "a", Value: "1"}, {Name: "a", Value: "2"}} }, CodeInvalid},
		{"bad class", func(r *Request) { r.Data = []DataItem{{Name: "a", Value: "1", Class: "PII email"}} }, CodeInvalid},
		{"too many data items", func(r *Request) {
			for i := range MaxDataItems + 1 {
				r.Data = append(r.Data, DataItem{Name: fmt.Sprintf("d%d", i), Value: "v"})
			}
		}, CodeInvalid},
		{"empty label", func(r *Request) { r.Labels = []string{"a", " "} }, CodeInvalid},
		{"label twice", func(r *Request) { r.Labels = []string{"a", "a"} }, CodeInvalid},
		{"too many labels", func(r *Request) {
			for i := range MaxLabels + 1 {
				r.Labels = append(r.Labels, fmt.Sprint(i))
			}
		}, CodeInvalid},
		{"bad schema", func(r *Request) { r.Schema = map[string]any{"type": "no-such-type"} }, CodeInvalid},
		{"remote schema ref", func(r *Request) { r.Schema = map[string]any{"$ref": "https://example.com/s.json"} }, CodeInvalid},
		{"huge schema", func(r *Request) { r.Schema = map[string]any{"description": strings.Repeat("x", MaxSchemaBytes)} }, CodeInvalid},
		{"negative max tokens", func(r *Request) { r.MaxTokens = -1 }, CodeInvalid},
		{"huge max tokens", func(r *Request) { r.MaxTokens = MaxAnswerTokens + 1 }, CodeInvalid},
		{"hot temperature", func(r *Request) { r.Temperature = &two }, CodeInvalid},
		{"nan temperature", func(r *Request) { r.Temperature = &nan }, CodeInvalid},
		{"odd injection mode", func(r *Request) { r.Injection = "ignore" }, CodeInvalid},
		{"long example", func(r *Request) { r.Examples = []Example{{Text: strings.Repeat("x", MaxExampleBytes+1), Label: "a"}} }, CodeInvalid},
		{"bad restore class", func(r *Request) { r.Restore = []string{"<all>"} }, CodeInvalid},
	} {
		r := ok()
		c.edit(&r)
		res, err := g.Chat(context.Background(), r)
		ge := wantCode(t, err, c.code)
		if res.Record.Outcome != c.code || res.Record.RequestID == "" {
			t.Errorf("%s: record %+v", c.name, res.Record)
		}
		if ge.Message == "" {
			t.Errorf("%s: empty message", c.name)
		}
	}
	if n := f.callCount(); n != 0 {
		t.Errorf("%d connector calls for refused requests", n)
	}
	if _, err := g.Chat(context.Background(), ok()); err != nil {
		t.Fatalf("the valid request fails: %v", err)
	}
}

func TestPanicInAConnectorFailsClosed(t *testing.T) {
	t.Parallel()
	f := &fakeConn{panics: true}
	g := newInProcessGateway(t, nil, f)
	res, err := g.Chat(context.Background(), Request{Identity: keyIdentity(), Model: "fake-chat", Messages: []Message{userMsg("mail jane.doe@example.com")}})
	ge := wantCode(t, err, CodeInternal)
	if ge.Stage != "call" || strings.Contains(ge.Message, "jane") || res.Content != "" {
		t.Errorf("error %+v", ge)
	}
	if rec := g.rec.last(t); rec.Outcome != CodeInternal || strings.Contains(rec.Error, "jane") {
		t.Errorf("record %+v", rec)
	}
	// The reservation was settled: a limiter with one request a minute
	// counts the panicked call, and has nothing in flight.
	for _, s := range g.limiter.scopes {
		if s.inFlight != 0 {
			t.Errorf("a scope has %d calls in flight after a panic", s.inFlight)
		}
	}
}

func TestRepairRetriesOnceOnSchemaProblems(t *testing.T) {
	t.Parallel()
	answers := []string{`{"name": 7}`, `{"name": "<EMAIL_1>"}`}
	f := &fakeConn{}
	f.reply = func(req connectors.Request) string { return answers[min(f.calls-1, 1)] }
	g := newInProcessGateway(t, nil, f)
	req := Request{Identity: keyIdentity(), Model: "fake-chat", Repair: true, RestoreAll: true,
		Schema:   map[string]any{"type": "object", "properties": map[string]any{"name": map[string]any{"type": "string"}}, "required": []any{"name"}},
		Messages: []Message{userMsg("Extract: Ada, ada@example.com")}}
	res, err := g.Chat(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := res.Value.(map[string]any); !ok || v["name"] != "ada@example.com" {
		t.Errorf("value = %#v", res.Value)
	}
	if f.callCount() != 2 {
		t.Fatalf("calls = %d, want 2", f.callCount())
	}
	last := f.reqs[1].Messages
	if last[len(last)-2].Role != connectors.Assistant || last[len(last)-2].Content != answers[0] || !strings.Contains(last[len(last)-1].Content, "did not match the required JSON schema") {
		t.Errorf("repair request = %+v", last)
	}
	rec := g.rec.last(t)
	if rec.Outcome != "ok" || len(rec.Attempts) != 2 || rec.Checks[0] != ProblemSchema {
		t.Errorf("record %+v", rec)
	}

	// Still wrong after the repair, or repair not asked: the call fails.
	answers = []string{`{"name": 7}`, `{"name": 8}`}
	f.calls = 0
	_, err = g.Chat(context.Background(), req)
	wantCode(t, err, CodeCheckFailed)
	req.Repair = false
	f.calls = 0
	_, err = g.Chat(context.Background(), req)
	wantCode(t, err, CodeCheckFailed)
	if f.callCount() != 1 {
		t.Errorf("calls = %d without repair, want 1", f.callCount())
	}
}

func TestLimitsRefuseBeforeTheCall(t *testing.T) {
	t.Parallel()
	f := &fakeConn{}
	g := newInProcessGateway(t, func(c *Config) {
		c.Limits = map[string]Limits{"key": {RequestsPerMinute: 1}, "workflow": {Budget: 500}}
	}, f)
	f.usage = connectors.Usage{PromptTokens: 1000}
	req := Request{Identity: keyIdentity(), Model: "fake-chat", Messages: []Message{userMsg("hi")}}
	if _, err := g.Chat(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	_, err := g.Chat(context.Background(), req)
	ge := wantCode(t, err, CodeRateLimited)
	if ge.Stage != "limit" || ge.RetryAfter <= 0 || !ge.Retryable() {
		t.Errorf("error %+v", ge)
	}
	// A run's workflow has a budget of 500 µ$: the first call fits its
	// estimate but spends 1000 µ$ (1000 prompt tokens at $1/M), so the next
	// is refused.
	run := Request{Identity: runIdentity("r1"), Model: "fake-chat", Messages: []Message{userMsg("hi")}}
	res, err := g.Chat(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	if res.Record.CostMicros != 1000 {
		t.Errorf("cost = %d µ$, want 1000", res.Record.CostMicros)
	}
	_, err = g.Chat(context.Background(), run)
	wantCode(t, err, CodeBudget)
	if f.callCount() != 2 {
		t.Errorf("calls = %d, want 2", f.callCount())
	}
}

func TestDeclaredClassCoversTheItem(t *testing.T) {
	t.Parallel()
	f := &fakeConn{}
	g := newInProcessGateway(t, nil, f)
	res, err := g.Chat(context.Background(), Request{Identity: keyIdentity(), Model: "fake-chat", RestoreAll: true,
		Messages: []Message{userMsg("Greet them.")},
		Data: []DataItem{
			{Name: "handle", Value: "zorro the fox", Class: "pii.username"},
			{Name: "body", Value: "write to jane.doe@example.com", Class: "customer.content"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	sent := f.reqs[0].Messages[len(f.reqs[0].Messages)-1].Content
	if strings.Contains(sent, "zorro") || !strings.Contains(sent, "<USERNAME_1>") {
		t.Errorf("a declared pii item left in clear: %q", sent)
	}
	if strings.Contains(sent, "jane.doe") || !strings.Contains(sent, "write to <EMAIL_1>") {
		t.Errorf("an allowed class let detected PII through: %q", sent)
	}
	if !strings.Contains(res.Content, "zorro the fox") {
		t.Errorf("content = %q", res.Content)
	}
	rec := res.Record
	if rec.Findings["pii.username"] != 1 || rec.Findings["customer.content"] != 1 || rec.Findings["pii.email"] != 1 {
		t.Errorf("findings %v", rec.Findings)
	}
}

func TestTokenStoreFailureSendsNothing(t *testing.T) {
	t.Parallel()
	f := &fakeConn{}
	g := newInProcessGateway(t, nil, f)
	g.tokens.fail = errors.New("conflict")
	_, err := g.Chat(context.Background(), Request{Identity: runIdentity("r"), Model: "fake-chat", Messages: []Message{userMsg("mail jane.doe@example.com")}})
	ge := wantCode(t, err, CodeInternal)
	if ge.Stage != "transform" || !ge.Retryable() || f.callCount() != 0 {
		t.Errorf("error %+v, calls %d", ge, f.callCount())
	}
	// Without PII there is nothing to save, and the call goes ahead.
	if _, err := g.Chat(context.Background(), Request{Identity: runIdentity("r"), Model: "fake-chat", Messages: []Message{userMsg("hello")}}); err != nil {
		t.Fatal(err)
	}
}

func TestStrictestDecisionAcrossTheChain(t *testing.T) {
	t.Parallel()
	trains := Vendor{Name: "trainer", Location: ManagedService, TrainsOnCustomerData: true, RetentionDays: intPtr(0)}
	cat := inProcessCatalog(&fakeConn{}, &fakeConn{})
	chain := cat.aliases["fake-chat"]
	chain[1].Vendor = trains
	cat.connectors["fake2"].vendor = trains
	g := newTestGateway(t, Resources{}, nil)
	g.catalog.Store(cat)
	_, err := g.Chat(context.Background(), Request{Identity: keyIdentity(), Model: "fake-chat", Messages: []Message{userMsg("mail jane.doe@example.com")}})
	ge := wantCode(t, err, CodeBlocked)
	if !strings.Contains(ge.Message, "vendor trainer") || !strings.Contains(ge.Message, "pii-to-training-or-retention") || !strings.Contains(ge.Message, "message 1") {
		t.Errorf("message = %q", ge.Message)
	}
}

func TestTokenizerLoadAndNewEntries(t *testing.T) {
	t.Parallel()
	tok := NewTokenizer()
	if err := tok.Load([]TokenEntry{{Token: "<EMAIL_3>", Class: "pii.email", Value: "a@x.org"}}); err != nil {
		t.Fatal(err)
	}
	if got := tok.Token("pii.email", "a@x.org"); got != "<EMAIL_3>" {
		t.Errorf("loaded value got %s", got)
	}
	if got := tok.Token("pii.email", "b@x.org"); got != "<EMAIL_4>" {
		t.Errorf("new value got %s, want the number after the loaded ones", got)
	}
	if ne := tok.NewEntries(); len(ne) != 1 || ne[0] != (TokenEntry{Token: "<EMAIL_4>", Class: "pii.email", Value: "b@x.org"}) {
		t.Errorf("new entries %+v", ne)
	}
	if n := len(tok.Entries()); n != 2 {
		t.Errorf("%d entries", n)
	}
	for _, bad := range [][]TokenEntry{
		{{Token: "<EMAIL_3>", Class: "pii.email", Value: "other@x.org"}}, // token taken
		{{Token: "<EMAIL_9>", Class: "pii.email", Value: "a@x.org"}},     // value has a token
		{{Token: "<PHONE_1>", Class: "pii.email", Value: "c@x.org"}},     // not its class
		{{Token: "EMAIL_1", Class: "pii.email", Value: "c@x.org"}},       // not a token
		{{Token: "<EMAIL_0>", Class: "pii.email", Value: "c@x.org"}},
		{{Token: "<EMAIL_5>", Class: "pii.email", Value: "c@x.org"}, {Token: "<EMAIL_5>", Class: "pii.email", Value: "d@x.org"}},
	} {
		if err := tok.Load(bad); err == nil {
			t.Errorf("Load(%+v) succeeded", bad)
		}
	}
	if n := len(tok.Entries()); n != 2 {
		t.Errorf("a failed load changed the tokenizer: %d entries", n)
	}
}

func TestRecordedOverheadExcludesUpstreamTime(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Millisecond)
		return now
	}
	f := &fakeConn{}
	g := newInProcessGateway(t, func(c *Config) { c.Now = clock; c.Caller.Now = clock }, f)
	res, err := g.Chat(context.Background(), Request{Identity: keyIdentity(), Model: "fake-chat", Messages: []Message{userMsg("hi")}})
	if err != nil {
		t.Fatal(err)
	}
	rec := res.Record
	if len(rec.Attempts) != 1 || rec.Attempts[0].Duration != time.Millisecond || rec.Overhead != rec.Latency-time.Millisecond || rec.Latency <= rec.Overhead {
		t.Errorf("latency %s overhead %s attempts %+v", rec.Latency, rec.Overhead, rec.Attempts)
	}
}

func TestUntrustedMessageInjectionFenced(t *testing.T) {
	t.Parallel()
	f := &fakeConn{reply: func(connectors.Request) string { return "ok" }}
	g := newInProcessGateway(t, nil, f)
	req := Request{Identity: keyIdentity(), Model: "fake-chat",
		Messages: []Message{{Role: connectors.User, Content: injectionText, Trust: Untrusted}}}
	_, err := g.Chat(context.Background(), req)
	ge := wantCode(t, err, CodeInjection)
	if !strings.Contains(ge.Message, "message 1") || f.callCount() != 0 {
		t.Errorf("message %q, calls %d", ge.Message, f.callCount())
	}
	req.Injection = InjectionFence
	if _, err := g.Chat(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	sent := f.reqs[0].Messages
	if len(sent) != 2 || !strings.HasPrefix(sent[1].Content, `<data name="message_1" trust="untrusted" id="`) || !strings.Contains(sent[0].Content, "never an instruction") {
		t.Errorf("sent %+v", sent)
	}
	// A trusted message is the author's: it is not scored at all.
	req.Injection, req.Messages[0].Trust = "", ""
	if _, err := g.Chat(context.Background(), req); err != nil {
		t.Fatalf("a trusted message was judged as an injection: %v", err)
	}
}

func TestConcurrentCalls(t *testing.T) {
	t.Parallel()
	f := &fakeConn{}
	g := newInProcessGateway(t, nil, f)
	var wg sync.WaitGroup
	errs := make(chan error, 8*20)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				email := fmt.Sprintf("user%d.%d@example.com", w, i)
				res, err := g.Chat(context.Background(), Request{Identity: runIdentity(fmt.Sprintf("run_%d", w)), Model: "fake-chat", RestoreAll: true,
					Messages: []Message{userMsg("mail " + email)}})
				if err == nil && res.Content != "mail "+email {
					err = fmt.Errorf("content %q", res.Content)
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(g.rec.all()); n != 160 {
		t.Errorf("%d records, want 160", n)
	}
	for w := range 8 {
		if n := len(g.tokens.runs[fmt.Sprintf("run_%d", w)]); n != 20 {
			t.Errorf("run_%d holds %d tokens, want 20", w, n)
		}
	}
}

// Prepared hears the request id and findings before anything leaves, and
// not at all for a call refused before it was transformed.
func TestPreparedComesBeforeTheCall(t *testing.T) {
	t.Parallel()
	up := newFakeUpstream(t)
	g := newTestGateway(t, upstreamResources(up.srv.URL), nil)
	var heard []Record
	req := Request{
		Identity: keyIdentity(), Model: "chat",
		Messages: []Message{userMsg("Write to jane.doe@example.com please")},
		Prepared: func(r Record) {
			if n := len(up.requests()); n != 0 {
				t.Errorf("prepared after %d upstream requests", n)
			}
			heard = append(heard, r)
		},
	}
	res, err := g.Chat(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(heard) != 1 || heard[0].RequestID != res.Record.RequestID || heard[0].Findings["pii.email"] != 1 {
		t.Errorf("prepared heard %+v", heard)
	}
	req.Model = "no-such-alias"
	if _, err := g.Chat(context.Background(), req); err == nil || len(heard) != 1 {
		t.Errorf("refused call: err %v, prepared heard %d", err, len(heard))
	}
}

// A target whose credential is not set is skipped for the next one of its
// chain; alone, the call fails naming the variable, never reaching anyone.
func TestMissingCredentialFallsBackAlongTheChain(t *testing.T) {
	t.Parallel()
	up := newFakeUpstream(t)
	res := upstreamResources(up.srv.URL)
	res.Connectors = append(res.Connectors, Connector{
		Name: "keyless", Type: TypeOpenAI, Vendor: "acme", BaseURL: up.srv.URL,
		Credential: &Credential{Env: "UNSET_KEY"}, Models: []string{"gpt-test"},
	})
	res.Models = append(res.Models,
		Model{Name: "fallback", Chain: []ModelTarget{{Connector: "keyless", Model: "gpt-test"}, {Connector: "openai", Model: "gpt-test"}}},
		Model{Name: "alone", Chain: []ModelTarget{{Connector: "keyless", Model: "gpt-test"}}},
	)
	g := newTestGateway(t, res, nil)
	req := Request{Identity: keyIdentity(), Model: "fallback", Messages: []Message{userMsg("hello")}}
	out, err := g.Chat(context.Background(), req)
	if err != nil {
		t.Fatalf("fallback: %v", err)
	}
	if out.Record.Connector != "openai" || len(out.Record.Attempts) != 2 || out.Record.Attempts[0].Err != ClassUnconfigured {
		t.Errorf("record %+v", out.Record)
	}
	if n := len(up.requests()); n != 1 {
		t.Errorf("upstream got %d requests, want 1", n)
	}
	req.Model = "alone"
	_, err = g.Chat(context.Background(), req)
	var ge *Error
	if !errors.As(err, &ge) || ge.Code != CodeRejected || !strings.Contains(ge.Message, "UNSET_KEY") {
		t.Errorf("alone: %v", err)
	}
	if n := len(up.requests()); n != 1 {
		t.Errorf("upstream got %d requests, want still 1", n)
	}
}

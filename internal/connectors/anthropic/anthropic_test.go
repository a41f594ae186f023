package anthropic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/connectors"
	"github.com/moatproject/moat/internal/connectors/connectorstest"
)

const (
	testKey    = "sk-ant-test-KEYCANARY-1234567890"
	testPrompt = "PROMPTCANARY my card is 4111 1111 1111 1111"
)

// fake is a local server speaking the messages API that records what it
// receives and answers with handler.
type fake struct {
	mu      sync.Mutex
	keys    []string
	bodies  []map[string]any
	handler http.HandlerFunc
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/messages" || r.Method != http.MethodPost {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	raw, _ := io.ReadAll(r.Body)
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	f.mu.Lock()
	f.keys = append(f.keys, r.Header.Get("X-Api-Key")+"|"+r.Header.Get("Anthropic-Version"))
	f.bodies = append(f.bodies, body)
	f.mu.Unlock()
	f.handler(w, r)
}

func (f *fake) last(t *testing.T) (string, map[string]any) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bodies) == 0 {
		t.Fatal("the fake server received no request")
	}
	return f.keys[len(f.keys)-1], f.bodies[len(f.bodies)-1]
}

func newFake(t *testing.T, h http.HandlerFunc) (*fake, *Connector) {
	t.Helper()
	f := &fake{handler: h}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c, err := New(Config{BaseURL: srv.URL, APIKey: testKey, HTTPClient: srv.Client(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

func jsonAnswer(status int, body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func message(text string) string {
	b, _ := json.Marshal(map[string]any{
		"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test-0001",
		"content":     []any{map[string]any{"type": "text", "text": text}},
		"stop_reason": "end_turn", "stop_sequence": nil,
		"usage": map[string]any{"input_tokens": 12, "output_tokens": 5},
	})
	return string(b)
}

func request() connectors.Request {
	temp := 0.5
	return connectors.Request{
		Model: "claude-test",
		Messages: []connectors.Message{
			{Role: connectors.System, Content: "You sort tickets."},
			{Role: connectors.User, Content: testPrompt},
		},
		Temperature: &temp,
	}
}

func checkSafe(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range []string{testKey, "KEYCANARY", "PROMPTCANARY", "4111"} {
		if strings.Contains(fmt.Sprintf("%v %+v", err, err), s) {
			t.Errorf("error %q contains %q", err, s)
		}
	}
}

func systemText(body map[string]any) string {
	var parts []string
	blocks, _ := body["system"].([]any)
	for _, b := range blocks {
		m, _ := b.(map[string]any)
		s, _ := m["text"].(string)
		parts = append(parts, s)
	}
	return strings.Join(parts, "\n")
}

func TestChat(t *testing.T) {
	t.Parallel()
	schema := map[string]any{"type": "object", "required": []any{"name"}, "properties": map[string]any{"name": map[string]any{"type": "string"}}}
	tests := []struct {
		name     string
		mutate   func(*connectors.Request)
		answer   string
		want     string
		checkReq func(t *testing.T, body map[string]any)
	}{
		{
			name: "plain", answer: "hello", want: "hello",
			checkReq: func(t *testing.T, body map[string]any) {
				if body["model"] != "claude-test" || body["max_tokens"] != float64(DefaultMaxTokens) || body["temperature"] != 0.5 {
					t.Errorf("body = %v", body)
				}
				if systemText(body) != "You sort tickets." {
					t.Errorf("system = %q", systemText(body))
				}
				msgs, _ := body["messages"].([]any)
				if len(msgs) != 1 || msgs[0].(map[string]any)["role"] != "user" {
					t.Errorf("messages = %v", msgs)
				}
				if !strings.Contains(fmt.Sprint(msgs), "PROMPTCANARY") {
					t.Errorf("the prompt did not reach the server")
				}
			},
		},
		{
			name:   "max tokens",
			mutate: func(r *connectors.Request) { r.MaxTokens = 77 },
			answer: "x", want: "x",
			checkReq: func(t *testing.T, body map[string]any) {
				if body["max_tokens"] != 77.0 {
					t.Errorf("max_tokens = %v", body["max_tokens"])
				}
			},
		},
		{
			name:   "schema",
			mutate: func(r *connectors.Request) { r.Schema = schema },
			answer: `{"name":"Ada"}`, want: `{"name":"Ada"}`,
			checkReq: func(t *testing.T, body map[string]any) {
				s := systemText(body)
				if !strings.Contains(s, "JSON Schema") || !strings.Contains(s, `"required":["name"]`) {
					t.Errorf("system = %q", s)
				}
			},
		},
		{
			name:   "labels",
			mutate: func(r *connectors.Request) { r.Labels = []string{"refund", "bug"} },
			answer: "Bug.", want: "bug",
			checkReq: func(t *testing.T, body map[string]any) {
				if s := systemText(body); !strings.Contains(s, `["refund","bug"]`) {
					t.Errorf("system = %q", s)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, c := newFake(t, jsonAnswer(200, message(tt.answer)))
			req := request()
			if tt.mutate != nil {
				tt.mutate(&req)
			}
			res, err := c.Chat(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Content != tt.want || res.Model != "claude-test-0001" || res.FinishReason != "end_turn" ||
				res.Usage != (connectors.Usage{PromptTokens: 12, CompletionTokens: 5}) {
				t.Errorf("response = %+v", res)
			}
			key, body := f.last(t)
			if k, version, _ := strings.Cut(key, "|"); k != testKey || version == "" {
				t.Errorf("x-api-key %q, anthropic-version %q", k, version)
			}
			if tt.checkReq != nil {
				tt.checkReq(t, body)
			}
		})
	}
}

func TestChatErrors(t *testing.T) {
	t.Parallel()
	apiErr := func(typ string) string {
		return `{"type":"error","error":{"type":"` + typ + `","message":"bad key ` + testKey + ` PROMPTCANARY"}}`
	}
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		timeout    time.Duration
		mutate     func(*connectors.Request)
		kind       error
		status     int
		retryAfter time.Duration
	}{
		{name: "429", handler: jsonAnswer(429, apiErr("rate_limit_error"), "Retry-After", "12"), kind: connectors.ErrRateLimited, status: 429, retryAfter: 12 * time.Second},
		{name: "429 date", handler: jsonAnswer(429, apiErr("rate_limit_error"), "Retry-After", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)), kind: connectors.ErrRateLimited, status: 429, retryAfter: -1},
		{name: "500", handler: jsonAnswer(500, apiErr("api_error")), kind: connectors.ErrUnavailable, status: 500},
		{name: "529 overloaded", handler: jsonAnswer(529, apiErr("overloaded_error")), kind: connectors.ErrUnavailable, status: 529},
		{name: "400", handler: jsonAnswer(400, apiErr("invalid_request_error")), kind: connectors.ErrRejected, status: 400},
		{name: "401", handler: jsonAnswer(401, apiErr("authentication_error")), kind: connectors.ErrRejected, status: 401},
		{name: "garbage body", handler: jsonAnswer(200, `{"content": [ nope`), kind: connectors.ErrMalformed},
		{name: "empty object", handler: jsonAnswer(200, `{}`), kind: connectors.ErrMalformed},
		{name: "label not among labels", handler: jsonAnswer(200, message("spam")),
			mutate: func(r *connectors.Request) { r.Labels = []string{"refund"} }, kind: connectors.ErrMalformed},
		{name: "timeout", handler: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			timeout: 20 * time.Millisecond, kind: connectors.ErrUnavailable},
		{name: "only a system message", handler: jsonAnswer(200, message("x")),
			mutate: func(r *connectors.Request) { r.Messages = r.Messages[:1] }, kind: connectors.ErrRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, c := newFake(t, tt.handler)
			if tt.timeout > 0 {
				c.timeout = tt.timeout
			}
			req := request()
			if tt.mutate != nil {
				tt.mutate(&req)
			}
			_, err := c.Chat(context.Background(), req)
			if !errors.Is(err, tt.kind) {
				t.Fatalf("err = %v, want %v", err, tt.kind)
			}
			var ue *connectors.UpstreamError
			if !errors.As(err, &ue) {
				t.Fatalf("err = %T, want *UpstreamError", err)
			}
			if ue.Status != tt.status {
				t.Errorf("status = %d, want %d", ue.Status, tt.status)
			}
			// -1: some positive delay (an HTTP date; no wall-clock assertion).
			if (tt.retryAfter == -1 && ue.RetryAfter <= 0) || (tt.retryAfter != -1 && ue.RetryAfter != tt.retryAfter) {
				t.Errorf("retry-after = %v, want %v", ue.RetryAfter, tt.retryAfter)
			}
			checkSafe(t, err)
		})
	}
}

func TestChatConnectionRefused(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close()
	c, err := New(Config{BaseURL: base, APIKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Chat(context.Background(), request())
	if !errors.Is(err, connectors.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	checkSafe(t, err)
}

// The SDK's ANTHROPIC_* variables must not change what a connector sends.
func TestIgnoresEnvironment(t *testing.T) {
	t.Setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:1")
	t.Setenv("ANTHROPIC_API_KEY", "sk-ant-from-env")
	t.Setenv("ANTHROPIC_AUTH_TOKEN", "token-from-env")
	var authz string
	f, c := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		authz = r.Header.Get("Authorization")
		jsonAnswer(200, message("ok"))(w, r)
	})
	if _, err := c.Chat(context.Background(), request()); err != nil {
		t.Fatal(err)
	}
	if key, _ := f.last(t); !strings.HasPrefix(key, testKey+"|") || authz != "" {
		t.Errorf("x-api-key %q, Authorization %q", key, authz)
	}
}

func TestChatSendsRequestInOneWrite(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(jsonAnswer(http.StatusOK, message("fine")))
	t.Cleanup(srv.Close)
	connectorstest.CheckOneWriteEach(t, func(hc *http.Client) func() error {
		c, err := New(Config{BaseURL: srv.URL, APIKey: testKey, HTTPClient: hc, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return func() error {
			_, err := c.Chat(context.Background(), request())
			return err
		}
	})
}

// The upstream learns nothing of the machine Moat runs on: the SDK's
// telemetry headers are dropped from plain and streamed calls alike, and
// what the upstream needs is still sent.
func TestSendsNoTelemetryHeaders(t *testing.T) {
	t.Parallel()
	connect := func(baseURL string, hc *http.Client) (*Connector, error) {
		return New(Config{BaseURL: baseURL, APIKey: testKey, HTTPClient: hc, Timeout: 5 * time.Second})
	}
	connectorstest.CheckHeadersSent(t, map[string]connectorstest.HeaderCall{
		"chat": {Answer: jsonAnswer(200, message("ok")), Send: func(baseURL string, hc *http.Client) error {
			c, err := connect(baseURL, hc)
			if err == nil {
				_, err = c.Chat(context.Background(), request())
			}
			return err
		}},
		"stream": {Answer: sse(false, evStart, evBlock, text("ok"), evStop, evDelta, evEnd), Send: func(baseURL string, hc *http.Client) error {
			c, err := connect(baseURL, hc)
			if err == nil {
				_, err = collect(c, request())
			}
			return err
		}},
	}, "X-Api-Key", "Anthropic-Version", "Content-Type", "User-Agent")
}

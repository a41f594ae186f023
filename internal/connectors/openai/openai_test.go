package openai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/connectors"
	"github.com/moatproject/moat/internal/connectors/connectorstest"
)

const (
	testKey    = "sk-test-KEYCANARY-1234567890"
	testPrompt = "PROMPTCANARY my card is 4111 1111 1111 1111"
)

// fake is a local OpenAI-compatible server that records what it receives
// and answers with handler.
type fake struct {
	mu      sync.Mutex
	auth    []string
	bodies  []map[string]any
	handler http.HandlerFunc
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/chat/completions" || r.Method != http.MethodPost {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	raw, _ := io.ReadAll(r.Body)
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	f.mu.Lock()
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.bodies = append(f.bodies, body)
	f.mu.Unlock()
	f.handler(w, r)
}

func (f *fake) lastBody(t *testing.T) map[string]any {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bodies) == 0 {
		t.Fatal("the fake server received no request")
	}
	return f.bodies[len(f.bodies)-1]
}

func newFake(t *testing.T, h http.HandlerFunc) (*fake, *Connector) {
	t.Helper()
	f := &fake{handler: h}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c, err := New(Config{BaseURL: srv.URL + "/v1", APIKey: testKey, HTTPClient: srv.Client(), Timeout: 5 * time.Second})
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

func completion(content string) string {
	b, _ := json.Marshal(map[string]any{
		"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-test-0001",
		"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
			"message": map[string]any{"role": "assistant", "content": content}}},
		"usage": map[string]any{"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
	})
	return string(b)
}

func request() connectors.Request {
	temp := 0.25
	return connectors.Request{
		Model: "gpt-test",
		Messages: []connectors.Message{
			{Role: connectors.System, Content: "You sort tickets."},
			{Role: connectors.User, Content: testPrompt},
		},
		MaxTokens:   50,
		Temperature: &temp,
	}
}

// checkSafe fails when an error string carries the key or the prompt.
func checkSafe(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range []string{testKey, "KEYCANARY", "PROMPTCANARY", "4111"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains %q", err, s)
		}
	}
}

func TestChat(t *testing.T) {
	t.Parallel()
	schema := map[string]any{
		"type": "object", "required": []any{"name"}, "additionalProperties": false,
		"properties": map[string]any{"name": map[string]any{"type": "string"}},
	}
	tests := []struct {
		name     string
		mutate   func(*connectors.Request)
		answer   string
		want     string
		checkReq func(t *testing.T, body map[string]any)
	}{
		{
			name:   "plain",
			answer: "hello",
			want:   "hello",
			checkReq: func(t *testing.T, body map[string]any) {
				if body["model"] != "gpt-test" || body["temperature"] != 0.25 || body["max_completion_tokens"] != 50.0 {
					t.Errorf("body = %v", body)
				}
				msgs, _ := body["messages"].([]any)
				if len(msgs) != 2 {
					t.Fatalf("messages = %v", body["messages"])
				}
				if m := msgs[0].(map[string]any); m["role"] != "system" {
					t.Errorf("first message = %v", m)
				}
				if m := msgs[1].(map[string]any); m["role"] != "user" || m["content"] != testPrompt {
					t.Errorf("second message = %v", m)
				}
				if _, ok := body["response_format"]; ok {
					t.Errorf("unexpected response_format")
				}
				if _, ok := body["stream"]; ok {
					t.Errorf("unexpected stream")
				}
			},
		},
		{
			name:   "schema",
			mutate: func(r *connectors.Request) { r.Schema = schema; r.SchemaName = "person" },
			answer: `{"name":"Ada"}`,
			want:   `{"name":"Ada"}`,
			checkReq: func(t *testing.T, body map[string]any) {
				rf, _ := body["response_format"].(map[string]any)
				js, _ := rf["json_schema"].(map[string]any)
				if rf["type"] != "json_schema" || js["name"] != "person" || js["strict"] != true {
					t.Fatalf("response_format = %v", rf)
				}
				got, _ := json.Marshal(js["schema"])
				want, _ := json.Marshal(schema)
				if string(got) != string(want) {
					t.Errorf("schema = %s, want %s", got, want)
				}
			},
		},
		{
			name:   "labels",
			mutate: func(r *connectors.Request) { r.Labels = []string{"refund", "bug", "question"} },
			answer: `{"label":"bug"}`,
			want:   "bug",
			checkReq: func(t *testing.T, body map[string]any) {
				rf, _ := body["response_format"].(map[string]any)
				js, _ := rf["json_schema"].(map[string]any)
				if js["name"] != DefaultSchemaName || js["strict"] != true {
					t.Fatalf("response_format = %v", rf)
				}
				s, _ := json.Marshal(js["schema"])
				if !strings.Contains(string(s), `"enum":["refund","bug","question"]`) {
					t.Errorf("label schema = %s", s)
				}
			},
		},
		{
			name:   "labels from a server that ignores the format",
			mutate: func(r *connectors.Request) { r.Labels = []string{"refund", "bug"} },
			answer: " Refund\n",
			want:   "refund",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, c := newFake(t, jsonAnswer(200, completion(tt.answer)))
			req := request()
			if tt.mutate != nil {
				tt.mutate(&req)
			}
			res, err := c.Chat(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Content != tt.want || res.Model != "gpt-test-0001" || res.FinishReason != "stop" ||
				res.Usage != (connectors.Usage{PromptTokens: 11, CompletionTokens: 3}) {
				t.Errorf("response = %+v", res)
			}
			if f.auth[0] != "Bearer "+testKey {
				t.Errorf("Authorization = %q", f.auth[0])
			}
			if tt.checkReq != nil {
				tt.checkReq(t, f.lastBody(t))
			}
		})
	}
}

func TestChatErrors(t *testing.T) {
	t.Parallel()
	apiErr := `{"error":{"message":"Incorrect API key provided: ` + testKey + ` for PROMPTCANARY","type":"invalid_request_error","code":"invalid_api_key"}}`
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		timeout    time.Duration
		mutate     func(*connectors.Request)
		kind       error
		status     int
		retryAfter time.Duration
	}{
		{name: "429 seconds", handler: jsonAnswer(429, apiErr, "Retry-After", "7"), kind: connectors.ErrRateLimited, status: 429, retryAfter: 7 * time.Second},
		{name: "429 ms", handler: jsonAnswer(429, apiErr, "Retry-After-Ms", "1500", "Retry-After", "2"), kind: connectors.ErrRateLimited, status: 429, retryAfter: 1500 * time.Millisecond},
		{name: "429 without header", handler: jsonAnswer(429, apiErr), kind: connectors.ErrRateLimited, status: 429},
		{name: "500", handler: jsonAnswer(500, apiErr), kind: connectors.ErrUnavailable, status: 500},
		{name: "503 not JSON", handler: jsonAnswer(503, "<html>down</html>"), kind: connectors.ErrUnavailable, status: 503},
		{name: "408", handler: jsonAnswer(408, apiErr), kind: connectors.ErrUnavailable, status: 408},
		{name: "400", handler: jsonAnswer(400, apiErr), kind: connectors.ErrRejected, status: 400},
		{name: "401 quoting the key", handler: jsonAnswer(401, apiErr), kind: connectors.ErrRejected, status: 401},
		{name: "garbage body", handler: jsonAnswer(200, `{"choices": [ this is not json`), kind: connectors.ErrMalformed},
		{name: "wrong types", handler: jsonAnswer(200, `{"choices": "none"}`), kind: connectors.ErrMalformed},
		{name: "empty choices", handler: jsonAnswer(200, `{"id":"x","model":"m","choices":[]}`), kind: connectors.ErrMalformed},
		{name: "content twice", handler: jsonAnswer(200, `{"choices":[{"message":{"content":"a","content":"b"}}]}`), kind: connectors.ErrMalformed},
		{name: "content in another case", handler: jsonAnswer(200, `{"choices":[{"message":{"content":"a","Content":"b"}}]}`), kind: connectors.ErrMalformed},
		{name: "data after the answer", handler: jsonAnswer(200, completion("x")+`{}`), kind: connectors.ErrMalformed},
		{name: "not JSON", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = io.WriteString(w, completion("x"))
		}, kind: connectors.ErrMalformed},
		{name: "answer too large", handler: func(w http.ResponseWriter, r *http.Request) {
			// No Content-Length: the limit must hold while reading.
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"choices":[{"message":{"content":"`)
			chunk := strings.Repeat("a", 1<<16)
			for range MaxAnswerBytes/len(chunk) + 1 {
				if _, err := io.WriteString(w, chunk); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}, kind: connectors.ErrMalformed},
		{name: "answer announced too large", handler: jsonAnswer(200, completion("x"), "Content-Length", strconv.Itoa(MaxAnswerBytes+1)), kind: connectors.ErrMalformed},
		{name: "connection cut in the body", handler: func(w http.ResponseWriter, r *http.Request) {
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"choices\":[")
			_ = buf.Flush()
		}, kind: connectors.ErrUnavailable},
		{name: "timeout in the body", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"choices":[`)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}, timeout: 50 * time.Millisecond, kind: connectors.ErrUnavailable},
		{name: "label not among labels", handler: jsonAnswer(200, completion(`{"label":"spam"}`)),
			mutate: func(r *connectors.Request) { r.Labels = []string{"refund"} }, kind: connectors.ErrMalformed},
		{name: "timeout", handler: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			timeout: 20 * time.Millisecond, kind: connectors.ErrUnavailable},
		{name: "unknown role", handler: jsonAnswer(200, completion("x")),
			mutate: func(r *connectors.Request) { r.Messages[0].Role = "tool" }, kind: connectors.ErrRejected},
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
			if ue.Status != tt.status || ue.RetryAfter != tt.retryAfter {
				t.Errorf("status %d retry-after %v, want %d %v", ue.Status, ue.RetryAfter, tt.status, tt.retryAfter)
			}
			checkSafe(t, err)
			checkSafe(t, fmt.Errorf("%+v %#v", err, err))
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

func TestChatCallerCancels(t *testing.T) {
	t.Parallel()
	_, c := newFake(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	ctx, cancel := context.WithCancel(context.Background())
	go cancel()
	_, err := c.Chat(ctx, request())
	if !errors.Is(err, context.Canceled) || errors.Is(err, connectors.ErrUnavailable) {
		t.Fatalf("err = %v, want context.Canceled and no upstream kind", err)
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{}, true},
		{"ollama", Config{BaseURL: "http://127.0.0.1:11434/v1/"}, true},
		{"relative", Config{BaseURL: "/v1"}, false},
		{"ftp", Config{BaseURL: "ftp://example.com"}, false},
		{"credentials in URL", Config{BaseURL: "https://u:p@example.com"}, false},
		{"negative timeout", Config{Timeout: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tt.cfg)
			if (err == nil) != tt.ok {
				t.Errorf("New(%+v) err = %v", tt.cfg, err)
			}
		})
	}
}

// The SDK's OPENAI_* variables must not change what a connector sends.
func TestIgnoresEnvironment(t *testing.T) {
	t.Setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
	t.Setenv("OPENAI_API_KEY", "sk-from-env")
	t.Setenv("OPENAI_ORG_ID", "org-from-env")
	t.Setenv("OPENAI_CUSTOM_HEADERS", "X-Leak: yes")
	var org, leak string
	f, c := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		org, leak = r.Header.Get("OpenAI-Organization"), r.Header.Get("X-Leak")
		jsonAnswer(200, completion("ok"))(w, r)
	})
	if _, err := c.Chat(context.Background(), request()); err != nil {
		t.Fatal(err)
	}
	if f.auth[0] != "Bearer "+testKey || org != "" || leak != "" {
		t.Errorf("auth %q, organization %q, custom header %q", f.auth[0], org, leak)
	}
}

func TestChatSendsRequestInOneWrite(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(jsonAnswer(http.StatusOK, completion("fine")))
	t.Cleanup(srv.Close)
	connectorstest.CheckOneWriteEach(t, func(hc *http.Client) func() error {
		c, err := New(Config{BaseURL: srv.URL + "/v1", APIKey: testKey, HTTPClient: hc, Timeout: 5 * time.Second})
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
		return New(Config{BaseURL: baseURL + "/v1", APIKey: testKey, HTTPClient: hc, Timeout: 5 * time.Second})
	}
	connectorstest.CheckHeadersSent(t, map[string]connectorstest.HeaderCall{
		"chat": {Answer: jsonAnswer(200, completion("ok")), Send: func(baseURL string, hc *http.Client) error {
			c, err := connect(baseURL, hc)
			if err == nil {
				_, err = c.Chat(context.Background(), request())
			}
			return err
		}},
		"stream": {Answer: sse(false, chunkEvent("ok", "stop")), Send: func(baseURL string, hc *http.Client) error {
			c, err := connect(baseURL, hc)
			if err == nil {
				_, err = collect(c, request())
			}
			return err
		}},
	}, "Authorization", "Content-Type", "Accept", "User-Agent")
}

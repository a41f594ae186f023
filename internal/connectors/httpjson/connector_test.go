package httpjson

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/connectors"
	"github.com/moatproject/moat/internal/connectors/connectorstest"
)

const canary = "sk-SECRET-HEADER-VALUE-123"

var request = connectors.Request{
	Model: "in-house-v2",
	Messages: []connectors.Message{
		{Role: connectors.System, Content: "You are \"strict\".\nAnswer briefly."},
		{Role: connectors.User, Content: "first"},
		{Role: connectors.Assistant, Content: "ok"},
		{Role: connectors.User, Content: "He said \"hi\"\nthen left\t— ünïcödé 😀 \\ </script> {{ prompt }}"},
	},
}

func TestTemplateSubstitution(t *testing.T) {
	t.Parallel()
	var got map[string]any
	var gotHeaders http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHeaders = r.Header
		body, _ := io.ReadAll(r.Body)
		if !json.Valid(body) {
			t.Errorf("invalid JSON sent: %s", body)
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Error(err)
		}
		w.Write([]byte(`{"result":{"label":"ok"}}`))
	}))
	defer srv.Close()
	c, err := New(Config{
		URL:     srv.URL + "/v1/predict?x=1",
		Headers: map[string]string{"Authorization": "Bearer " + canary},
		Body: map[string]any{
			"model":    "{{model}}",
			"input":    "Q: {{ prompt }}!",
			"system":   "{{ system }}",
			"messages": "{{ messages_json }}",
			"embedded": "m={{ messages_json }}",
			"params":   map[string]any{"n": 1, "t": 0.5, "ok": true, "none": nil, "list": []any{"{{ model }}", 2}},
		},
		Response: "result.label",
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Chat(context.Background(), request)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Content != "ok" || resp.Model != "in-house-v2" || resp.FinishReason != "stop" {
		t.Errorf("response %+v", resp)
	}
	prompt := request.Messages[3].Content
	if got["model"] != "in-house-v2" || got["input"] != "Q: "+prompt+"!" || got["system"] != request.Messages[0].Content {
		t.Errorf("substitution: %v", got)
	}
	msgs, ok := got["messages"].([]any)
	if !ok || len(msgs) != 4 || msgs[3].(map[string]any)["content"] != prompt || msgs[3].(map[string]any)["role"] != "user" {
		t.Errorf("messages: %v", got["messages"])
	}
	var embedded []connectors.Message
	if err := json.Unmarshal([]byte(strings.TrimPrefix(got["embedded"].(string), "m=")), &embedded); err != nil || len(embedded) != 4 {
		t.Errorf("embedded messages: %v %v", got["embedded"], err)
	}
	params := got["params"].(map[string]any)
	if params["n"] != 1.0 || params["t"] != 0.5 || params["ok"] != true || params["none"] != nil || params["list"].([]any)[0] != "in-house-v2" {
		t.Errorf("params: %v", params)
	}
	if gotHeaders.Get("Authorization") != "Bearer "+canary || gotHeaders.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", gotHeaders)
	}
}

func TestDefaultBodyAndMethod(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method == http.MethodGet {
			if len(body) != 0 {
				t.Errorf("GET with a body")
			}
			w.Write([]byte(`{"v": 1}`))
			return
		}
		var got struct {
			Model    string
			Messages []connectors.Message
		}
		if err := json.Unmarshal(body, &got); err != nil || got.Model != request.Model || len(got.Messages) != 4 {
			t.Errorf("%s %s: %v", r.Method, body, err)
		}
		w.Write([]byte(`{"v": 2}`))
	}))
	defer srv.Close()
	for method, want := range map[string]string{"": "2", "GET": "1", "PUT": "2"} {
		c, err := New(Config{URL: srv.URL, Method: method, Response: "v"})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Chat(context.Background(), request)
		if err != nil || resp.Content != want {
			t.Errorf("method %q: %q, %v", method, resp.Content, err)
		}
	}
}

func TestPathExtraction(t *testing.T) {
	t.Parallel()
	doc := `{"choices":[{"text":"hello","n":12.50,"ok":false,"obj":{"b":1, "a":[1, 2]},"nil":null}],"result":{"label":"refund"},"top":"x","1":"one","esc":"a\"b\u00e9"}`
	tests := []struct {
		path, want string
		err        bool
	}{
		{"choices.0.text", "hello", false},
		{"choices.0.n", "12.50", false},
		{"choices.0.ok", "false", false},
		{"choices.0.obj", `{"b":1,"a":[1,2]}`, false},
		{"choices", `[{"text":"hello","n":12.50,"ok":false,"obj":{"b":1,"a":[1,2]},"nil":null}]`, false},
		{"result.label", "refund", false},
		{"top", "x", false},
		{"1", "one", false},
		{"esc", `a"bé`, false},
		{"choices.1.text", "", true},
		{"choices.-1", "", true},
		{"choices.00", "", true},
		{"choices.x", "", true},
		{"choices.0.nil", "", true},
		{"choices.0.text.more", "", true},
		{"missing", "", true},
	}
	for _, tt := range tests {
		path, err := parsePath(tt.path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := extract([]byte(doc), path)
		if tt.err {
			if !errors.Is(err, errPath) {
				t.Errorf("%s: got %q, %v; want errPath", tt.path, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: got %q, %v; want %q", tt.path, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", " ", "a..b", ".a", "a."} {
		if _, err := parsePath(bad); err == nil {
			t.Errorf("path %q accepted", bad)
		}
	}
	if _, err := extract([]byte(`{"a":`), []string{"a"}); err == nil || errors.Is(err, errPath) {
		t.Errorf("invalid JSON: %v", err)
	}
	if got, err := extract([]byte(` [ "x" ] `), []string{"0"}); err != nil || got != "x" {
		t.Errorf("top-level array: %q %v", got, err)
	}
}

func TestErrorMapping(t *testing.T) {
	t.Parallel()
	httpDate := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		kind       error
		status     int
		retryAfter time.Duration // minimum expected
	}{
		{"429 seconds", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(429)
		}, connectors.ErrRateLimited, 429, 7 * time.Second},
		{"429 date", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", httpDate)
			w.WriteHeader(429)
		}, connectors.ErrRateLimited, 429, 80 * time.Second},
		{"429 garbage", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "soon")
			w.WriteHeader(429)
		}, connectors.ErrRateLimited, 429, 0},
		{"500", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }, connectors.ErrUnavailable, 500, 0},
		{"503", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }, connectors.ErrUnavailable, 503, 0},
		{"400", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(400)
			w.Write([]byte(`{"error":"` + canary + `"}`))
		}, connectors.ErrRejected, 400, 0},
		{"401", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(401) }, connectors.ErrRejected, 401, 0},
		{"404", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) }, connectors.ErrRejected, 404, 0},
		{"redirect not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://elsewhere.invalid/", http.StatusFound)
		}, connectors.ErrRejected, 302, 0},
		{"not JSON", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>" + canary)) }, connectors.ErrMalformed, 200, 0},
		{"missing path", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"other":1}`)) }, connectors.ErrMalformed, 200, 0},
		{"null at path", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"out":null}`)) }, connectors.ErrMalformed, 200, 0},
		{"too large", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"out":"` + strings.Repeat("a", 2000) + `"}`))
		}, connectors.ErrMalformed, 200, 0},
		{"timeout", func(w http.ResponseWriter, r *http.Request) {
			io.ReadAll(r.Body) // so that the server notices the client leaving
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, connectors.ErrUnavailable, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			c, err := New(Config{
				URL:              srv.URL + "/predict?api_key=" + canary,
				Headers:          map[string]string{"X-Api-Key": canary},
				Body:             map[string]any{"q": "{{ prompt }}"},
				Response:         "out",
				Timeout:          200 * time.Millisecond,
				MaxResponseBytes: 1000,
			})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Chat(context.Background(), connectors.Request{Messages: []connectors.Message{{Role: connectors.User, Content: "PROMPT-" + canary}}})
			var ue *connectors.UpstreamError
			if !errors.Is(err, tt.kind) || !errors.As(err, &ue) {
				t.Fatalf("err = %v, want %v", err, tt.kind)
			}
			if ue.Status != tt.status {
				t.Errorf("status %d, want %d", ue.Status, tt.status)
			}
			if ue.RetryAfter < tt.retryAfter || (tt.retryAfter == 0 && ue.RetryAfter != 0) || ue.RetryAfter > 24*time.Hour {
				t.Errorf("retry after %v, want %v", ue.RetryAfter, tt.retryAfter)
			}
			if strings.Contains(err.Error(), canary) || strings.Contains(err.Error(), "PROMPT") {
				t.Errorf("error leaks a header, the URL's query or the body: %v", err)
			}
		})
	}
}

func TestConnectionRefused(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c, err := New(Config{URL: url + "/?key=" + canary, Response: "x"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Chat(context.Background(), request)
	if !errors.Is(err, connectors.ErrUnavailable) || strings.Contains(err.Error(), canary) {
		t.Errorf("err = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Chat(ctx, request); !errors.Is(err, connectors.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"relative URL", Config{URL: "/predict", Response: "a"}, "absolute"},
		{"ftp URL", Config{URL: "ftp://host/x", Response: "a"}, "http or https"},
		{"bad URL", Config{URL: "http://[::1", Response: "a"}, "does not parse"},
		{"empty path", Config{URL: "http://h/", Response: ""}, "path is empty"},
		{"empty segment", Config{URL: "http://h/", Response: "a..b"}, "empty segment"},
		{"bad method", Config{URL: "http://h/", Method: "PO ST", Response: "a"}, "invalid method"},
		{"bad header name", Config{URL: "http://h/", Response: "a", Headers: map[string]string{"Bad Name": "v"}}, "invalid header name"},
		{"header value with newline", Config{URL: "http://h/", Response: "a", Headers: map[string]string{"X-Key": canary + "\r\nX: y"}}, "line break"},
		{"unknown placeholder", Config{URL: "http://h/", Response: "a", Body: map[string]any{"q": "{{ secret }}"}}, "unknown placeholder"},
		{"unclosed placeholder", Config{URL: "http://h/", Response: "a", Body: map[string]any{"q": "{{ prompt"}}, "unclosed"},
		{"body not JSON", Config{URL: "http://h/", Response: "a", Body: json.RawMessage(`{"q":`)}, "body template"},
		{"unencodable body", Config{URL: "http://h/", Response: "a", Body: map[string]any{"f": func() {}}}, "not JSON"},
		{"negative timeout", Config{URL: "http://h/", Response: "a", Timeout: -1}, "negative timeout"},
	}
	for _, tt := range tests {
		_, err := New(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), canary) {
			t.Errorf("%s: error leaks a header value: %v", tt.name, err)
		}
	}
	c, err := New(Config{URL: "https://models.internal/v1/x", Response: "a", Body: json.RawMessage(`{"q":"{{prompt}}"}`)})
	if err != nil || c.Kind() != "http" {
		t.Errorf("valid config: %v", err)
	}
}

func FuzzExtract(f *testing.F) {
	f.Add(`{"a":{"b":[1,"x",{"c":null}]}}`, "a.b.1")
	f.Add(`[1,2,3]`, "2")
	f.Add(`{"a":`, "a")
	f.Add(`"s"`, "a")
	f.Fuzz(func(t *testing.T, doc, path string) {
		segs, err := parsePath(path)
		if err != nil {
			return
		}
		got, err := extract([]byte(doc), segs)
		if err == nil && !json.Valid([]byte(doc)) {
			t.Fatalf("extracted %q from invalid JSON", got)
		}
	})
}

func FuzzTemplate(f *testing.F) {
	f.Add(`{"q":"{{ prompt }}","m":"{{messages_json}}","s":"x {{ system }} y"}`, "he said \"hi\"\n😀", "sys")
	f.Add(`["{{ model }}", 1, true, null, {"a": "{{ prompt"}]`, "", "")
	f.Add(`"{{ prompt }}"`, "\xff\xfe", "\\u0000")
	f.Fuzz(func(t *testing.T, tmpl, prompt, system string) {
		n, err := compile([]byte(tmpl))
		if err != nil {
			return
		}
		v, err := varsOf(connectors.Request{Model: "m", Messages: []connectors.Message{{Role: connectors.System, Content: system}, {Role: connectors.User, Content: prompt}}})
		if err != nil {
			t.Fatal(err)
		}
		out := n.render(nil, v)
		if !json.Valid(out) {
			t.Fatalf("template %q with prompt %q rendered invalid JSON %q", tmpl, prompt, out)
		}
	})
}

func TestChatSendsRequestInOneWrite(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte(`{"v": "fine"}`))
	}))
	defer srv.Close()
	connectorstest.CheckOneWriteEach(t, func(hc *http.Client) func() error {
		c, err := New(Config{URL: srv.URL, Response: "v", HTTPClient: hc})
		if err != nil {
			t.Fatal(err)
		}
		return func() error {
			_, err := c.Chat(context.Background(), request)
			return err
		}
	})
}

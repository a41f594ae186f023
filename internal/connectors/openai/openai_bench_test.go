package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/moatproject/moat/internal/connectors"
)

// benchAnswer is a chat completion of about 2 KB.
var benchAnswer = func() []byte {
	b, _ := json.Marshal(map[string]any{
		"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
		"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
			"message": map[string]any{"role": "assistant", "content": strings.Repeat("The parcel will be replaced. ", 70)}}},
		"usage": map[string]any{"prompt_tokens": 500, "completion_tokens": 400, "total_tokens": 900},
	})
	return b
}()

func benchServer(b *testing.B) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(benchAnswer)
	}))
	b.Cleanup(srv.Close)
	return srv
}

func benchRequest() connectors.Request {
	return connectors.Request{Model: "gpt-4o-mini", Messages: []connectors.Message{
		{Role: connectors.System, Content: "Answer the customer."},
		{Role: connectors.User, Content: strings.Repeat("The parcel arrived late and the box was damaged. ", 42)},
	}}
}

// BenchmarkChat is one call through the connector (the SDK's client sending
// Moat's body); BenchmarkChatBareHTTP sends the same body with net/http
// alone, so the difference is what the SDK and the connector add.
func BenchmarkChat(b *testing.B) {
	srv := benchServer(b)
	benchChat(b, Config{BaseURL: srv.URL + "/v1", APIKey: "sk-bench", HTTPClient: srv.Client()})
}

// BenchmarkChatInMemory is one call through the connector with a transport
// that answers from memory: the connector's own work (the SDK's request
// machinery, encoding the body, decoding the answer), which the gateway's
// x-moat-overhead-us counts, without a loopback exchange's noise.
func BenchmarkChatInMemory(b *testing.B) {
	answer := func(req *http.Request) (*http.Response, error) {
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
		return &http.Response{StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:        http.Header{"Content-Type": {"application/json"}},
			ContentLength: int64(len(benchAnswer)), Body: io.NopCloser(bytes.NewReader(benchAnswer)), Request: req}, nil
	}
	benchChat(b, Config{BaseURL: "http://127.0.0.1:1/v1", APIKey: "sk-bench", HTTPClient: &http.Client{Transport: roundTripFunc(answer)}})
}

// benchChat sends benchRequest through a connector configured with cfg.
func benchChat(b *testing.B, cfg Config) {
	c, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	req := benchRequest()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Chat(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

func BenchmarkChatBareHTTP(b *testing.B) {
	srv := benchServer(b)
	c, err := New(Config{BaseURL: srv.URL + "/v1", APIKey: "sk-bench"})
	if err != nil {
		b.Fatal(err)
	}
	req := benchRequest()
	client := srv.Client()
	b.ReportAllocs()
	for b.Loop() {
		body, err := c.body(req, false)
		if err != nil {
			b.Fatal(err)
		}
		hreq, err := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL+"/v1/chat/completions", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		hreq.Header.Set("Authorization", "Bearer sk-bench")
		hreq.Header.Set("Content-Type", "application/json")
		res, err := client.Do(hreq)
		if err != nil {
			b.Fatal(err)
		}
		var out chatCompletion
		err = json.NewDecoder(res.Body).Decode(&out)
		res.Body.Close()
		if err != nil || len(out.Choices) == 0 {
			b.Fatal(err)
		}
	}
}

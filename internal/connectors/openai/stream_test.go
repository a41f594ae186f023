package openai

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/connectors"
)

func chunkEvent(content, finish string) string {
	fr := "null"
	if finish != "" {
		fr = `"` + finish + `"`
	}
	return fmt.Sprintf(`data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-test-0001","choices":[{"index":0,"delta":{"content":%q},"finish_reason":%s}]}`+"\n\n", content, fr)
}

const usageEvent = `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-test-0001","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}` + "\n\n"

// sse answers with events, flushing after each; hang keeps the stream open
// afterwards until the client goes away.
func sse(hang bool, events ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for _, e := range events {
			_, _ = w.Write([]byte(e))
			w.(http.Flusher).Flush()
		}
		if hang {
			<-r.Context().Done()
		}
	}
}

func collect(c *Connector, req connectors.Request) ([]connectors.Chunk, error) {
	var got []connectors.Chunk
	err := c.ChatStream(context.Background(), req, func(ch connectors.Chunk) error {
		got = append(got, ch)
		return nil
	})
	return got, err
}

func TestChatStream(t *testing.T) {
	t.Parallel()
	f, c := newFake(t, sse(false,
		chunkEvent("Hel", ""), chunkEvent("lo, ", ""), chunkEvent("world", ""), chunkEvent("", "stop"),
		usageEvent, "data: [DONE]\n\n"))
	got, err := collect(c, request())
	if err != nil {
		t.Fatal(err)
	}
	want := []connectors.Chunk{
		{Content: "Hel"}, {Content: "lo, "}, {Content: "world"},
		{Done: true, FinishReason: "stop", Usage: connectors.Usage{PromptTokens: 9, CompletionTokens: 4}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("chunks = %+v\nwant %+v", got, want)
	}
	body := f.lastBody(t)
	so, _ := body["stream_options"].(map[string]any)
	if body["stream"] != true || so["include_usage"] != true {
		t.Errorf("stream flags in body = %v %v", body["stream"], body["stream_options"])
	}
	if f.auth[0] != "Bearer "+testKey {
		t.Errorf("Authorization = %q", f.auth[0])
	}
}

func TestChatStreamLabels(t *testing.T) {
	t.Parallel()
	_, c := newFake(t, sse(false, chunkEvent(`{"lab`, ""), chunkEvent(`el":"bug"}`, "stop"), usageEvent, "data: [DONE]\n\n"))
	req := request()
	req.Labels = []string{"refund", "bug"}
	got, err := collect(c, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Content != "bug" || !got[1].Done || got[1].Usage.CompletionTokens != 4 {
		t.Errorf("chunks = %+v", got)
	}
}

func TestChatStreamErrors(t *testing.T) {
	t.Parallel()
	apiErr := `{"error":{"message":"key ` + testKey + `","type":"requests","code":"rate_limit_exceeded"}}`
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		timeout    time.Duration
		kind       error
		retryAfter time.Duration
		minChunks  int
	}{
		{name: "broken chunk", handler: sse(false, chunkEvent("a", ""), "data: {\"choices\": [ broken\n\n"), kind: connectors.ErrMalformed, minChunks: 1},
		{name: "ended early", handler: sse(false, chunkEvent("a", "")), kind: connectors.ErrUnavailable, minChunks: 1},
		{name: "error event", handler: sse(false, chunkEvent("a", ""), `data: {"error":{"message":"PROMPTCANARY","type":"server_error"}}`+"\n\n"), kind: connectors.ErrUnavailable},
		{name: "stalls", handler: sse(true, chunkEvent("a", "")), timeout: 30 * time.Millisecond, kind: connectors.ErrUnavailable, minChunks: 1},
		{name: "never answers", handler: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, timeout: 20 * time.Millisecond, kind: connectors.ErrUnavailable},
		{name: "429", handler: jsonAnswer(429, apiErr, "Retry-After", "3"), kind: connectors.ErrRateLimited, retryAfter: 3 * time.Second},
		{name: "500", handler: jsonAnswer(500, apiErr), kind: connectors.ErrUnavailable},
		{name: "400", handler: jsonAnswer(400, apiErr), kind: connectors.ErrRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, c := newFake(t, tt.handler)
			if tt.timeout > 0 {
				c.timeout = tt.timeout
			}
			got, err := collect(c, request())
			if !errors.Is(err, tt.kind) {
				t.Fatalf("err = %v, want %v", err, tt.kind)
			}
			var ue *connectors.UpstreamError
			if errors.As(err, &ue) && ue.RetryAfter != tt.retryAfter {
				t.Errorf("retry-after = %v, want %v", ue.RetryAfter, tt.retryAfter)
			}
			if len(got) < tt.minChunks {
				t.Errorf("got %d chunks before the error, want at least %d", len(got), tt.minChunks)
			}
			for _, ch := range got {
				if ch.Done {
					t.Errorf("a failed stream sent a Done chunk")
				}
			}
			checkSafe(t, err)
		})
	}
}

func TestChatStreamCallbackStops(t *testing.T) {
	t.Parallel()
	_, c := newFake(t, sse(true, chunkEvent("a", ""), chunkEvent("b", "")))
	stop := errors.New("enough")
	n := 0
	err := c.ChatStream(context.Background(), request(), func(connectors.Chunk) error {
		n++
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("err = %v after %d chunks, want the callback's error after 1", err, n)
	}
	if strings.Contains(err.Error(), testKey) {
		t.Error("key in error")
	}
}

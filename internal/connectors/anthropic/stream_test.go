package anthropic

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/connectors"
)

func event(typ, data string) string { return "event: " + typ + "\ndata: " + data + "\n\n" }

var (
	evStart = event("message_start", `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-test-0001","content":[],"stop_reason":null,"usage":{"input_tokens":21,"output_tokens":1}}}`)
	evBlock = event("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
	evPing  = event("ping", `{"type":"ping"}`)
	evStop  = event("content_block_stop", `{"type":"content_block_stop","index":0}`)
	evDelta = event("message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":6}}`)
	evEnd   = event("message_stop", `{"type":"message_stop"}`)
)

func text(s string) string {
	return event("content_block_delta", fmt.Sprintf(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":%q}}`, s))
}

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
	f, c := newFake(t, sse(false, evStart, evBlock, evPing, text("Hel"), text("lo, "), text("world"), evStop, evDelta, evEnd))
	got, err := collect(c, request())
	if err != nil {
		t.Fatal(err)
	}
	want := []connectors.Chunk{
		{Content: "Hel"}, {Content: "lo, "}, {Content: "world"},
		{Done: true, FinishReason: "end_turn", Usage: connectors.Usage{PromptTokens: 21, CompletionTokens: 6}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("chunks = %+v\nwant %+v", got, want)
	}
	key, body := f.last(t)
	if body["stream"] != true || key[:len(testKey)] != testKey {
		t.Errorf("stream = %v, key seen = %v", body["stream"], key == "")
	}
}

func TestChatStreamLabels(t *testing.T) {
	t.Parallel()
	_, c := newFake(t, sse(false, evStart, evBlock, text("ref"), text("und"), evStop, evDelta, evEnd))
	req := request()
	req.Labels = []string{"refund", "bug"}
	got, err := collect(c, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Content != "refund" || !got[1].Done {
		t.Errorf("chunks = %+v", got)
	}
}

func TestChatStreamErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		handler   http.HandlerFunc
		timeout   time.Duration
		kind      error
		minChunks int
	}{
		{name: "broken chunk", handler: sse(false, evStart, text("a"), event("content_block_delta", `{"type": "content_block_delta", "delta": {broken`)), kind: connectors.ErrMalformed, minChunks: 1},
		{name: "ended early", handler: sse(false, evStart, text("a")), kind: connectors.ErrUnavailable, minChunks: 1},
		{name: "overloaded event", handler: sse(false, evStart, text("a"), event("error", `{"type":"error","error":{"type":"overloaded_error","message":"PROMPTCANARY"}}`)), kind: connectors.ErrUnavailable, minChunks: 1},
		{name: "rate limit event", handler: sse(false, evStart, event("error", `{"type":"error","error":{"type":"rate_limit_error","message":"x"}}`)), kind: connectors.ErrRateLimited},
		{name: "stalls", handler: sse(true, evStart, text("a")), timeout: 30 * time.Millisecond, kind: connectors.ErrUnavailable, minChunks: 1},
		{name: "529", handler: jsonAnswer(529, `{"type":"error","error":{"type":"overloaded_error","message":"busy"}}`), kind: connectors.ErrUnavailable},
		{name: "429", handler: jsonAnswer(429, `{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}`, "Retry-After", "2"), kind: connectors.ErrRateLimited},
		{name: "400", handler: jsonAnswer(400, `{"type":"error","error":{"type":"invalid_request_error","message":"`+testKey+`"}}`), kind: connectors.ErrRejected},
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
	_, c := newFake(t, sse(true, evStart, text("a"), text("b")))
	stop := errors.New("enough")
	n := 0
	err := c.ChatStream(context.Background(), request(), func(connectors.Chunk) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("err = %v after %d chunks", err, n)
	}
}

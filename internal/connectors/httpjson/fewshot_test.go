package httpjson

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/moatproject/moat/internal/connectors"
)

func TestClassificationShowsExamples(t *testing.T) {
	var mu sync.Mutex
	var got map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		_ = json.Unmarshal(body, &got)
		mu.Unlock()
		_, _ = w.Write([]byte(`{"label":"bug"}`))
	}))
	defer srv.Close()
	c, err := New(Config{URL: srv.URL, Body: map[string]any{"system": "{{ system }}", "messages": "{{ messages_json }}", "prompt": "{{ prompt }}"}, Response: "label"})
	if err != nil {
		t.Fatal(err)
	}
	req := connectors.Request{
		Messages: []connectors.Message{{Role: connectors.System, Content: "Sort tickets."}, {Role: connectors.User, Content: "it fails"}},
		Labels:   []string{"billing", "bug"},
		Examples: []connectors.Example{{Text: "refund please", Label: "billing"}},
	}
	if _, err := c.Chat(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	const shown = "Examples:\nrefund please => billing"
	if got["system"] != "Sort tickets.\n\n"+shown {
		t.Errorf("system = %q", got["system"])
	}
	msgs, _ := got["messages"].([]any)
	if len(msgs) != 3 || msgs[1].(map[string]any)["content"] != shown {
		t.Errorf("messages = %v", msgs)
	}
	if got["prompt"] != "it fails" {
		t.Errorf("prompt = %q", got["prompt"])
	}
}

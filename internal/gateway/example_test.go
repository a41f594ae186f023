package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/moatproject/moat/internal/gateway"
)

type exampleResources struct{ res gateway.Resources }

func (e exampleResources) LoadResources(context.Context) (gateway.Resources, error) {
	return e.res, nil
}

type exampleRecorder struct{ last gateway.Record }

func (r *exampleRecorder) Record(_ context.Context, rec gateway.Record) error {
	r.last = rec
	return nil
}

// A call through the gateway to an OpenAI-compatible upstream (here a fake
// that echoes the last user message): the e-mail address leaves as a token
// and comes back restored.
func Example() {
	var seen string
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Messages []struct{ Role, Content string } `json:"messages"`
		}
		raw, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(raw, &body)
		seen = body.Messages[len(body.Messages)-1].Content
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id": "1", "object": "chat.completion", "created": 1, "model": "m",
			"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
				"message": map[string]any{"role": "assistant", "content": "Sure, I will write to " + seen[len("Write to "):]}}},
		})
	}))
	defer upstream.Close()

	zero := 0
	rec := &exampleRecorder{}
	g, err := gateway.New(context.Background(), gateway.Config{
		Resources: exampleResources{gateway.Resources{
			Vendors:    []gateway.Vendor{{Name: "acme", Location: gateway.ManagedService, RetentionDays: &zero}},
			Connectors: []gateway.Connector{{Name: "acme-llm", Type: gateway.TypeOpenAI, Vendor: "acme", BaseURL: upstream.URL, Credential: &gateway.Credential{Env: "ACME_KEY"}}},
			Models:     []gateway.Model{{Name: "chat", Chain: []gateway.ModelTarget{{Connector: "acme-llm", Model: "m"}}}},
		}},
		Recorder: rec,
		Getenv:   func(string) string { return "example-key" },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := g.Chat(context.Background(), gateway.Request{
		Identity:   gateway.Identity{Kind: "key", ID: "key_1", Role: "ai"},
		Model:      "chat",
		Messages:   []gateway.Message{{Role: "user", Content: "Write to jane.doe@example.com"}},
		RestoreAll: true,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("left:    ", seen)
	fmt.Println("received:", res.Received)
	fmt.Println("returned:", res.Content)
	fmt.Println("recorded:", rec.last.Outcome, rec.last.Findings, rec.last.Decisions)
	// Output:
	// left:     Write to <EMAIL_1>
	// received: Sure, I will write to <EMAIL_1>
	// returned: Sure, I will write to jane.doe@example.com
	// recorded: ok map[pii.email:1] map[tokenize:1]
}

package openai

import (
	"net/http"
	"strings"
	"testing"

	"github.com/moatproject/moat/internal/connectors"
)

func TestClassificationShowsExamples(t *testing.T) {
	f, c := newFake(t, jsonAnswer(http.StatusOK, completion(`{"label":"bug"}`)))
	req := request()
	req.Labels = []string{"billing", "bug"}
	req.Examples = []connectors.Example{{Text: "refund please", Label: "billing"}, {Text: "it crashes", Label: "bug"}}
	res, err := c.Chat(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Content != "bug" {
		t.Errorf("label = %q", res.Content)
	}
	msgs, _ := f.lastBody(t)["messages"].([]any)
	if len(msgs) != 3 {
		t.Fatalf("%d messages sent, want the system, the examples and the user's", len(msgs))
	}
	shown, _ := msgs[1].(map[string]any)
	content, _ := shown["content"].(string)
	if shown["role"] != "system" || content != "Examples:\nrefund please => billing\nit crashes => bug" {
		t.Errorf("examples message = %v", shown)
	}
	if last, _ := msgs[2].(map[string]any); last["role"] != "user" || !strings.Contains(last["content"].(string), "PROMPTCANARY") {
		t.Errorf("the user's message moved: %v", msgs[2])
	}

	// Examples without labels are not a classification: nothing is added.
	req.Labels = nil
	if _, err := c.Chat(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if msgs, _ := f.lastBody(t)["messages"].([]any); len(msgs) != 2 {
		t.Errorf("%d messages sent without labels, want 2", len(msgs))
	}
}

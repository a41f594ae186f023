package anthropic

import (
	"net/http"
	"testing"

	"github.com/moatproject/moat/internal/connectors"
)

func TestClassificationShowsExamples(t *testing.T) {
	f, c := newFake(t, jsonAnswer(http.StatusOK, message("bug")))
	req := request()
	req.Labels = []string{"billing", "bug"}
	req.Examples = []connectors.Example{{Text: "refund please", Label: "billing"}, {Text: "it\ncrashes", Label: "bug"}}
	res, err := c.Chat(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Content != "bug" {
		t.Errorf("label = %q", res.Content)
	}
	_, body := f.last(t)
	system, _ := body["system"].([]any)
	var texts []string
	for _, b := range system {
		block, _ := b.(map[string]any)
		text, _ := block["text"].(string)
		texts = append(texts, text)
	}
	if len(texts) != 3 || texts[0] != "You sort tickets." || texts[1] != "Examples:\nrefund please => billing\nit crashes => bug" {
		t.Errorf("system blocks = %q", texts)
	}
	if msgs, _ := body["messages"].([]any); len(msgs) != 1 {
		t.Errorf("%d messages, want only the user's", len(msgs))
	}
}

package local

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/moatproject/moat/internal/connectors"
)

func newTicketConnector(t *testing.T) *Connector {
	t.Helper()
	c, err := New(Config{Examples: loadExamples(t, "tickets_train.jsonl"), Labels: []string{"refund", "bug", "question"}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func user(text string) []connectors.Message {
	return []connectors.Message{
		{Role: connectors.System, Content: "Classify the ticket."},
		{Role: connectors.User, Content: "earlier message"},
		{Role: connectors.Assistant, Content: "ok"},
		{Role: connectors.User, Content: text},
	}
}

func TestConnectorClassifies(t *testing.T) {
	t.Parallel()
	c := newTicketConnector(t)
	if c.Kind() != "local" {
		t.Errorf("kind %q", c.Kind())
	}
	tests := []struct {
		text   string
		labels []string
		want   string
	}{
		{"I was billed twice, please give me my money back", []string{"refund", "bug", "question"}, "refund"},
		{"The app crashes with an error when I click save", []string{"bug", "question", "refund"}, "bug"},
		{"How do I change my email address?", []string{"refund", "bug", "question"}, "question"},
		// Restricted to a subset, the answer is one of the subset.
		{"The app crashes with an error when I click save", []string{"refund", "question"}, ""},
	}
	for _, tt := range tests {
		resp, err := c.Chat(context.Background(), connectors.Request{Model: "x", Messages: user(tt.text), Labels: tt.labels})
		if err != nil {
			t.Fatalf("%q: %v", tt.text, err)
		}
		if tt.want != "" && resp.Content != tt.want {
			t.Errorf("%q: got %q, want %q", tt.text, resp.Content, tt.want)
		}
		if tt.want == "" && resp.Content != "refund" && resp.Content != "question" {
			t.Errorf("%q: got %q outside the requested labels", tt.text, resp.Content)
		}
		if resp.Model != ClassifierResponseModel || resp.FinishReason != "stop" {
			t.Errorf("model %q finish %q", resp.Model, resp.FinishReason)
		}
		want := len(strings.Fields(tt.text)) + 3 + 2 + 1
		if resp.Usage.PromptTokens != want || resp.Usage.CompletionTokens != 1 {
			t.Errorf("usage %+v, want %d prompt tokens", resp.Usage, want)
		}
	}
}

func TestConnectorEntities(t *testing.T) {
	t.Parallel()
	c := newTicketConnector(t)
	text := "Héllo, write to jane.doe@example.com or use card 4111 1111 1111 1111."
	for _, req := range []connectors.Request{
		{Model: EntitiesModel, Messages: user(text)},
		{Model: "anything", Messages: user(text), Schema: map[string]any{"type": "object", "properties": map[string]any{"entities": map[string]any{"type": "array"}}}},
	} {
		resp, err := c.Chat(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Model != EntitiesResponseModel {
			t.Errorf("model %q", resp.Model)
		}
		var got Entities
		if err := json.Unmarshal([]byte(resp.Content), &got); err != nil {
			t.Fatalf("%v: %s", err, resp.Content)
		}
		types := map[string]string{}
		runes := []rune(text)
		for _, e := range got.Entities {
			types[e.Type] = e.Text
			if string(runes[e.Start:e.End]) != e.Text {
				t.Errorf("%s: text %q does not match offsets %d..%d", e.Type, e.Text, e.Start, e.End)
			}
			if e.Score <= 0 || e.Score > 1 {
				t.Errorf("%s: score %v", e.Type, e.Score)
			}
		}
		if types["pii.email"] != "jane.doe@example.com" || types["pii.card"] != "4111 1111 1111 1111" {
			t.Errorf("entities %s", resp.Content)
		}
	}
	// No entity: an empty list, not null.
	resp, err := c.Chat(context.Background(), connectors.Request{Model: EntitiesModel, Messages: user("nothing here")})
	if err != nil || resp.Content != `{"entities":[]}` {
		t.Errorf("got %q, %v", resp.Content, err)
	}
	// Entities need no examples.
	bare, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bare.Chat(context.Background(), connectors.Request{Model: EntitiesModel, Messages: user(text)}); err != nil {
		t.Errorf("entities without examples: %v", err)
	}
}

func TestConnectorRejects(t *testing.T) {
	t.Parallel()
	c := newTicketConnector(t)
	bare, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		c    *Connector
		req  connectors.Request
		want string
	}{
		{"chat", c, connectors.Request{Model: "gpt", Messages: user("hello")}, "classifies"},
		{"unknown labels", c, connectors.Request{Messages: user("x"), Labels: []string{"refund", "spam", "ham"}}, `["spam" "ham"] were not trained`},
		{"no user message", c, connectors.Request{Labels: []string{"bug"}, Messages: []connectors.Message{{Role: connectors.System, Content: "x"}}}, "no user message"},
		{"too long", c, connectors.Request{Labels: []string{"bug"}, Messages: user(strings.Repeat("a", MaxInputBytes+1))}, "more than the limit"},
		{"no examples", bare, connectors.Request{Labels: []string{"bug"}, Messages: user("x")}, "needs training examples"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := tt.c.Chat(context.Background(), tt.req)
			var ue *connectors.UpstreamError
			if !errors.Is(err, connectors.ErrRejected) || !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrRejected containing %q", err, tt.want)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Chat(ctx, connectors.Request{Labels: []string{"bug"}, Messages: user("x")}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestNewValidatesLabels(t *testing.T) {
	t.Parallel()
	ex := []Example{{Text: "refund me", Label: "refund"}, {Text: "it crashes", Label: "bug"}}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"label outside the set", Config{Examples: ex, Labels: []string{"refund"}}, `label "bug", not in the label set`},
		{"label without example", Config{Examples: ex, Labels: []string{"refund", "bug", "question"}}, `no example for labels ["question"]`},
		{"labels without examples", Config{Labels: []string{"a", "b"}}, "no examples"},
		{"one label", Config{Examples: ex[:1]}, "at least 2"},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestEntitiesReportPlaceholders(t *testing.T) {
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	text := "Write to <EMAIL_1> or ana@example.com, card <CARD_12>; not <email_1> nor <EMAIL_>."
	resp, err := c.Chat(context.Background(), connectors.Request{Model: EntitiesModel, Messages: []connectors.Message{{Role: connectors.User, Content: text}}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.Content, `"<EMAIL_1>"`) {
		t.Errorf("answer %s escapes the placeholder, so it cannot be restored", resp.Content)
	}
	var got Entities
	if err := json.Unmarshal([]byte(resp.Content), &got); err != nil {
		t.Fatal(err)
	}
	var summary []string
	for _, e := range got.Entities {
		summary = append(summary, e.Type+":"+e.Text)
		if r := []rune(text); string(r[e.Start:e.End]) != e.Text {
			t.Errorf("%s: offsets %d-%d do not hold its text", e.Type, e.Start, e.End)
		}
	}
	want := []string{"placeholder:<EMAIL_1>", "pii.email:ana@example.com", "placeholder:<CARD_12>"}
	if !slices.Equal(summary, want) {
		t.Errorf("entities %q, want %q", summary, want)
	}
}

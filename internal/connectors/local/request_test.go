package local

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/moatproject/moat/internal/connectors"
)

var weatherExamples = []Example{
	{Text: "it is sunny and warm today", Label: "sun"},
	{Text: "bright sunshine all afternoon", Label: "sun"},
	{Text: "clear blue sky and hot sun", Label: "sun"},
	{Text: "heavy rain and wet streets", Label: "rain"},
	{Text: "it keeps raining, take an umbrella", Label: "rain"},
	{Text: "showers and drizzle all day", Label: "rain"},
	{Text: "snow fell overnight, everything is white", Label: "snow"},
	{Text: "a blizzard with deep snow drifts", Label: "snow"},
	{Text: "snowflakes and freezing cold", Label: "snow"},
}

func classifyWith(t *testing.T, c *Connector, text string, labels []string, examples []Example) (string, error) {
	t.Helper()
	res, err := c.Chat(context.Background(), connectors.Request{Messages: user(text), Labels: labels, Examples: examples})
	return res.Content, err
}

func TestRequestExamplesTrainAClassifier(t *testing.T) {
	t.Parallel()
	c, err := New(Config{}) // no examples of its own
	if err != nil {
		t.Fatal(err)
	}
	if _, err := classifyWith(t, c, "rain again", []string{"sun", "rain"}, nil); !errors.Is(err, connectors.ErrRejected) {
		t.Fatalf("without any examples: %v", err)
	}
	for text, want := range map[string]string{
		"umbrella weather, rain all day": "rain",
		"deep snow and freezing":         "snow",
		"sunny and hot":                  "sun",
	} {
		got, err := classifyWith(t, c, text, []string{"sun", "rain", "snow"}, weatherExamples)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%q classified %q, want %q", text, got, want)
		}
	}
	if n := c.cache.len(); n != 1 {
		t.Errorf("the same examples trained %d classifiers, want 1", n)
	}
}

func TestRequestExamplesOverrideAndLabelsRespected(t *testing.T) {
	t.Parallel()
	c := newTicketConnector(t)
	// The request's examples win over the connector's own.
	got, err := classifyWith(t, c, "snow and ice", []string{"sun", "rain", "snow"}, weatherExamples)
	if err != nil || got != "snow" {
		t.Fatalf("got %q, %v", got, err)
	}
	// Only the labels asked for may come back, even where another fits
	// better.
	got, err = classifyWith(t, c, "snow and ice", []string{"sun", "rain"}, weatherExamples)
	if err != nil || (got != "sun" && got != "rain") {
		t.Fatalf("restricted to sun and rain, got %q, %v", got, err)
	}
	// A label the request's examples do not teach is refused, even if the
	// connector's own classifier knows it.
	_, err = classifyWith(t, c, "snow and ice", []string{"snow", "refund"}, weatherExamples)
	if !errors.Is(err, connectors.ErrRejected) || !strings.Contains(err.Error(), "refund") {
		t.Fatalf("untrained label: %v", err)
	}
	// Without request examples, the connector's own classifier answers.
	if _, err := classifyWith(t, c, "I want my money back", []string{"refund", "bug"}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestRequestClassifierCache(t *testing.T) {
	t.Parallel()
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := c.requestClassifier(weatherExamples)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.requestClassifier(append([]Example(nil), weatherExamples...))
	if err != nil {
		t.Fatal(err)
	}
	if first != again {
		t.Error("equal examples trained a second classifier")
	}
	other, err := c.requestClassifier(weatherExamples[:6])
	if err != nil {
		t.Fatal(err)
	}
	if other == first || len(other.Labels()) != 2 {
		t.Errorf("different examples reused a classifier (labels %v)", other.Labels())
	}
	// Fill the cache past its size: the least recently used goes first.
	for i := range RequestCacheSize {
		ex := []Example{{Text: fmt.Sprintf("word%d alpha", i), Label: "a"}, {Text: "beta gamma", Label: "b"}}
		if _, err := c.requestClassifier(ex); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			c.requestClassifier(weatherExamples) // keep it recently used
		}
	}
	if n := c.cache.len(); n != RequestCacheSize {
		t.Errorf("cache holds %d, want %d", n, RequestCacheSize)
	}
	if _, ok := c.cache.get(keyOf(weatherExamples[:6])); ok {
		t.Error("the least recently used classifier was kept")
	}
	if cl, ok := c.cache.get(keyOf(weatherExamples)); !ok || cl != first {
		t.Error("a recently used classifier was evicted")
	}
}

func TestRequestExamplesBounds(t *testing.T) {
	t.Parallel()
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	many := make([]Example, MaxRequestExamples+1)
	for i := range many {
		many[i] = Example{Text: "x y", Label: fmt.Sprint(i % 2)}
	}
	big := []Example{{Text: strings.Repeat("a ", MaxRequestExampleBytes/2), Label: "a"}, {Text: "b", Label: "b"}}
	for name, ex := range map[string][]Example{
		"too many":    many,
		"too large":   big,
		"one label":   {{Text: "a", Label: "a"}, {Text: "b", Label: "a"}},
		"empty label": {{Text: "a", Label: ""}, {Text: "b", Label: "b"}},
		"no text":     {{Text: " ", Label: "a"}, {Text: "b", Label: "b"}},
	} {
		if _, err := classifyWith(t, c, "text", []string{"a", "b"}, ex); !errors.Is(err, connectors.ErrRejected) {
			t.Errorf("%s: %v, want a rejection", name, err)
		}
	}
	if n := c.cache.len(); n != 0 {
		t.Errorf("refused examples were cached (%d)", n)
	}
}

func TestExampleKeyIsUnambiguous(t *testing.T) {
	t.Parallel()
	a := keyOf([]Example{{Text: "ab", Label: "c"}})
	b := keyOf([]Example{{Text: "a", Label: "bc"}})
	c := keyOf([]Example{{Text: "ab", Label: "c"}, {Text: "", Label: ""}})
	if a == b || a == c || a != keyOf([]Example{{Text: "ab", Label: "c"}}) {
		t.Error("example keys collide or are not stable")
	}
}

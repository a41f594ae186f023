package local

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/moatproject/moat/internal/connectors"
	"github.com/moatproject/moat/internal/detect"
)

// Model names in the Request and the Response.
const (
	// EntitiesModel asks for entity extraction.
	EntitiesModel = "entities"
	// ClassifierResponseModel and EntitiesResponseModel name what answered.
	ClassifierResponseModel = "local-classifier"
	EntitiesResponseModel   = "local-entities"
)

// MaxInputBytes bounds the text one request may classify or scan.
const MaxInputBytes = 1 << 20

// Config is a local connector's settings.
type Config struct {
	// Examples train the classifier; without them, the connector only
	// extracts entities.
	Examples []Example `json:"examples,omitempty"`
	// Labels, when set, is the label set: every example must carry one of
	// them and every one of them must have an example.
	Labels []string `json:"labels,omitempty"`
	// Options tune training; the zero value gives the defaults.
	Options Options `json:"-"`
}

// Connector answers classification and entity-extraction requests in
// process.
type Connector struct {
	classifier *Classifier // nil when no examples were configured
	options    Options
	cache      *classifierCache // of classifiers trained on requests' examples
}

var _ connectors.Connector = (*Connector)(nil)

// New trains the classifier from cfg.Examples, once.
func New(cfg Config) (*Connector, error) {
	if len(cfg.Labels) > 0 {
		declared := map[string]bool{}
		for _, l := range cfg.Labels {
			if strings.TrimSpace(l) == "" {
				return nil, fmt.Errorf("local: empty label in the label set")
			}
			declared[l] = true
		}
		if len(cfg.Examples) == 0 {
			return nil, fmt.Errorf("local: labels are set but there are no examples to learn them from")
		}
		seen := map[string]bool{}
		for i, ex := range cfg.Examples {
			if !declared[ex.Label] {
				return nil, fmt.Errorf("local: example %d has label %q, not in the label set", i, ex.Label)
			}
			seen[ex.Label] = true
		}
		var missing []string
		for l := range declared {
			if !seen[l] {
				missing = append(missing, l)
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			return nil, fmt.Errorf("local: no example for labels %q", missing)
		}
	}
	c := &Connector{options: cfg.Options, cache: newClassifierCache(RequestCacheSize)}
	if len(cfg.Examples) > 0 {
		cl, err := Train(cfg.Examples, cfg.Options)
		if err != nil {
			return nil, err
		}
		c.classifier = cl
	}
	return c, nil
}

// Kind is "local".
func (c *Connector) Kind() string { return "local" }

// Classifier returns the trained classifier, or nil.
func (c *Connector) Classifier() *Classifier { return c.classifier }

func rejected(format string, args ...any) error {
	return &connectors.UpstreamError{Kind: connectors.ErrRejected, Err: fmt.Errorf("local: "+format, args...)}
}

const capabilities = "the local connector classifies (a request with labels) and extracts entities (model \"entities\", or a schema with an \"entities\" property)"

// Chat classifies the last user message when the request has labels, or
// extracts its entities when the model is "entities" or the schema asks
// for "entities"; it rejects anything else.
func (c *Connector) Chat(ctx context.Context, req connectors.Request) (connectors.Response, error) {
	if err := ctx.Err(); err != nil {
		return connectors.Response{}, &connectors.UpstreamError{Kind: connectors.ErrUnavailable, Err: err}
	}
	switch {
	case req.Model == EntitiesModel:
		return c.entities(req)
	case len(req.Labels) > 0:
		return c.classify(req)
	case schemaHasEntities(req.Schema):
		return c.entities(req)
	}
	return connectors.Response{}, rejected("model %q without labels: %s", req.Model, capabilities)
}

func schemaHasEntities(schema map[string]any) bool {
	props, ok := schema["properties"].(map[string]any)
	if !ok {
		return false
	}
	_, ok = props["entities"]
	return ok
}

// lastUser returns the content of the last user message.
func lastUser(req connectors.Request) (string, error) {
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if req.Messages[i].Role == connectors.User {
			text := req.Messages[i].Content
			if len(text) > MaxInputBytes {
				return "", rejected("the user message is %d bytes, more than the limit of %d", len(text), MaxInputBytes)
			}
			return text, nil
		}
	}
	return "", rejected("no user message: %s", capabilities)
}

func promptTokens(req connectors.Request) int {
	n := 0
	for _, m := range req.Messages {
		n += len(strings.Fields(m.Content))
	}
	return n
}

// classify uses the request's own examples when it brings some (a step's
// examples), the connector's otherwise.
func (c *Connector) classify(req connectors.Request) (connectors.Response, error) {
	cl := c.classifier
	if len(req.Examples) > 0 {
		var err error
		if cl, err = c.requestClassifier(req.Examples); err != nil {
			return connectors.Response{}, err
		}
	}
	if cl == nil {
		return connectors.Response{}, rejected("classification needs training examples, in the request or in the connector's settings; there are none")
	}
	var unknown []string
	for _, l := range req.Labels {
		if !slices.Contains(cl.labels, l) && !slices.Contains(unknown, l) {
			unknown = append(unknown, l)
		}
	}
	if len(unknown) > 0 {
		return connectors.Response{}, rejected("labels %q were not trained (trained: %q)", unknown, cl.labels)
	}
	text, err := lastUser(req)
	if err != nil {
		return connectors.Response{}, err
	}
	label, _ := cl.PredictAmong(text, req.Labels)
	return connectors.Response{
		Content:      label,
		Model:        ClassifierResponseModel,
		FinishReason: "stop",
		Usage:        connectors.Usage{PromptTokens: promptTokens(req), CompletionTokens: len(strings.Fields(label))},
	}, nil
}

// Entity is one entity in the answer of an extraction; Start and End are
// Unicode code points, End exclusive.
type Entity struct {
	Type  string  `json:"type"`
	Text  string  `json:"text"`
	Start int     `json:"start"`
	End   int     `json:"end"`
	Score float64 `json:"score"`
}

// Entities is the answer of an extraction.
type Entities struct {
	Entities []Entity `json:"entities"`
}

func (c *Connector) entities(req connectors.Request) (connectors.Response, error) {
	text, err := lastUser(req)
	if err != nil {
		return connectors.Response{}, err
	}
	findings := withPlaceholders(text, detect.Scan(text))
	out := Entities{Entities: make([]Entity, 0, len(findings))}
	// Findings are sorted by start and do not overlap: walk the text once,
	// turning code-point offsets into byte offsets.
	bytePos, runePos := 0, 0
	advance := func(to int) int {
		for runePos < to && bytePos < len(text) {
			_, size := utf8.DecodeRuneInString(text[bytePos:])
			bytePos += size
			runePos++
		}
		return bytePos
	}
	for _, f := range findings {
		if f.Start < runePos || f.End < f.Start {
			continue // cannot happen with Scan's contract; never slice wrongly
		}
		a := advance(f.Start)
		b := advance(f.End)
		out.Entities = append(out.Entities, Entity{Type: f.Type, Text: text[a:b], Start: f.Start, End: f.End, Score: f.Score})
	}
	// Unescaped, so that "<EMAIL_1>" stays as the gateway can restore it
	// (json.Marshal would write \u003cEMAIL_1\u003e).
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return connectors.Response{}, fmt.Errorf("local: encode entities: %w", err)
	}
	body := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	return connectors.Response{
		Content:      string(body),
		Model:        EntitiesResponseModel,
		FinishReason: "stop",
		Usage:        connectors.Usage{PromptTokens: promptTokens(req), CompletionTokens: len(strings.Fields(string(body)))},
	}, nil
}

// placeholderPattern is the shape of the gateway's tokens (<EMAIL_1>).
var placeholderPattern = regexp.MustCompile(`<[A-Z][A-Z0-9_]{0,63}_[0-9]{1,9}>`)

// withPlaceholders adds the gateway's tokens in text to findings as
// entities of type "placeholder": the local model sees personal data the way
// any vendor does, tokenised, and reports where it stood, so the answer
// restored by the gateway names the values. Findings that overlap a
// placeholder are dropped (a detector may see part of one).
func withPlaceholders(text string, findings []detect.Finding) []detect.Finding {
	matches := placeholderPattern.FindAllStringIndex(text, -1)
	if len(matches) == 0 {
		return findings
	}
	out := make([]detect.Finding, 0, len(findings)+len(matches))
	for _, m := range matches {
		start := utf8.RuneCountInString(text[:m[0]])
		out = append(out, detect.Finding{Type: "placeholder", Start: start, End: start + utf8.RuneCountInString(text[m[0]:m[1]]), Score: 1})
	}
	placeholders := len(out)
	for _, f := range findings {
		overlaps := false
		for _, p := range out[:placeholders] {
			if f.Start < p.End && p.Start < f.End {
				overlaps = true
				break
			}
		}
		if !overlaps {
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b detect.Finding) int { return a.Start - b.Start })
	return out
}

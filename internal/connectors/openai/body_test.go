package openai

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"testing"

	"github.com/moatproject/moat/internal/connectors"
)

// chatRequest is the body of a chat completion, the fields Moat sends.
type chatRequest struct {
	Model               string          `json:"model"`
	Messages            []wireMessage   `json:"messages"`
	Temperature         *float64        `json:"temperature,omitempty"`
	MaxTokens           int             `json:"max_tokens,omitempty"`
	MaxCompletionTokens int             `json:"max_completion_tokens,omitempty"`
	ResponseFormat      *responseFormat `json:"response_format,omitempty"`
	Stream              bool            `json:"stream,omitempty"`
	StreamOptions       *streamOptions  `json:"stream_options,omitempty"`
}

type wireMessage struct {
	Role    connectors.Role `json:"role"`
	Content string          `json:"content"`
}

type responseFormat struct {
	Type       string     `json:"type"`
	JSONSchema jsonSchema `json:"json_schema"`
}

type jsonSchema struct {
	Name   string         `json:"name"`
	Strict bool           `json:"strict"`
	Schema map[string]any `json:"schema"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// referenceBody is body as it was written with encoding/json, the oracle
// of TestBodyMatchesEncoder and FuzzBody.
func referenceBody(c *Connector, req connectors.Request, stream bool) ([]byte, error) {
	if err := checkRequest(req); err != nil {
		return nil, err
	}
	w := chatRequest{Model: req.Model, Temperature: req.Temperature, Stream: stream}
	if stream {
		w.StreamOptions = &streamOptions{IncludeUsage: true}
	}
	messages := connectors.FewShotMessages(req)
	w.Messages = make([]wireMessage, len(messages))
	for i, m := range messages {
		switch m.Role {
		case connectors.System, connectors.User, connectors.Assistant:
			w.Messages[i] = wireMessage{Role: m.Role, Content: m.Content}
		default:
			return nil, rejected(fmt.Errorf("message %d has unknown role %q", i, truncate(string(m.Role), 32)))
		}
	}
	if c.legacyMax {
		w.MaxTokens = req.MaxTokens
	} else {
		w.MaxCompletionTokens = req.MaxTokens
	}
	if name, schema := responseSchema(req); schema != nil {
		w.ResponseFormat = &responseFormat{Type: "json_schema", JSONSchema: jsonSchema{Name: name, Strict: true, Schema: schema}}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Tokens such as <EMAIL_1> stay readable to the model.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(w); err != nil {
		return nil, rejected(errNotJSON)
	}
	return buf.Bytes(), nil
}

func checkBody(t *testing.T, c *Connector, req connectors.Request, stream bool) {
	t.Helper()
	got, err := c.body(req, stream)
	want, wantErr := referenceBody(c, req, stream)
	if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
		t.Fatalf("%+v: error %v, want %v", req, err, wantErr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%+v:\n got  %s\n want %s", req, got, want)
	}
}

func TestBodyMatchesEncoder(t *testing.T) {
	t.Parallel()
	temps := []float64{0, 0.7, 2, 1e-7, 1.5e-6, 1e21, 123456789, -0.25, math.NaN(), math.Inf(1)}
	for _, legacy := range []bool{false, true} {
		c := &Connector{legacyMax: legacy}
		for _, stream := range []bool{false, true} {
			for i, temp := range append(temps, -1) {
				req := benchRequest()
				if temp != -1 {
					req.Temperature = &temps[i]
				}
				req.MaxTokens = i * 50
				req.Messages[1].Content += " <EMAIL_1> & \"quotes\" \u2028 \x01 \xff é"
				checkBody(t, c, req, stream)
				req.Labels = []string{"refund", "<spam>"}
				checkBody(t, c, req, stream)
				req.Examples = []connectors.Example{{Text: "a & b", Label: "refund"}}
				checkBody(t, c, req, stream)
				req.Schema, req.SchemaName = map[string]any{"type": "object", "properties": map[string]any{"a&b": map[string]any{"type": "string", "pattern": "<x>"}}}, "x<y>"
				checkBody(t, c, req, stream)
				req.Schema = map[string]any{"bad": math.NaN()}
				checkBody(t, c, req, stream)
			}
		}
	}
	for _, req := range []connectors.Request{
		{}, {Model: "m"}, {Model: "m", Messages: []connectors.Message{{Role: "tool", Content: "x"}}},
		{Model: "m", Messages: []connectors.Message{{Role: connectors.User, Content: "x"}, {Role: "x\x00y", Content: "x"}}},
		{Model: "m", Messages: []connectors.Message{{Role: connectors.User}}, MaxTokens: -1},
	} {
		checkBody(t, &Connector{}, req, false)
	}
}

// FuzzBody compares body with the encoding/json original on any text.
func FuzzBody(f *testing.F) {
	f.Add("gpt-4o", "Be brief.", "hello <EMAIL_1> & more", 0.5, 100, false)
	f.Add("m\u2028", "\x00\xff", "\"\\", 1e-9, 0, true)
	f.Fuzz(func(t *testing.T, model, system, user string, temp float64, maxTokens int, stream bool) {
		req := connectors.Request{Model: model, MaxTokens: maxTokens, Temperature: &temp,
			Messages: []connectors.Message{{Role: connectors.System, Content: system}, {Role: connectors.User, Content: user}}}
		checkBody(t, &Connector{}, req, stream)
		req.Temperature = nil
		checkBody(t, &Connector{legacyMax: true}, req, stream)
	})
}

// Package openai is the connector for the OpenAI chat-completions API and
// for servers that speak it (Azure OpenAI, Ollama, vLLM, llama.cpp), through
// the official openai-go SDK with its own retries turned off: the gateway
// retries.
package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"

	"github.com/moatproject/moat/internal/connectors"
)

// Defaults applied by New.
const (
	DefaultBaseURL    = "https://api.openai.com/v1"
	DefaultTimeout    = 60 * time.Second
	DefaultSchemaName = "answer"
)

// Config configures one connector.
type Config struct {
	// BaseURL of the API, DefaultBaseURL when empty; for Ollama, for
	// example, http://127.0.0.1:11434/v1.
	BaseURL string
	// APIKey is sent as a bearer token. It never appears in an error.
	APIKey       string
	Organization string
	// Timeout bounds a call: the whole of Chat, and for ChatStream the wait
	// for the first event and for each one after it. DefaultTimeout when zero.
	Timeout time.Duration
	// HTTPClient, when set, sends the requests (tests and the egress policy
	// pass one). Its own Timeout, if any, also applies.
	HTTPClient *http.Client
	// LegacyMaxTokens sends Request.MaxTokens as max_tokens rather than
	// max_completion_tokens, for servers that only know the older field.
	LegacyMaxTokens bool
	// AzureAPIVersion, when set, speaks Azure OpenAI: BaseURL is the
	// resource's endpoint (https://NAME.openai.azure.com), Request.Model is
	// the deployment name, and APIKey goes in the api-key header. Plain
	// http is allowed only to a loopback endpoint, for local tests.
	AzureAPIVersion string
}

// Connector calls one chat-completions endpoint.
type Connector struct {
	client    sdk.Client
	timeout   time.Duration
	legacyMax bool
}

var (
	_ connectors.Connector = (*Connector)(nil)
	_ connectors.Streamer  = (*Connector)(nil)
)

// New checks cfg and builds a connector. It reads no environment variable:
// everything comes from cfg.
func New(cfg Config) (*Connector, error) {
	base := cfg.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	if err := connectors.CheckBaseURL("openai", base); err != nil {
		return nil, err
	}
	timeout, err := connectors.ResolveTimeout("openai", cfg.Timeout, DefaultTimeout)
	if err != nil {
		return nil, err
	}
	hc := connectors.HTTPClientOr(cfg.HTTPClient)
	opts := []option.RequestOption{
		option.WithHTTPClient(hc),
		option.WithMaxRetries(0),
	}
	if cfg.AzureAPIVersion != "" {
		azureOpts, err := azureOptions(cfg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, azureOpts...)
	} else {
		opts = append(opts, option.WithBaseURL(strings.TrimSuffix(base, "/")+"/"))
		if cfg.APIKey != "" {
			opts = append(opts, option.WithAPIKey(cfg.APIKey))
		}
		if cfg.Organization != "" {
			opts = append(opts, option.WithOrganization(cfg.Organization))
		}
	}
	// A client holding these options alone, rather than sdk.NewClient, so
	// that no OPENAI_* environment variable changes what is sent.
	return &Connector{
		client:    sdk.Client{Options: opts},
		timeout:   timeout,
		legacyMax: cfg.LegacyMaxTokens,
	}, nil
}

// azureOptions are the SDK options of an Azure OpenAI endpoint.
func azureOptions(cfg Config) ([]option.RequestOption, error) {
	if cfg.BaseURL == "" {
		return nil, errors.New("openai: Azure OpenAI needs the resource's endpoint as the base URL")
	}
	if !connectors.PlainCode(cfg.AzureAPIVersion) {
		return nil, errors.New("openai: the Azure API version must be a plain version such as 2024-10-21")
	}
	if cfg.APIKey == "" {
		return nil, errors.New("openai: Azure OpenAI needs an API key")
	}
	if cfg.Organization != "" {
		return nil, errors.New("openai: Azure OpenAI has no organization; leave it empty")
	}
	endpoint := strings.TrimSuffix(cfg.BaseURL, "/") + "/"
	opts := []option.RequestOption{
		azure.WithEndpoint(endpoint, cfg.AzureAPIVersion),
		azure.WithAPIKey(cfg.APIKey),
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, errors.New("openai: the Azure endpoint does not parse")
	}
	if u.Scheme == "http" {
		// The SDK sends a key over plain http only when allowed, and then
		// only to loopback; anything else is refused here, not at each call.
		ip := net.ParseIP(u.Hostname())
		if u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, errors.New("openai: an Azure endpoint must be https (plain http only to a loopback address)")
		}
		opts = append(opts, azure.WithUnsafeAllowHTTP())
	}
	return opts, nil
}

// Kind is "openai".
func (c *Connector) Kind() string { return "openai" }

// Chat sends one chat completion. The SDK sends it (base URL, auth, Azure's
// deployment routing, error decoding) with a body encoded here and an answer
// decoded here: the SDK's reflective encoding of its params and decoding of
// its answer type cost about 50 µs a call, more than the rest of the gateway's
// request path together.
func (c *Connector) Chat(ctx context.Context, req connectors.Request) (connectors.Response, error) {
	body, err := c.body(req, false)
	if err != nil {
		return connectors.Response{}, err
	}
	callCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var res chatCompletion
	if err := c.client.Post(callCtx, chatPath, body, &res); err != nil {
		return connectors.Response{}, classify(ctx, callCtx, "chat", err)
	}
	if len(res.Choices) == 0 {
		return connectors.Response{}, malformed("chat", errors.New("answer has no choices"))
	}
	choice := res.Choices[0]
	out := connectors.Response{
		Content:      choice.Message.Content,
		Model:        res.Model,
		FinishReason: choice.FinishReason,
		Usage: connectors.Usage{
			PromptTokens:     res.Usage.PromptTokens,
			CompletionTokens: res.Usage.CompletionTokens,
		},
	}
	if out.Content == "" && choice.Message.Refusal != "" {
		out.FinishReason = "refusal"
	}
	if len(req.Labels) > 0 && req.Schema == nil {
		label, err := pickLabel(out.Content, req.Labels)
		if err != nil {
			return connectors.Response{}, malformed("chat", err)
		}
		out.Content = label
	}
	return out, nil
}

const chatPath = "chat/completions"

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

// chatCompletion is what Moat reads of an answer.
type chatCompletion struct {
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Content string `json:"content"`
			Refusal string `json:"refusal"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage wireUsage `json:"usage"`
}

type wireUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

// body encodes a request as the upstream's JSON.
func (c *Connector) body(req connectors.Request, stream bool) ([]byte, error) {
	if req.Model == "" {
		return nil, rejected(errors.New("request names no model"))
	}
	if len(req.Messages) == 0 {
		return nil, rejected(errors.New("request has no messages"))
	}
	if req.MaxTokens < 0 {
		return nil, rejected(errors.New("max tokens must not be negative"))
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
	schema := req.Schema
	if schema == nil && len(req.Labels) > 0 {
		schema = labelSchema(req.Labels)
	}
	if schema != nil {
		name := req.SchemaName
		if name == "" {
			name = DefaultSchemaName
		}
		w.ResponseFormat = &responseFormat{Type: "json_schema", JSONSchema: jsonSchema{Name: name, Strict: true, Schema: schema}}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Tokens such as <EMAIL_1> stay readable to the model.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(w); err != nil {
		return nil, rejected(errors.New("the request cannot be encoded as JSON"))
	}
	return buf.Bytes(), nil
}

// labelSchema asks for {"label": one of labels}.
func labelSchema(labels []string) map[string]any {
	enum := make([]any, len(labels))
	for i, l := range labels {
		enum[i] = l
	}
	return map[string]any{
		"type":                 "object",
		"properties":           map[string]any{"label": map[string]any{"type": "string", "enum": enum}},
		"required":             []any{"label"},
		"additionalProperties": false,
	}
}

// pickLabel reads the label out of an answer: {"label": "x"} as asked, or,
// from a server that ignored the response format, "x" or x alone.
func pickLabel(content string, labels []string) (string, error) {
	text := strings.TrimSpace(content)
	var obj struct {
		Label *string `json:"label"`
	}
	var s string
	switch {
	case json.Unmarshal([]byte(text), &obj) == nil && obj.Label != nil:
		text = *obj.Label
	case json.Unmarshal([]byte(text), &s) == nil:
		text = s
	}
	text = strings.TrimSpace(text)
	for _, l := range labels {
		if text == l {
			return l, nil
		}
	}
	for _, l := range labels {
		if strings.EqualFold(text, l) {
			return l, nil
		}
	}
	return "", errors.New("answer is not one of the labels")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

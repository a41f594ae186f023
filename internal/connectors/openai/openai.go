// Package openai is the connector for the OpenAI chat-completions API and
// for servers that speak it (Azure OpenAI, Ollama, vLLM, llama.cpp), through
// the official openai-go SDK with its own retries turned off: the gateway
// retries.
package openai

import (
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
	"github.com/openai/openai-go/v3/shared"

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
	chat      sdk.ChatCompletionService
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
	// The chat-completions service alone, rather than sdk.NewClient, so that
	// no OPENAI_* environment variable changes what is sent.
	return &Connector{
		chat:      sdk.NewChatCompletionService(opts...),
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

// Chat sends one chat completion.
func (c *Connector) Chat(ctx context.Context, req connectors.Request) (connectors.Response, error) {
	params, err := c.params(req)
	if err != nil {
		return connectors.Response{}, err
	}
	callCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	res, err := c.chat.New(callCtx, params)
	if err != nil {
		return connectors.Response{}, classify(ctx, callCtx, "chat", err)
	}
	if res == nil || len(res.Choices) == 0 {
		return connectors.Response{}, malformed("chat", errors.New("answer has no choices"))
	}
	choice := res.Choices[0]
	out := connectors.Response{
		Content:      choice.Message.Content,
		Model:        res.Model,
		FinishReason: choice.FinishReason,
		Usage: connectors.Usage{
			PromptTokens:     int(res.Usage.PromptTokens),
			CompletionTokens: int(res.Usage.CompletionTokens),
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

// params turns a request into the SDK's parameters.
func (c *Connector) params(req connectors.Request) (sdk.ChatCompletionNewParams, error) {
	var p sdk.ChatCompletionNewParams
	if req.Model == "" {
		return p, rejected(errors.New("request names no model"))
	}
	if len(req.Messages) == 0 {
		return p, rejected(errors.New("request has no messages"))
	}
	p.Model = shared.ChatModel(req.Model)
	messages := connectors.FewShotMessages(req)
	p.Messages = make([]sdk.ChatCompletionMessageParamUnion, 0, len(messages))
	for i, m := range messages {
		switch m.Role {
		case connectors.System:
			p.Messages = append(p.Messages, sdk.SystemMessage(m.Content))
		case connectors.User:
			p.Messages = append(p.Messages, sdk.UserMessage(m.Content))
		case connectors.Assistant:
			p.Messages = append(p.Messages, sdk.AssistantMessage(m.Content))
		default:
			return p, rejected(fmt.Errorf("message %d has unknown role %q", i, truncate(string(m.Role), 32)))
		}
	}
	if req.Temperature != nil {
		p.Temperature = sdk.Float(*req.Temperature)
	}
	if req.MaxTokens < 0 {
		return p, rejected(errors.New("max tokens must not be negative"))
	}
	if req.MaxTokens > 0 {
		if c.legacyMax {
			p.MaxTokens = sdk.Int(int64(req.MaxTokens))
		} else {
			p.MaxCompletionTokens = sdk.Int(int64(req.MaxTokens))
		}
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
		p.ResponseFormat = sdk.ChatCompletionNewParamsResponseFormatUnion{
			OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
				JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{
					Name:   name,
					Strict: sdk.Bool(true),
					Schema: schema,
				},
			},
		}
	}
	return p, nil
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

// Package anthropic is the connector for Anthropic's messages API, through
// the official anthropic-sdk-go with its own retries turned off: the gateway
// retries.
package anthropic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	sdk "github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"

	"github.com/moatproject/moat/internal/connectors"
)

// Defaults applied by New and per request.
const (
	DefaultBaseURL   = "https://api.anthropic.com"
	DefaultTimeout   = 60 * time.Second
	DefaultMaxTokens = 1024
)

// Config configures one connector.
type Config struct {
	// BaseURL of the API, DefaultBaseURL when empty.
	BaseURL string
	// APIKey is sent in the x-api-key header. It never appears in an error.
	APIKey string
	// Timeout bounds a call: the whole of Chat, and for ChatStream the wait
	// for the first event and for each one after it. DefaultTimeout when zero.
	Timeout time.Duration
	// HTTPClient, when set, sends the requests (tests and the egress policy
	// pass one).
	HTTPClient *http.Client
}

// Connector calls the messages API.
type Connector struct {
	messages sdk.MessageService
	timeout  time.Duration
}

var (
	_ connectors.Connector = (*Connector)(nil)
	_ connectors.Streamer  = (*Connector)(nil)
)

// New checks cfg and builds a connector. It reads no environment variable
// or configuration file: everything comes from cfg.
func New(cfg Config) (*Connector, error) {
	base := cfg.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	if err := connectors.CheckBaseURL("anthropic", base); err != nil {
		return nil, err
	}
	timeout, err := connectors.ResolveTimeout("anthropic", cfg.Timeout, DefaultTimeout)
	if err != nil {
		return nil, err
	}
	hc := connectors.HTTPClientOr(cfg.HTTPClient)
	opts := []option.RequestOption{
		option.WithoutEnvironmentDefaults(),
		option.WithBaseURL(strings.TrimSuffix(base, "/") + "/"),
		option.WithHTTPClient(hc),
		option.WithMaxRetries(0),
		option.WithMiddleware(dropTelemetry),
	}
	if cfg.APIKey != "" {
		opts = append(opts, option.WithAPIKey(cfg.APIKey))
	}
	client := sdk.NewClient(opts...)
	return &Connector{messages: client.Messages, timeout: timeout}, nil
}

// dropTelemetry keeps the SDK's telemetry headers from the upstream
// (connectors.DropSDKTelemetry).
func dropTelemetry(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
	connectors.DropSDKTelemetry(req.Header)
	return next(req)
}

// Kind is "anthropic".
func (c *Connector) Kind() string { return "anthropic" }

// Chat sends one message request.
func (c *Connector) Chat(ctx context.Context, req connectors.Request) (connectors.Response, error) {
	params, err := buildParams(req)
	if err != nil {
		return connectors.Response{}, err
	}
	callCtx, cancel := connectors.WithTimeout(ctx, c.timeout)
	defer cancel()
	msg, err := c.messages.New(callCtx, params)
	if err != nil {
		return connectors.Response{}, classify(ctx, callCtx, "chat", err)
	}
	if msg == nil || !msg.JSON.Content.Valid() && !msg.JSON.StopReason.Valid() {
		return connectors.Response{}, malformed("chat", errors.New("answer has no content"))
	}
	var text strings.Builder
	for _, b := range msg.Content {
		if b.Type == "text" {
			text.WriteString(b.Text)
		}
	}
	out := connectors.Response{
		Content:      text.String(),
		Model:        msg.Model,
		FinishReason: string(msg.StopReason),
		Usage: connectors.Usage{
			PromptTokens:     int(msg.Usage.InputTokens),
			CompletionTokens: int(msg.Usage.OutputTokens),
		},
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

// buildParams turns a request into the SDK's parameters: system messages go
// to the system parameter, a schema or labels become an instruction there.
func buildParams(req connectors.Request) (sdk.MessageNewParams, error) {
	var p sdk.MessageNewParams
	if req.Model == "" {
		return p, rejected(errors.New("request names no model"))
	}
	if req.MaxTokens < 0 {
		return p, rejected(errors.New("max tokens must not be negative"))
	}
	p.Model = req.Model
	p.MaxTokens = DefaultMaxTokens
	if req.MaxTokens > 0 {
		p.MaxTokens = int64(req.MaxTokens)
	}
	if req.Temperature != nil {
		p.Temperature = sdk.Float(*req.Temperature)
	}
	for i, m := range connectors.FewShotMessages(req) {
		switch m.Role {
		case connectors.System:
			p.System = append(p.System, sdk.TextBlockParam{Text: m.Content})
		case connectors.User:
			p.Messages = append(p.Messages, sdk.NewUserMessage(sdk.NewTextBlock(m.Content)))
		case connectors.Assistant:
			p.Messages = append(p.Messages, sdk.NewAssistantMessage(sdk.NewTextBlock(m.Content)))
		default:
			return p, rejected(fmt.Errorf("message %d has unknown role %q", i, truncate(string(m.Role), 32)))
		}
	}
	if len(p.Messages) == 0 {
		return p, rejected(errors.New("request has no user or assistant message"))
	}
	switch {
	case req.Schema != nil:
		schema, err := json.Marshal(req.Schema)
		if err != nil {
			return p, rejected(errors.New("schema cannot be encoded as JSON"))
		}
		p.System = append(p.System, sdk.TextBlockParam{Text: "Answer with one JSON value that matches this JSON Schema, and nothing else: no prose, no code fences.\n" + string(schema)})
	case len(req.Labels) > 0:
		quoted, _ := json.Marshal(req.Labels)
		p.System = append(p.System, sdk.TextBlockParam{Text: "Answer with exactly one of these labels and nothing else: " + string(quoted) + "."})
	}
	return p, nil
}

// pickLabel reads the label out of an answer: the label alone, quoted, or
// as {"label": "x"}; case-insensitively when no label matches exactly.
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
	text = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(text), "."))
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

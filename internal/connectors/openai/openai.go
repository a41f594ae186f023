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
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"

	"github.com/moatproject/moat/internal/connectors"
	"github.com/moatproject/moat/internal/jsontext"
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
		option.WithMiddleware(prepareAttempt),
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

// prepareAttempt readies each attempt's request for the transport. It drops
// the SDK's telemetry headers (connectors.DropSDKTelemetry), and hands the
// transport the request's body as the in-memory reader it is: the SDK wraps
// each attempt's body in a closer of its own, which net/http cannot tell
// from a stream, so it would write the headers and the body in two writes
// and the upstream would wake twice for one request (on the loopback of
// the benchmark's machine, about 20 µs more a call).
func prepareAttempt(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
	connectors.DropSDKTelemetry(req.Header)
	if req.GetBody != nil && req.Body != nil && req.Body != http.NoBody {
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		req.Body = body
	}
	return next(req)
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
	callCtx, cancel := connectors.WithTimeout(ctx, c.timeout)
	defer cancel()
	var raw *http.Response
	if err := c.client.Post(callCtx, chatPath, body, &raw); err != nil {
		return connectors.Response{}, classify(ctx, callCtx, "chat", err)
	}
	res, err := readAnswer(raw)
	if err != nil {
		if callCtx.Err() != nil || connectors.IsTransportError(err) {
			// Cut off while the answer came: as the SDK's own read was.
			return connectors.Response{}, classify(ctx, callCtx, "chat", err)
		}
		return connectors.Response{}, malformed("chat", err)
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

// chatCompletion is what Moat reads of an answer.
type chatCompletion struct {
	Model   string    `json:"model"`
	Choices []choice  `json:"choices"`
	Usage   wireUsage `json:"usage"`
}

type choice struct {
	Message struct {
		Content string `json:"content"`
		Refusal string `json:"refusal"`
	} `json:"message"`
	FinishReason string `json:"finish_reason"`
}

type wireUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

// errNotJSON rejects a request holding what JSON cannot carry.
var errNotJSON = errors.New("the request cannot be encoded as JSON")

// checkRequest refuses a request no upstream could take.
func checkRequest(req connectors.Request) error {
	switch {
	case req.Model == "":
		return rejected(errors.New("request names no model"))
	case len(req.Messages) == 0:
		return rejected(errors.New("request has no messages"))
	case req.MaxTokens < 0:
		return rejected(errors.New("max tokens must not be negative"))
	}
	return nil
}

// responseSchema is the schema the answer must follow, and its name: the
// request's, or one allowing only its labels; nil for free text.
func responseSchema(req connectors.Request) (string, map[string]any) {
	schema := req.Schema
	if schema == nil && len(req.Labels) > 0 {
		schema = labelSchema(req.Labels)
	}
	if schema == nil {
		return "", nil
	}
	name := req.SchemaName
	if name == "" {
		name = DefaultSchemaName
	}
	return name, schema
}

// body encodes a request as the upstream's JSON, byte for byte as
// json.Encoder without HTML escaping encodes a chatRequest (tokens such as
// <EMAIL_1> stay readable to the model), but written directly: the
// reflective encoder took 4-5 µs for a 2 KB prompt (TestBodyMatchesEncoder).
func (c *Connector) body(req connectors.Request, stream bool) ([]byte, error) {
	if err := checkRequest(req); err != nil {
		return nil, err
	}
	messages := connectors.FewShotMessages(req)
	size := 256
	for _, m := range messages {
		size += len(m.Content) + 32
	}
	b := make([]byte, 0, size)
	b = append(b, `{"model":`...)
	b = jsontext.AppendString(b, req.Model, false)
	b = append(b, `,"messages":[`...)
	for i, m := range messages {
		switch m.Role {
		case connectors.System, connectors.User, connectors.Assistant:
		default:
			return nil, rejected(fmt.Errorf("message %d has unknown role %q", i, truncate(string(m.Role), 32)))
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"role":`...)
		b = jsontext.AppendString(b, string(m.Role), false)
		b = append(b, `,"content":`...)
		b = jsontext.AppendString(b, m.Content, false)
		b = append(b, '}')
	}
	b = append(b, ']')
	if t := req.Temperature; t != nil {
		if math.IsNaN(*t) || math.IsInf(*t, 0) {
			return nil, rejected(errNotJSON)
		}
		b = append(b, `,"temperature":`...)
		b = appendFloat(b, *t)
	}
	if req.MaxTokens != 0 {
		if c.legacyMax {
			b = append(b, `,"max_tokens":`...)
		} else {
			b = append(b, `,"max_completion_tokens":`...)
		}
		b = strconv.AppendInt(b, int64(req.MaxTokens), 10)
	}
	if name, schema := responseSchema(req); schema != nil {
		b = append(b, `,"response_format":{"type":"json_schema","json_schema":{"name":`...)
		b = jsontext.AppendString(b, name, false)
		b = append(b, `,"strict":true,"schema":`...)
		// A schema is any JSON: encoding/json writes it, as it did the
		// whole body.
		buf := bytes.NewBuffer(b)
		enc := json.NewEncoder(buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(schema); err != nil {
			return nil, rejected(errNotJSON)
		}
		b = buf.Bytes()
		b = append(b[:len(b)-1], "}}"...) // Encode ends with a newline
	}
	if stream {
		b = append(b, `,"stream":true,"stream_options":{"include_usage":true}`...)
	}
	return append(b, "}\n"...), nil
}

// appendFloat writes f as encoding/json writes a float64.
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// 1e-07 is written 1e-7.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
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

// Package connectors holds the clients of AI and ML services: openai,
// anthropic, http, local and replay, behind one interface. Only the gateway
// may use them (an architecture test checks it): every call must pass its
// pipeline.
package connectors

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Role of a message.
type Role string

const (
	System    Role = "system"
	User      Role = "user"
	Assistant Role = "assistant"
)

// Message is one turn of a conversation.
type Message struct {
	Role    Role   `json:"role"`
	Content string `json:"content"`
}

// Request is one call. The gateway has already minimised, classified and
// transformed it; a connector sends it as it is.
type Request struct {
	// Model is the upstream's model name (an alias resolved by the gateway).
	Model    string    `json:"model"`
	Messages []Message `json:"messages"`
	// Schema, when set, asks for a JSON answer matching this JSON Schema
	// (structured output where the upstream supports it, otherwise an
	// instruction); the gateway validates the answer either way.
	Schema     map[string]any `json:"schema,omitempty"`
	SchemaName string         `json:"schemaName,omitempty"`
	// Labels, when set, is a classification: the answer must be one of them.
	Labels []string `json:"labels,omitempty"`
	// Examples are labelled texts given with a classification: the local
	// connector trains on them, the others show them as few-shot examples.
	Examples    []Example `json:"examples,omitempty"`
	MaxTokens   int       `json:"maxTokens,omitempty"`
	Temperature *float64  `json:"temperature,omitempty"`
}

// Example is one labelled text.
type Example struct {
	Text  string `json:"text"`
	Label string `json:"label"`
}

// Usage counts tokens as the upstream reports them.
type Usage struct {
	PromptTokens     int `json:"promptTokens"`
	CompletionTokens int `json:"completionTokens"`
}

// Response is the upstream's answer.
type Response struct {
	Content      string `json:"content"`
	Model        string `json:"model"`
	FinishReason string `json:"finishReason,omitempty"`
	Usage        Usage  `json:"usage"`
}

// Chunk is one piece of a streamed answer; the last has Done set and,
// when the upstream reports it, the usage.
type Chunk struct {
	Content      string
	Done         bool
	FinishReason string
	Usage        Usage
}

// Connector calls one configured service.
type Connector interface {
	// Kind is the connector type: openai, anthropic, http, local, replay.
	Kind() string
	Chat(ctx context.Context, req Request) (Response, error)
}

// Streamer is a connector that can stream. The callback is called in order;
// an error from it stops the stream and is returned.
type Streamer interface {
	ChatStream(ctx context.Context, req Request, each func(Chunk) error) error
}

// Sentinel errors, so the gateway can decide to retry, fall back or fail.
var (
	// ErrUnavailable: the upstream failed in a way a retry may fix (5xx,
	// connection refused, timeout).
	ErrUnavailable = errors.New("connectors: upstream unavailable")
	// ErrRateLimited: 429 from the upstream; see UpstreamError.RetryAfter.
	ErrRateLimited = errors.New("connectors: upstream rate limit")
	// ErrRejected: the upstream refused the request (4xx other than 429);
	// retrying the same request will not help.
	ErrRejected = errors.New("connectors: upstream rejected the request")
	// ErrMalformed: the upstream answered with something we cannot read.
	ErrMalformed = errors.New("connectors: malformed answer")
	// ErrNoRecording: a replay connector has no recorded answer for this request.
	ErrNoRecording = errors.New("connectors: no recorded answer")
)

// UpstreamError is a failed call, classified by one of the sentinels.
type UpstreamError struct {
	Kind       error // one of the sentinels above
	Status     int   // HTTP status, when there was one
	RetryAfter time.Duration
	Err        error
}

func (e *UpstreamError) Error() string {
	msg := e.Kind.Error()
	if e.Status != 0 {
		msg += fmt.Sprintf(" (status %d)", e.Status)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *UpstreamError) Unwrap() []error { return []error{e.Kind, e.Err} }

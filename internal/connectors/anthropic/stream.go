package anthropic

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/moatproject/moat/internal/connectors"
)

// maxLabelAnswer bounds what is gathered when streaming a classification.
const maxLabelAnswer = 64 << 10

// ChatStream streams one message. Each text delta is one Chunk; the last
// has Done set, the stop reason and the usage (input tokens from
// message_start, output tokens from message_delta). A stream that ends
// without message_stop is an error, never a silent short answer. With
// Labels the answer is gathered and sent as one chunk holding the label.
func (c *Connector) ChatStream(ctx context.Context, req connectors.Request, each func(connectors.Chunk) error) error {
	params, err := buildParams(req)
	if err != nil {
		return err
	}
	callCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The timeout bounds the wait for each event, not the whole answer.
	idle := time.AfterFunc(c.timeout, func() { cancel(errTimeout) })
	defer idle.Stop()

	stream := c.messages.NewStreaming(callCtx, params)
	defer stream.Close()

	labels := len(req.Labels) > 0 && req.Schema == nil
	var (
		gathered strings.Builder
		finish   string
		usage    connectors.Usage
		stopped  bool
	)
	for stream.Next() {
		idle.Reset(c.timeout)
		ev := stream.Current()
		switch ev.Type {
		case "message_start":
			usage.PromptTokens = int(ev.Message.Usage.InputTokens)
			usage.CompletionTokens = int(ev.Message.Usage.OutputTokens)
		case "message_delta":
			if ev.Delta.StopReason != "" {
				finish = string(ev.Delta.StopReason)
			}
			if ev.Usage.OutputTokens > 0 {
				usage.CompletionTokens = int(ev.Usage.OutputTokens)
			}
			if ev.Usage.InputTokens > 0 {
				usage.PromptTokens = int(ev.Usage.InputTokens)
			}
		case "message_stop":
			stopped = true
		case "content_block_delta":
			if ev.Delta.Type != "text_delta" || ev.Delta.Text == "" {
				continue
			}
			if labels {
				if gathered.Len()+len(ev.Delta.Text) > maxLabelAnswer {
					return malformed("stream", errors.New("label answer too long"))
				}
				gathered.WriteString(ev.Delta.Text)
				continue
			}
			if err := each(connectors.Chunk{Content: ev.Delta.Text}); err != nil {
				return err
			}
		}
		if stopped {
			break
		}
	}
	if err := stream.Err(); err != nil {
		if context.Cause(callCtx) == errTimeout && ctx.Err() == nil {
			err = errTimeout
		}
		return classify(ctx, ctx, "stream", err)
	}
	if ctx.Err() != nil {
		return classify(ctx, ctx, "stream", ctx.Err())
	}
	if !stopped {
		return &connectors.UpstreamError{Kind: connectors.ErrUnavailable,
			Err: errors.New("anthropic: stream: the stream ended before the answer was complete")}
	}
	if labels {
		label, err := pickLabel(gathered.String(), req.Labels)
		if err != nil {
			return malformed("stream", err)
		}
		if err := each(connectors.Chunk{Content: label}); err != nil {
			return err
		}
	}
	return each(connectors.Chunk{Done: true, FinishReason: finish, Usage: usage})
}

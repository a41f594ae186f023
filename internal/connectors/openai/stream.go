package openai

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/openai/openai-go/v3/packages/ssestream"

	"github.com/moatproject/moat/internal/connectors"
)

// ChatStream streams one chat completion. Each content delta is one Chunk;
// the last Chunk has Done set and the usage (asked for with
// stream_options.include_usage). A stream that ends before the upstream said
// why it finished is an error, never a silent short answer. With Labels the
// answer is gathered and sent as one chunk holding the label.
func (c *Connector) ChatStream(ctx context.Context, req connectors.Request, each func(connectors.Chunk) error) error {
	body, err := c.body(req, true)
	if err != nil {
		return err
	}

	callCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The timeout bounds the wait for each event, not the whole answer.
	idle := time.AfterFunc(c.timeout, func() { cancel(errTimeout) })
	defer idle.Stop()

	var raw *http.Response
	err = c.client.Post(callCtx, chatPath, body, &raw)
	stream := ssestream.NewStream[chatChunk](ssestream.NewDecoder(raw), err)
	defer stream.Close()

	labels := len(req.Labels) > 0 && req.Schema == nil
	var (
		gathered strings.Builder
		finish   string
		usage    connectors.Usage
	)
	for stream.Next() {
		idle.Reset(c.timeout)
		ev := stream.Current()
		if ev.Usage != nil {
			usage = connectors.Usage{PromptTokens: ev.Usage.PromptTokens, CompletionTokens: ev.Usage.CompletionTokens}
		}
		if len(ev.Choices) == 0 {
			continue
		}
		ch := ev.Choices[0]
		if ch.FinishReason != "" {
			finish = ch.FinishReason
		}
		if ch.Delta.Content == "" {
			continue
		}
		if labels {
			if gathered.Len()+len(ch.Delta.Content) > maxLabelAnswer {
				return malformed("stream", errors.New("label answer too long"))
			}
			gathered.WriteString(ch.Delta.Content)
			continue
		}
		if err := each(connectors.Chunk{Content: ch.Delta.Content}); err != nil {
			return err
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
	if finish == "" {
		return &connectors.UpstreamError{Kind: connectors.ErrUnavailable,
			Err: errors.New("openai: stream: the stream ended before the answer was complete")}
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

// chatChunk is what Moat reads of a streamed event.
type chatChunk struct {
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *wireUsage `json:"usage"`
}

// maxLabelAnswer bounds what is gathered when streaming a classification.
const maxLabelAnswer = 64 << 10

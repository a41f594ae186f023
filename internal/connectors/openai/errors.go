package openai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/packages/ssestream"

	"github.com/moatproject/moat/internal/connectors"
)

// Errors name the status, the upstream's error code when it is a plain
// identifier, and what failed; never the key, the upstream's message (which
// may quote the key or the prompt) or any message content.

// errTimeout is the cause of a call cancelled by the connector's timeout.
var errTimeout = errors.New("timed out")

func rejected(err error) error {
	return &connectors.UpstreamError{Kind: connectors.ErrRejected, Err: fmt.Errorf("openai: %w", err)}
}

func malformed(op string, err error) error {
	return &connectors.UpstreamError{Kind: connectors.ErrMalformed, Err: fmt.Errorf("openai: %s: %w", op, err)}
}

// classify turns an error of the SDK or of the transport into an
// UpstreamError. parent is the caller's context, call the one bounded by the
// connector's timeout.
func classify(parent, call context.Context, op string, err error) error {
	if perr := parent.Err(); perr != nil {
		// The caller gave up: not the upstream's fault, nothing to retry.
		return fmt.Errorf("openai: %s: %w", op, perr)
	}
	var apiErr *sdk.Error
	if errors.As(err, &apiErr) {
		return statusError(op, apiErr.StatusCode, apiErr.Code, apiErr.Type, responseHeader(apiErr.Response))
	}
	if call.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errTimeout) {
		return &connectors.UpstreamError{Kind: connectors.ErrUnavailable, Err: fmt.Errorf("openai: %s: %w", op, errTimeout)}
	}
	var streamErr *ssestream.StreamError
	if errors.As(err, &streamErr) {
		return streamEventError(op, streamErr.Event.Data)
	}
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &syntaxErr) || errors.As(err, &typeErr) {
		return malformed(op, errors.New("answer is not valid JSON"))
	}
	if connectors.IsTransportError(err) {
		return &connectors.UpstreamError{Kind: connectors.ErrUnavailable, Err: fmt.Errorf("openai: %s: %s", op, connectors.TransportReason(err))}
	}
	// Anything else the SDK reports comes from reading the answer.
	return malformed(op, errors.New("cannot read the answer"))
}

// statusError classifies an HTTP error status.
func statusError(op string, status int, code, typ string, h http.Header) error {
	detail := ""
	for _, c := range []string{code, typ} {
		if connectors.PlainCode(c) {
			detail = " " + c
			break
		}
	}
	e := &connectors.UpstreamError{Status: status, Err: fmt.Errorf("openai: %s: HTTP %d%s", op, status, detail)}
	switch {
	case status == http.StatusTooManyRequests:
		e.Kind = connectors.ErrRateLimited
		e.RetryAfter = retryAfter(h, time.Now())
	case status >= 500, status == http.StatusRequestTimeout:
		e.Kind = connectors.ErrUnavailable
	case status >= 400:
		e.Kind = connectors.ErrRejected
	default:
		e.Kind = connectors.ErrMalformed
	}
	return e
}

// streamEventError classifies an {"error": …} event inside a stream.
func streamEventError(op string, data []byte) error {
	var ev struct {
		Error struct {
			Code any    `json:"code"`
			Type string `json:"type"`
		} `json:"error"`
	}
	_ = json.Unmarshal(data, &ev)
	code := ""
	switch c := ev.Error.Code.(type) {
	case string:
		code = c
	case float64:
		code = strconv.Itoa(int(c))
	}
	if n, err := strconv.Atoi(code); err == nil && n >= 400 && n < 600 {
		return statusError(op+" stream", n, "", ev.Error.Type, nil)
	}
	detail := ""
	for _, c := range []string{code, ev.Error.Type} {
		if connectors.PlainCode(c) {
			detail = " " + c
			break
		}
	}
	kind := connectors.ErrUnavailable
	if strings.Contains(code+ev.Error.Type, "rate_limit") {
		kind = connectors.ErrRateLimited
	}
	return &connectors.UpstreamError{Kind: kind, Err: fmt.Errorf("openai: %s: error event in the stream%s", op, detail)}
}

func responseHeader(r *http.Response) http.Header {
	if r == nil {
		return nil
	}
	return r.Header
}

// retryAfter reads Retry-After (delay in seconds or an HTTP date) and
// OpenAI's retry-after-ms; zero when absent or unreadable.
func retryAfter(h http.Header, now time.Time) time.Duration {
	if h == nil {
		return 0
	}
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 && ms < 1e9 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	return connectors.ParseRetryAfter(h.Get("Retry-After"), now)
}

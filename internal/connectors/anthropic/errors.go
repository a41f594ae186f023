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

	"github.com/moatproject/moat/internal/connectors"
)

// Errors name the status, the upstream's error type when it is a plain
// identifier, and what failed; never the key, the upstream's message (the
// SDK's own error string carries the whole response body) or any message
// content.

// errTimeout is the cause of a call cancelled by the connector's timeout.
var errTimeout = errors.New("timed out")

func rejected(err error) error {
	return &connectors.UpstreamError{Kind: connectors.ErrRejected, Err: fmt.Errorf("anthropic: %w", err)}
}

func malformed(op string, err error) error {
	return &connectors.UpstreamError{Kind: connectors.ErrMalformed, Err: fmt.Errorf("anthropic: %s: %w", op, err)}
}

// classify turns an error of the SDK or of the transport into an
// UpstreamError. parent is the caller's context, call the one bounded by the
// connector's timeout.
func classify(parent, call context.Context, op string, err error) error {
	if perr := parent.Err(); perr != nil {
		return fmt.Errorf("anthropic: %s: %w", op, perr)
	}
	var apiErr *sdk.Error
	if errors.As(err, &apiErr) {
		var h http.Header
		if apiErr.Response != nil {
			h = apiErr.Response.Header
		}
		status := apiErr.StatusCode
		if status < 400 {
			// An error event inside a stream that began with 200.
			return typeError(op, string(apiErr.Type()))
		}
		return statusError(op, status, string(apiErr.Type()), h)
	}
	if call.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errTimeout) {
		return &connectors.UpstreamError{Kind: connectors.ErrUnavailable, Err: fmt.Errorf("anthropic: %s: %w", op, errTimeout)}
	}
	if msg, ok := strings.CutPrefix(err.Error(), "received error while streaming: "); ok {
		var ev struct {
			Error struct {
				Type string `json:"type"`
			} `json:"error"`
		}
		_ = json.Unmarshal([]byte(msg), &ev)
		return typeError(op, ev.Error.Type)
	}
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &syntaxErr) || errors.As(err, &typeErr) {
		return malformed(op, errors.New("answer is not valid JSON"))
	}
	if connectors.IsTransportError(err) {
		return &connectors.UpstreamError{Kind: connectors.ErrUnavailable, Err: fmt.Errorf("anthropic: %s: %s", op, connectors.TransportReason(err))}
	}
	return malformed(op, errors.New("cannot read the answer"))
}

// statusError classifies an HTTP error status; 529 (overloaded) is one of
// the 5xx and so ErrUnavailable.
func statusError(op string, status int, typ string, h http.Header) error {
	detail := ""
	if connectors.PlainCode(typ) {
		detail = " " + typ
	}
	e := &connectors.UpstreamError{Status: status, Err: fmt.Errorf("anthropic: %s: HTTP %d%s", op, status, detail)}
	switch {
	case status == http.StatusTooManyRequests:
		e.Kind = connectors.ErrRateLimited
		e.RetryAfter = connectors.ParseRetryAfter(h.Get("Retry-After"), time.Now())
	case status >= 500, status == http.StatusRequestTimeout:
		e.Kind = connectors.ErrUnavailable
	default:
		e.Kind = connectors.ErrRejected
	}
	return e
}

// typeError classifies an error event in a stream by its type.
func typeError(op, typ string) error {
	kind := connectors.ErrUnavailable
	switch typ {
	case "rate_limit_error":
		kind = connectors.ErrRateLimited
	case "invalid_request_error", "authentication_error", "permission_error", "not_found_error",
		"billing_error", "request_too_large":
		kind = connectors.ErrRejected
	}
	detail := ""
	if connectors.PlainCode(typ) {
		detail = " " + typ
	}
	return &connectors.UpstreamError{Kind: kind, Err: fmt.Errorf("anthropic: %s: error event in the stream%s", op, detail)}
}

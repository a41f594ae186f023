package nodes

import (
	"context"
	"fmt"
	"net/http"
	"strings"
)

// Respond sets the HTTP answer of the webhook that started the run.
type Respond struct{}

func (Respond) Name() string             { return "respond" }
func (Respond) Kind(map[string]any) Kind { return Inline }
func (Respond) Description() string {
	return "Answer the webhook that started the run with a status, headers and a JSON body."
}
func (Respond) Schema() map[string]any {
	return object(nil, map[string]any{
		"status":  orTemplate(map[string]any{"type": "integer", "minimum": 200, "maximum": 599, "default": 200}),
		"headers": map[string]any{"type": "object", "maxProperties": 32, "additionalProperties": map[string]any{"type": "string"}},
		"body":    map[string]any{"description": "JSON body (templates allowed)"},
	})
}

// Execute validates and passes the answer on; the webhook handler sends it.
func (Respond) Execute(_ context.Context, c *Call) (Result, error) {
	status := intSetting(c.With, "status", http.StatusOK)
	if status < 200 || status > 599 {
		return Result{}, fmt.Errorf("status: %d is not a final HTTP status (200–599)", status)
	}
	headers := map[string]any{}
	if h, ok := c.With["headers"].(map[string]any); ok {
		for k, v := range h {
			s, ok := v.(string)
			if !ok {
				return Result{}, fmt.Errorf("headers.%s: want a string, got %T", k, v)
			}
			if strings.ContainsAny(k+s, "\r\n") {
				return Result{}, fmt.Errorf("headers.%s: line breaks are not allowed", k)
			}
			headers[http.CanonicalHeaderKey(k)] = s
		}
	}
	return Result{Output: map[string]any{"status": int64(status), "headers": headers, "body": c.With["body"]}}, nil
}

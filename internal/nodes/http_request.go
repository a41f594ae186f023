package nodes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/moatproject/moat/internal/workflow"
)

const (
	defaultHTTPTimeout      = 30 * time.Second
	maxHTTPTimeout          = 5 * time.Minute
	defaultHTTPResponseSize = 1 << 20
	maxHTTPResponseSize     = 10 << 20
)

// HTTPRequest calls an HTTP endpoint. Definitions never hold credentials:
// a step authenticates with a vault secret it names (`credential`), which
// goes only to the hosts the secret is bound to.
type HTTPRequest struct{}

func (HTTPRequest) Name() string             { return "http.request" }
func (HTTPRequest) Kind(map[string]any) Kind { return Effect }
func (HTTPRequest) Description() string {
	return "Send an HTTP request with a JSON body; the attempt's Idempotency-Key header lets the receiver drop repeats."
}
func (HTTPRequest) Schema() map[string]any {
	return object([]string{"url"}, map[string]any{
		"method":           map[string]any{"type": "string", "enum": []any{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}, "default": "GET"},
		"url":              map[string]any{"type": "string", "minLength": 1, "maxLength": 8192, "description": "absolute http(s) URL; templates allowed"},
		"headers":          map[string]any{"type": "object", "maxProperties": 64, "additionalProperties": map[string]any{"type": "string", "maxLength": 8192}},
		"query":            map[string]any{"type": "object", "maxProperties": 64, "additionalProperties": map[string]any{"type": "string", "maxLength": 8192}},
		"body":             map[string]any{"description": "JSON body; templates allowed"},
		"timeout":          durationSchema("per-attempt timeout; default 30s, at most 5m"),
		"maxResponseBytes": map[string]any{"type": "integer", "minimum": 1, "maximum": maxHTTPResponseSize, "default": defaultHTTPResponseSize},
		"credential":       httpCredentialSchema(),
	})
}

const credentialAdvice = "a literal credential does not belong in a definition; store it with `moat secret set NAME --connector http.request --host HOST` and send it with `credential: {secret: NAME}`"

// Check refuses literal credentials and checks the vault credential's
// settings.
func (HTTPRequest) Check(with map[string]any) []workflow.FieldProblem {
	problems := checkHTTPCredential(with)
	if h, ok := with["headers"].(map[string]any); ok {
		for _, k := range slices.Sorted(maps.Keys(h)) {
			if s, _ := h[k].(string); workflow.IsCredentialHeader(k) && s != "" && !strings.Contains(s, "{{") {
				problems = append(problems, workflow.FieldProblem{Pointer: "/headers/" + escapePointer(k), Message: credentialAdvice})
			}
		}
	}
	if q, ok := with["query"].(map[string]any); ok {
		for _, k := range slices.Sorted(maps.Keys(q)) {
			if s, _ := q[k].(string); workflow.IsCredentialParam(k) && s != "" && !strings.Contains(s, "{{") {
				problems = append(problems, workflow.FieldProblem{Pointer: "/query/" + escapePointer(k), Message: credentialAdvice})
			}
		}
	}
	if raw, ok := with["url"].(string); ok {
		if u, err := url.Parse(raw); err == nil {
			if u.User != nil {
				problems = append(problems, workflow.FieldProblem{Pointer: "/url", Message: "user information in the URL: " + credentialAdvice})
			}
			for k, vs := range u.Query() {
				if workflow.IsCredentialParam(k) && len(vs) > 0 && vs[0] != "" && !strings.Contains(vs[0], "{{") {
					problems = append(problems, workflow.FieldProblem{Pointer: "/url", Message: "query parameter " + k + " in the URL: " + credentialAdvice})
				}
			}
		}
	}
	return problems
}

// PermanentError marks a failure that retrying cannot fix.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so the engine does not retry it.
func Permanent(err error) error { return &PermanentError{Err: err} }

// IsPermanent reports whether err should not be retried.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// Execute sends the request.
func (HTTPRequest) Execute(ctx context.Context, c *Call) (Result, error) {
	method, _ := c.With["method"].(string)
	if method == "" {
		method = http.MethodGet
	}
	raw, _ := c.With["url"].(string)
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Result{}, Permanent(fmt.Errorf("url: %q is not an absolute http(s) URL", raw))
	}
	if u.User != nil {
		return Result{}, Permanent(errors.New("url: " + credentialAdvice))
	}
	if q, ok := c.With["query"].(map[string]any); ok {
		values := u.Query()
		for k, v := range q {
			values.Set(k, fmt.Sprint(v))
		}
		u.RawQuery = values.Encode()
	}
	timeout := defaultHTTPTimeout
	if s, ok := c.With["timeout"].(string); ok {
		if timeout, err = workflow.ParseDuration(s); err != nil || timeout <= 0 || timeout > maxHTTPTimeout {
			return Result{}, Permanent(fmt.Errorf("timeout: %q must be a duration in (0, %s]", s, maxHTTPTimeout))
		}
	}
	limit := intSetting(c.With, "maxResponseBytes", defaultHTTPResponseSize)

	var body io.Reader
	if b, ok := c.With["body"]; ok && b != nil && method != http.MethodGet && method != http.MethodHead {
		data, err := json.Marshal(b)
		if err != nil {
			return Result{}, Permanent(fmt.Errorf("body: %w", err))
		}
		body = bytes.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return Result{}, Permanent(fmt.Errorf("request: %w", err))
	}
	req.Header.Set("User-Agent", "moat")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if h, ok := c.With["headers"].(map[string]any); ok {
		for k, v := range h {
			s := fmt.Sprint(v)
			if strings.ContainsAny(k+s, "\r\n") {
				return Result{}, Permanent(fmt.Errorf("headers.%s: line breaks are not allowed", k))
			}
			req.Header.Set(k, s)
		}
	}
	if c.IdempotencyKey != "" {
		req.Header.Set("Idempotency-Key", c.IdempotencyKey)
	}
	client := c.Env.HTTP
	var cred *credentialTransport
	if setting, ok := c.With["credential"]; ok {
		if cred, err = newCredentialTransport(c, setting); err != nil {
			return Result{}, err
		}
		client = cred.client(client)
	}
	resp, err := client.Do(req)
	if err != nil {
		err = fmt.Errorf("%s %s: %w", method, u.Redacted(), err)
		var denied *CredentialError
		if errors.Is(err, ErrEgressDenied) || errors.As(err, &denied) {
			err = Permanent(err) // policy, not a passing fault
		}
		return Result{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return Result{}, fmt.Errorf("%s %s: reading the response: %w", method, u.Redacted(), err)
	}
	if len(data) > limit {
		return Result{}, Permanent(fmt.Errorf("%s %s: response larger than maxResponseBytes (%d)", method, u.Redacted(), limit))
	}
	headers := flattenHeaders(resp.Header)
	if cred != nil {
		data = cred.redact(data)
		for k, v := range headers {
			headers[k] = cred.redactString(v.(string))
		}
	}
	out := map[string]any{"status": int64(resp.StatusCode), "headers": headers, "body": decodeBody(resp.Header.Get("Content-Type"), data)}
	if resp.StatusCode >= 300 {
		err := fmt.Errorf("%s %s: status %d", method, u.Redacted(), resp.StatusCode)
		if resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
			err = Permanent(err)
		}
		return Result{Output: out}, err
	}
	return Result{Output: out}, nil
}

func flattenHeaders(h http.Header) map[string]any {
	out := make(map[string]any, len(h))
	for k, vs := range h {
		out[k] = strings.Join(vs, ", ")
	}
	return out
}

// decodeBody parses JSON answers so later steps can address their fields.
func decodeBody(contentType string, data []byte) any {
	if len(data) == 0 {
		return nil
	}
	if mt, _, err := mime.ParseMediaType(contentType); err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		if v, err := workflow.DecodeJSON(data); err == nil {
			return v
		}
	}
	return string(data)
}

// Package httpjson is the "http" connector: a generic JSON endpoint, for
// in-house models. A JSON body template is filled from the request, sent,
// and one value of the JSON answer, named by a dotted path, is the content.
package httpjson

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/moatproject/moat/internal/connectors"
)

// Defaults.
const (
	DefaultTimeout          = 60 * time.Second
	DefaultMaxResponseBytes = 1 << 20
)

// DefaultBody is the body template when Config.Body is nil.
var DefaultBody = map[string]any{"model": "{{ model }}", "messages": "{{ messages_json }}"}

// Config is an http connector's settings.
type Config struct {
	// URL is the endpoint: absolute, http or https.
	URL string `json:"url"`
	// Method defaults to POST. GET and HEAD send no body.
	Method string `json:"method,omitempty"`
	// Headers are sent with every request. Their values may carry
	// credentials: they never appear in errors.
	Headers map[string]string `json:"headers,omitempty"`
	// Body is a JSON template: its strings may contain {{ model }},
	// {{ prompt }} (the last user message), {{ system }} (the system
	// messages) and {{ messages_json }} (the messages as a JSON array of
	// {"role","content"}); a string that is exactly "{{ messages_json }}"
	// becomes the array itself. Defaults to DefaultBody.
	Body any `json:"body,omitempty"`
	// Response is the dotted path of the answer's content in the JSON
	// answer, such as "choices.0.text" or "result.label".
	Response string `json:"response"`
	// Timeout bounds one call; default DefaultTimeout.
	Timeout time.Duration `json:"timeout,omitempty"`
	// HTTPClient defaults to a client that does not follow redirects.
	HTTPClient *http.Client `json:"-"`
	// MaxResponseBytes bounds the answer; default DefaultMaxResponseBytes.
	MaxResponseBytes int64 `json:"maxResponseBytes,omitempty"`
}

// Connector calls one JSON endpoint.
type Connector struct {
	url      string
	endpoint string // scheme://host, the only part of the URL errors show
	method   string
	headers  http.Header
	body     *node
	path     []string
	timeout  time.Duration
	client   *http.Client
	maxBytes int64
}

var _ connectors.Connector = (*Connector)(nil)

// New validates cfg.
func New(cfg Config) (*Connector, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, errors.New("httpjson: the URL does not parse") // the URL may hold a key: not repeated
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("httpjson: the URL must be absolute, with scheme http or https")
	}
	c := &Connector{
		url:      cfg.URL,
		endpoint: u.Scheme + "://" + u.Host,
		method:   cfg.Method,
		headers:  http.Header{},
		timeout:  cfg.Timeout,
		client:   cfg.HTTPClient,
		maxBytes: cfg.MaxResponseBytes,
	}
	if c.method == "" {
		c.method = http.MethodPost
	}
	if !validToken(c.method) {
		return nil, fmt.Errorf("httpjson: invalid method %q", truncate(c.method))
	}
	if c.path, err = parsePath(cfg.Response); err != nil {
		return nil, fmt.Errorf("httpjson: %w", err)
	}
	c.headers.Set("Content-Type", "application/json")
	c.headers.Set("Accept", "application/json")
	for k, v := range cfg.Headers {
		if !validToken(k) {
			return nil, fmt.Errorf("httpjson: invalid header name %q", truncate(k))
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("httpjson: the value of header %s has a line break or NUL", k)
		}
		c.headers.Set(k, v)
	}
	tmpl := cfg.Body
	if tmpl == nil {
		tmpl = DefaultBody
	}
	raw, err := jsonOf(tmpl)
	if err != nil {
		return nil, fmt.Errorf("httpjson: the body template is not JSON: %w", err)
	}
	if c.body, err = compile(raw); err != nil {
		return nil, fmt.Errorf("httpjson: body template: %w", err)
	}
	if c.timeout < 0 {
		return nil, errors.New("httpjson: negative timeout")
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.maxBytes < 0 {
		return nil, errors.New("httpjson: negative response size limit")
	}
	if c.maxBytes == 0 {
		c.maxBytes = DefaultMaxResponseBytes
	}
	if c.client == nil {
		c.client = &http.Client{
			// A redirect could carry the headers (credentials) elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return c, nil
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// Kind is "http".
func (c *Connector) Kind() string { return "http" }

func fail(kind error, status int, retryAfter time.Duration, err error) error {
	return &connectors.UpstreamError{Kind: kind, Status: status, RetryAfter: retryAfter, Err: err}
}

// Chat renders the body, sends it and reads the content at the response
// path.
func (c *Connector) Chat(ctx context.Context, req connectors.Request) (connectors.Response, error) {
	v, err := varsOf(req)
	if err != nil {
		return connectors.Response{}, err
	}
	var body io.Reader
	if c.method != http.MethodGet && c.method != http.MethodHead {
		body = bytes.NewReader(c.body.render(nil, v))
	}
	ctx, cancel := connectors.WithTimeout(ctx, c.timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, c.method, c.url, body)
	if err != nil {
		return connectors.Response{}, fmt.Errorf("httpjson: build the request to %s", c.endpoint)
	}
	hreq.Header = c.headers.Clone()
	resp, err := c.client.Do(hreq)
	if err != nil {
		// url.Error repeats the whole URL, which may hold a key: keep
		// only its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		return connectors.Response{}, fail(connectors.ErrUnavailable, 0, 0, fmt.Errorf("httpjson: %s %s: %w", c.method, c.endpoint, err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBytes+1))
	status := resp.StatusCode
	switch {
	case status == http.StatusTooManyRequests:
		return connectors.Response{}, fail(connectors.ErrRateLimited, status, connectors.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()), fmt.Errorf("httpjson: %s %s", c.method, c.endpoint))
	case status >= 500:
		return connectors.Response{}, fail(connectors.ErrUnavailable, status, 0, fmt.Errorf("httpjson: %s %s", c.method, c.endpoint))
	case status < 200 || status >= 300:
		return connectors.Response{}, fail(connectors.ErrRejected, status, 0, fmt.Errorf("httpjson: %s %s", c.method, c.endpoint))
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return connectors.Response{}, fail(connectors.ErrUnavailable, status, 0, fmt.Errorf("httpjson: %s %s: read answer: %w", c.method, c.endpoint, err))
	}
	if int64(len(data)) > c.maxBytes {
		return connectors.Response{}, fail(connectors.ErrMalformed, status, 0, fmt.Errorf("httpjson: %s %s: answer larger than %d bytes", c.method, c.endpoint, c.maxBytes))
	}
	content, err := extract(data, c.path)
	if err != nil {
		return connectors.Response{}, fail(connectors.ErrMalformed, status, 0, fmt.Errorf("httpjson: %s %s: response path %s: %w", c.method, c.endpoint, strings.Join(c.path, "."), err))
	}
	return connectors.Response{Content: content, Model: req.Model, FinishReason: "stop"}, nil
}

package audit

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// WebhookOptions tune a WebhookSink.
type WebhookOptions struct {
	// Name of the sink in the log's cursors; "webhook" by default.
	Name string
	// URL receives POSTs of JSON lines (application/x-ndjson).
	URL string
	// Header is added to every request (an Authorization header, say).
	Header http.Header
	// Client sends the requests; a client with a 10 s timeout by default.
	Client *http.Client
}

// WebhookSink POSTs each batch of lines to a URL, as a SIEM's HTTP
// collector expects. Any answer but 2xx is a failure, and the Log sends the
// same batch again with backoff: delivery is at least once, in order. The
// header X-Moat-Audit-First-Seq names the batch's first record, so a
// receiver can drop the repeats.
type WebhookSink struct {
	opts WebhookOptions
	buf  bytes.Buffer
}

// NewWebhookSink checks the URL and returns the sink.
func NewWebhookSink(opts WebhookOptions) (*WebhookSink, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL may carry a token: do not echo it.
		return nil, fmt.Errorf("audit: webhook sink: the URL is not an absolute http(s) URL")
	}
	if opts.Name == "" {
		opts.Name = "webhook"
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 10 * time.Second}
	}
	return &WebhookSink{opts: opts}, nil
}

func (s *WebhookSink) Name() string { return s.opts.Name }

// Write is called by one goroutine at a time (the Log's runner for this
// sink), so the buffer needs no lock.
func (s *WebhookSink) Write(ctx context.Context, lines []Line) error {
	s.buf.Reset()
	b := s.buf.AvailableBuffer()
	first := int64(-1)
	for i := range lines {
		if first < 0 && lines[i].Type == LineRecord {
			first = lines[i].Record.Seq
		}
		var err error
		if b, err = lines[i].AppendJSON(b); err != nil {
			return err
		}
	}
	s.buf.Write(b)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.opts.URL, bytes.NewReader(s.buf.Bytes()))
	if err != nil {
		return fmt.Errorf("audit: webhook sink %s: %w", s.opts.Name, err)
	}
	for k, vs := range s.opts.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	if first >= 0 {
		req.Header.Set("X-Moat-Audit-First-Seq", strconv.FormatInt(first, 10))
	}
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		// *url.Error quotes the URL, which may hold a token.
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err
		}
		return fmt.Errorf("audit: webhook sink %s: %w", s.opts.Name, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("audit: webhook sink %s: answered %s", s.opts.Name, resp.Status)
	}
	return nil
}

func (s *WebhookSink) Close() error {
	s.opts.Client.CloseIdleConnections()
	return nil
}

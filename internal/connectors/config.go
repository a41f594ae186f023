package connectors

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// CheckBaseURL refuses a base URL that is not absolute http(s) or that
// carries credentials (they belong in the vault, not in a URL).
func CheckBaseURL(kind, base string) error {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s: base URL must be an absolute http or https URL", kind)
	}
	if u.User != nil {
		return fmt.Errorf("%s: base URL must not carry credentials; use APIKey", kind)
	}
	return nil
}

// ResolveTimeout returns the configured timeout, or def when it is zero.
func ResolveTimeout(kind string, timeout, def time.Duration) (time.Duration, error) {
	switch {
	case timeout < 0:
		return 0, fmt.Errorf("%s: timeout must not be negative", kind)
	case timeout == 0:
		return def, nil
	}
	return timeout, nil
}

// WithTimeout is context.WithTimeout, except that when ctx already ends
// sooner (as a gateway attempt's does, under its own timeout) it returns
// ctx itself: a derived context would end at the same moment, and cost a
// timer and a registration with ctx on every call.
func WithTimeout(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= timeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, timeout)
}

// HTTPClientOr returns hc, or a client of its own (never the shared
// default client) when hc is nil.
func HTTPClientOr(hc *http.Client) *http.Client {
	if hc != nil {
		return hc
	}
	return &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
}

// sdkTelemetryHeaders are headers the vendors' Go SDKs add to every request
// that tell the vendor about the machine Moat runs on (its OS, architecture,
// Go version, SDK version) and about the SDK's own retries and timeout,
// which Moat does not run (the gateway retries). In canonical form.
var sdkTelemetryHeaders = func() []string {
	names := []string{
		"X-Stainless-Lang", "X-Stainless-Package-Version", "X-Stainless-OS", "X-Stainless-Arch",
		"X-Stainless-Runtime", "X-Stainless-Runtime-Version", "X-Stainless-Retry-Count", "X-Stainless-Timeout",
	}
	for i, n := range names {
		names[i] = http.CanonicalHeaderKey(n)
	}
	return names
}()

// DropSDKTelemetry removes those headers from h: no upstream needs them to
// answer, so they do not leave.
func DropSDKTelemetry(h http.Header) {
	for _, name := range sdkTelemetryHeaders {
		delete(h, name)
	}
}

package connectors

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// maxRetryAfter caps what an upstream may ask us to wait.
const maxRetryAfter = 24 * time.Hour

// ParseRetryAfter reads an RFC 9110 Retry-After value: a delay in seconds or
// an HTTP date. It is zero when absent, unreadable or in the past, and at
// most a day.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, maxRetryAfter)
		}
	}
	return 0
}

// IsTransportError reports whether err failed on the wire (connection,
// DNS, an answer cut short) rather than in the upstream's answer.
func IsTransportError(err error) bool {
	var urlErr *url.Error
	var netErr net.Error
	return errors.As(err, &urlErr) || errors.As(err, &netErr) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}

// TransportReason says what went wrong on the wire without repeating the
// URL (which may carry a query) or anything else from the request.
func TransportReason(err error) string {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return "network error during " + opErr.Op
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "cannot resolve the host"
	}
	return "network error"
}

var plainCode = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// PlainCode reports whether an upstream's error code or type is a plain
// identifier, safe to repeat in an error (a free-form message may quote the
// key or the prompt).
func PlainCode(s string) bool { return plainCode.MatchString(s) }

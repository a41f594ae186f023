package api

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/moatproject/moat/internal/audit"
)

// Failed sign-ins are recorded in the audit log, and a client that keeps
// failing is throttled: after maxAuthFailures failures within
// authFailureWindow it gets 429 without its token being looked up, until
// the window ends. Throttling is per client address and per process.
const (
	maxAuthFailures   = 10
	authFailureWindow = time.Minute
	// maxFailingClients bounds the memory the failure counts take; past
	// it, expired entries go first, then arbitrary ones.
	maxFailingClients = 10_000
)

// failureRecorder is what the authenticator needs of the audit log.
type failureRecorder interface {
	Append(ctx context.Context, recs ...audit.Record) ([]int64, error)
}

type authFailures struct {
	mu      sync.Mutex
	clients map[string]*clientFailures
}

type clientFailures struct {
	count     int
	windowEnd time.Time
	// throttled is set once the client is refused, so the refusal is
	// recorded once per window rather than once per request.
	throttled bool
}

// clientOf is the address a request came from, without its port.
func clientOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// throttled reports whether client must wait, and how long; the first
// refusal of a window also reports first=true.
func (f *authFailures) throttled(client string, now time.Time) (wait time.Duration, first bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.clients[client]
	if !ok || !now.Before(c.windowEnd) || c.count < maxAuthFailures {
		return 0, false
	}
	first = !c.throttled
	c.throttled = true
	return c.windowEnd.Sub(now), first
}

// fail counts one failure of client.
func (f *authFailures) fail(client string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.clients == nil {
		f.clients = map[string]*clientFailures{}
	}
	c, ok := f.clients[client]
	if !ok || !now.Before(c.windowEnd) {
		if !ok && len(f.clients) >= maxFailingClients {
			f.evict(now)
		}
		c = &clientFailures{windowEnd: now.Add(authFailureWindow)}
		f.clients[client] = c
	}
	c.count++
}

func (f *authFailures) evict(now time.Time) {
	for k, c := range f.clients {
		if !now.Before(c.windowEnd) {
			delete(f.clients, k)
		}
	}
	for k := range f.clients {
		if len(f.clients) < maxFailingClients {
			return
		}
		delete(f.clients, k)
	}
}

// refuse answers a failed sign-in, records it and counts it against the
// client. The token tried is recorded only as its HMAC, so a leaked or
// guessed token can be searched for without the log holding it.
func (a *authenticator) refuse(w http.ResponseWriter, r *http.Request, reason, token string) {
	client := clientOf(r)
	a.failures.fail(client, a.clock())
	details := map[string]any{"client": client, "method": r.Method, "path": r.URL.Path, "reason": reason}
	if token != "" {
		details["token"] = audit.Sensitive(token)
	}
	a.record(r.Context(), "auth.failed", details)
	unauthorized(w, r, reason)
}

func (a *authenticator) record(ctx context.Context, action string, details map[string]any) {
	if a.audit == nil {
		return
	}
	rec := audit.Record{Actor: "anonymous", Action: action, Resource: "api", Outcome: audit.Denied, Details: details}
	// The request is refused whatever happens here; a record that cannot
	// be written is worth a warning, not a different answer.
	if _, err := a.audit.Append(context.WithoutCancel(ctx), rec); err != nil {
		a.log.Warn("audit: a failed sign-in could not be recorded", "action", action, "error", err)
	}
}

// throttle refuses a client with too many recent failures; it reports
// whether it did.
func (a *authenticator) throttle(w http.ResponseWriter, r *http.Request) bool {
	client := clientOf(r)
	wait, first := a.failures.throttled(client, a.clock())
	if wait <= 0 {
		return false
	}
	if first {
		a.record(r.Context(), "auth.throttled", map[string]any{"client": client, "failures": maxAuthFailures, "window": authFailureWindow.String()})
	}
	secs := int(wait/time.Second) + 1
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	msg := "too many failed sign-ins from this address; try again in " + strconv.Itoa(secs) + "s"
	if openAIPath(r.URL.Path) {
		writeOpenAIError(w, &openAIError{Status: http.StatusTooManyRequests, Type: errTypeRateLimit, Code: "rate_limit_exceeded", Message: msg})
		return true
	}
	writeProblem(w, http.StatusTooManyRequests, msg)
	return true
}

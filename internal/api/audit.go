package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/moatproject/moat/internal/audit"
	"github.com/moatproject/moat/internal/gateway"
)

// auditedRoute names what a mutating route does, as the audit log records
// it. Resource is a template: {x} is replaced by the route's path value x.
type auditedRoute struct {
	action   string
	resource string
}

// auditedRoutes holds every mutating route the server registers, keyed by
// its mux pattern. A mutating request whose route is missing here is
// refused, so a new route cannot go unrecorded; TestAuditEveryMutatingRoute
// finds the routes from the OpenAPI document and server.go.
var auditedRoutes = map[string]auditedRoute{
	"PUT /api/v1/projects/{project}": {"project.put", "project/{project}"},

	// The project and name are in the body, which is never read here.
	"POST /api/v1/workflows":                                {"workflow.save", "workflow"},
	"POST /api/v1/projects/{project}/workflows/{name}/runs": {"run.start", "workflow/{project}/{name}"},
	"POST /api/v1/runs/{id}/cancel":                         {"run.cancel", "run/{id}"},
	"POST /api/v1/runs/erase":                               {"runs.erase", "runs"},
	"POST /api/v1/runs/purge":                               {"runs.purge", "runs"},
	"POST /api/v1/tasks/{id}/approve":                       {"task.approve", "task/{id}"},
	"POST /api/v1/tasks/{id}/reject":                        {"task.reject", "task/{id}"},

	"PUT /api/v1/vendors/{name}":       {"vendor.put", "vendor/{name}"},
	"DELETE /api/v1/vendors/{name}":    {"vendor.delete", "vendor/{name}"},
	"PUT /api/v1/connectors/{name}":    {"connector.put", "connector/{name}"},
	"DELETE /api/v1/connectors/{name}": {"connector.delete", "connector/{name}"},
	"PUT /api/v1/models/{name}":        {"model.put", "model/{name}"},
	"DELETE /api/v1/models/{name}":     {"model.delete", "model/{name}"},

	"PUT /api/v1/secrets/{environment}/{name}":    {"secret.set", "secret/{environment}/{name}"},
	"DELETE /api/v1/secrets/{environment}/{name}": {"secret.delete", "secret/{environment}/{name}"},
	"POST /api/v1/vault/rotate":                   {"vault.rotate", "vault"},
	"POST /api/v1/vault/rewrap":                   {"vault.rewrap", "vault"},
	"POST /api/v1/vault/min-decryption-term":      {"vault.retire_terms", "vault"},
	"POST /api/v1/vault/seal":                     {"vault.seal", "vault"},
	"POST /api/v1/vault/unseal":                   {"vault.unseal", "vault"},

	"POST /hooks/{path...}": {"webhook.trigger", "webhook/{path}"},
}

// auditedElsewhere are the patterns whose requests another component
// records, with the reason.
var auditedElsewhere = map[string]string{
	"/v1/": "the gateway records every AI call (ai.call) and fails closed itself",
}

// maxAuditedBody bounds the body the auditor reads to digest it before the
// handler runs: the largest any mutating operation accepts (a workflow's
// source and its envelope).
const maxAuditedBody = maxSourceBytes + 4096

// auditor writes two records for every mutating request, as Vault's audit
// devices do: one before the handler runs (outcome requested), without
// which the handler does not run, and one with how it ended.
type auditor struct {
	log    *audit.Log
	mux    *http.ServeMux // the server's routes
	values *http.ServeMux // the audited routes again, to read path values
	logger *slog.Logger
	// outcomeFailures counts outcome records that could not be written;
	// their requests had already been answered.
	outcomeFailures atomic.Int64
}

func newAuditor(l *audit.Log, mux *http.ServeMux, logger *slog.Logger) *auditor {
	a := &auditor{log: l, mux: mux, values: http.NewServeMux(), logger: logger}
	for pattern := range auditedRoutes {
		a.values.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if c, ok := w.(*pathCapture); ok && r.Pattern == c.pattern {
				c.resource = expandResource(auditedRoutes[pattern].resource, r.PathValue)
			}
		})
	}
	return a
}

// safeMethod reports the methods that change nothing (RFC 9110 §9.2.1) and
// so are not audited here.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func (a *auditor) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if safeMethod(r.Method) {
			next.ServeHTTP(w, r)
			return
		}
		_, pattern := a.mux.Handler(r)
		if _, elsewhere := auditedElsewhere[pattern]; pattern == "" || elsewhere {
			// No route: the mux answers 404 or 405 and nothing runs.
			next.ServeHTTP(w, r)
			return
		}
		route, ok := auditedRoutes[pattern]
		if !ok {
			a.logger.Error("api: mutating route has no audit action; request refused", "route", pattern)
			writeProblem(w, http.StatusInternalServerError, "the route "+pattern+" has no audit action, so it is refused: name its action in internal/api/audit.go")
			return
		}
		a.serve(w, r, next, pattern, route)
	})
}

func (a *auditor) serve(w http.ResponseWriter, r *http.Request, next http.Handler, pattern string, route auditedRoute) {
	start := time.Now()
	id := gateway.NewRequestID()
	w.Header().Set(headerRequestID, id)

	actor := actorOf(r.Context())
	details := map[string]any{"requestId": id, "method": r.Method, "route": pattern, "client": r.RemoteAddr}
	if p, ok := PrincipalFrom(r.Context()); ok {
		details["keyName"] = p.Name
	}
	resource := a.resource(r, pattern, route)

	handler := next
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAuditedBody+1))
	switch {
	case err != nil:
		details["bodyUnreadable"] = true
		handler = problemHandler(http.StatusBadRequest, "could not read the body")
	case len(body) > maxAuditedBody:
		details["bodyTooLarge"] = true
		details["contentLength"] = r.ContentLength
		handler = problemHandler(http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", maxAuditedBody))
	default:
		details["contentLength"] = len(body)
		// An HMAC, not a plain digest: a body with a short secret or a
		// passphrase in it could be guessed from its SHA-256. Whoever holds
		// the audit key can still match a body they have.
		details["bodyHmac"] = a.log.HMAC(string(body))
		r.Body = io.NopCloser(bytes.NewReader(body))
	}

	if _, err := a.log.Append(r.Context(), audit.Record{
		Actor: actor, Action: route.action, Resource: resource, Outcome: audit.Requested, Details: details,
	}); err != nil {
		a.logger.Error("audit log unavailable: mutating request refused", "requestId", id, "action", route.action, "error", err)
		w.Header().Set("Retry-After", "5")
		writeProblem(w, http.StatusServiceUnavailable, "audit log unavailable: the change was not made")
		return
	}

	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		// A panic still gets its outcome record, then goes on up to
		// net/http, which logs it and drops the connection.
		p := recover()
		status := sw.status
		if status == 0 {
			status = http.StatusOK
			if p != nil {
				status = http.StatusInternalServerError
			}
		}
		outcome := outcomeOf(status)
		result := map[string]any{"requestId": id, "status": status, "durationUs": time.Since(start).Microseconds()}
		if p != nil {
			outcome, result["panicked"] = audit.Failed, true
		}
		ctx := context.WithoutCancel(r.Context()) // the client may be gone; the record is still due
		if _, err := a.log.Append(ctx, audit.Record{
			Actor: actor, Action: route.action, Resource: resource, Outcome: outcome, Details: result,
		}); err != nil {
			n := a.outcomeFailures.Add(1)
			a.logger.Error("audit: outcome record not written; the request was already answered",
				"requestId", id, "action", route.action, "status", status, "outcome_failures", n, "error", err)
		}
		if p != nil {
			panic(p)
		}
	}()
	handler.ServeHTTP(sw, r)
}

// outcomeOf maps an answer's status to the audit outcome: refusals of the
// caller's request are denied, server errors failed.
func outcomeOf(status int) audit.Outcome {
	switch {
	case status < 400:
		return audit.OK
	case status < 500:
		return audit.Denied
	}
	return audit.Failed
}

func problemHandler(status int, detail string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { writeProblem(w, status, detail) })
}

// resource names what the request acts on, with the route's path values as
// the mux reads them.
func (a *auditor) resource(r *http.Request, pattern string, route auditedRoute) string {
	if !strings.Contains(route.resource, "{") {
		return route.resource
	}
	c := pathCapture{pattern: pattern}
	// The mux sets the pattern and path values on r; the server's mux sets
	// them again before the handler runs.
	a.values.ServeHTTP(&c, r)
	if c.resource == "" {
		// A path the mux would redirect to its clean form: the handler
		// does not run either, but the request is recorded all the same.
		return expandResource(route.resource, func(string) string { return "?" })
	}
	return c.resource
}

// maxResourceLen keeps a resource within what an audit record holds (1 KiB).
const maxResourceLen = 1000

// expandResource replaces each {x} in tmpl with value(x). Path values are
// anything a client put in the URL, so the result is cut to a length and
// made valid UTF-8, which the audit log requires.
func expandResource(tmpl string, value func(string) string) string {
	var b strings.Builder
	for {
		open := strings.IndexByte(tmpl, '{')
		if open < 0 {
			b.WriteString(tmpl)
			break
		}
		end := strings.IndexByte(tmpl[open:], '}')
		if end < 0 {
			b.WriteString(tmpl)
			break
		}
		b.WriteString(tmpl[:open])
		b.WriteString(value(tmpl[open+1 : open+end]))
		tmpl = tmpl[open+end+1:]
	}
	// Invalid bytes first, since each becomes a three-byte U+FFFD; then the
	// cut, on a rune boundary.
	s := strings.ToValidUTF8(b.String(), "\uFFFD")
	if len(s) > maxResourceLen {
		cut := maxResourceLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// pathCapture is the writer given to the values mux: it keeps the resource
// its handler computes and discards whatever the mux itself would answer.
type pathCapture struct {
	pattern  string
	resource string
	header   http.Header
}

func (c *pathCapture) Header() http.Header {
	if c.header == nil {
		c.header = http.Header{}
	}
	return c.header
}
func (c *pathCapture) Write(b []byte) (int, error) { return len(b), nil }
func (c *pathCapture) WriteHeader(int)             {}

// statusWriter remembers the status of the answer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush passes a flush on, so streamed answers stay streamed.
func (s *statusWriter) Flush() {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	_ = http.NewResponseController(s.ResponseWriter).Flush()
}

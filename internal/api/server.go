// Package api serves Moat's HTTP API: huma operations under /api/v1 (one
// file per resource, scenario tests beside each), the webhook trigger under
// /hooks and the health probes. OpenAPI 3.1 is at /api/openapi.json.
package api

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/moatproject/moat/internal/audit"
	"github.com/moatproject/moat/internal/engine"
	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/retention"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/vault"
)

// Limits on request bodies.
const (
	maxBodyBytes    = 1 << 20 // JSON requests
	maxSourceBytes  = 1 << 20 // a workflow definition's source
	maxWebhookBytes = 1 << 20
)

// Deps are what the handlers use.
type Deps struct {
	Store   store.Store
	Engine  *engine.Engine
	Logger  *slog.Logger
	Version string
	// Ready reports whether the server may take traffic (engine started).
	Ready func(ctx context.Context) error
	// Gateway runs AI calls; nil when none is configured.
	Gateway *gateway.Gateway
	// Vault holds secrets; nil serves no /api/v1/secrets or /api/v1/vault.
	Vault *vault.Vault
	// Retention purges and erases run payloads; nil serves no
	// /api/v1/runs/erase or /api/v1/runs/purge.
	Retention *retention.Purger
	// Audit records every mutating request before it runs (refusing it
	// when the record cannot be written) and how it ended. nil audits
	// nothing: for tests and tools that do not serve users.
	Audit *audit.Log
}

// New returns the HTTP handler for the whole server.
func New(d Deps) http.Handler {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	config := huma.DefaultConfig("Moat", d.Version)
	config.Info.Description = "Self-hosted workflows for AI-enabled automation, where every AI call passes one security gateway."
	config.OpenAPIPath = "/api/openapi"
	config.DocsPath = "" // the docs page would pull scripts from a CDN
	config.SchemasPath = "/api/schemas"
	config.CreateHooks = nil // no $schema links in bodies: clients send bodies back
	config.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"bearer": {Type: "http", Scheme: "bearer", Description: "An API token; on first start Moat writes one to <data-dir>/bootstrap.token."},
	}
	config.Security = []map[string][]string{{"bearer": {}}}
	hapi := humago.New(mux, config)

	h := &handlers{Deps: d}
	h.registerProjects(hapi)
	h.registerWorkflows(hapi)
	h.registerRuns(hapi)
	h.registerTasks(hapi)
	h.registerVendors(hapi)
	h.registerConnectors(hapi)
	h.registerModels(hapi)
	h.registerFlow(hapi)
	if d.Vault != nil {
		h.registerSecrets(hapi, d.Vault)
	}
	if d.Retention != nil {
		h.registerRetention(hapi, d.Retention)
	}

	mux.HandleFunc("POST /hooks/{path...}", h.webhook)
	mux.HandleFunc("GET /{$}", h.home)
	mux.HandleFunc("GET /healthz", h.healthz)
	mux.HandleFunc("GET /readyz", h.readyz)
	mux.HandleFunc("/v1/", h.openAI)

	auth := &authenticator{store: d.Store, log: d.Logger}
	if d.Audit != nil {
		auth.audit = d.Audit
	}
	routed := unrouted(mux)
	if d.Audit != nil {
		routed = newAuditor(d.Audit, mux, d.Logger).middleware(routed)
	}
	return securityHeaders(auth.middleware(routed))
}

// unrouted answers the mux's own 404 and 405 as RFC 9457 problems, like
// every other error, instead of the mux's plain text.
func unrouted(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, pattern := mux.Handler(r); pattern == "" {
			h.ServeHTTP(&problemWriter{ResponseWriter: w, r: r}, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// problemWriter turns the status a mux fallback handler writes into a
// problem and drops its plain-text body. Allow (set on 405) is kept.
type problemWriter struct {
	http.ResponseWriter
	r     *http.Request
	wrote bool
}

func (p *problemWriter) WriteHeader(status int) {
	if p.wrote {
		return
	}
	p.wrote = true
	detail := "no such endpoint: " + p.r.Method + " " + p.r.URL.Path + " (the API is described at /api/openapi.json)"
	if status == http.StatusMethodNotAllowed {
		detail = "method " + p.r.Method + " is not allowed on " + p.r.URL.Path + "; allowed: " + p.Header().Get("Allow")
	}
	writeProblem(p.ResponseWriter, status, detail)
}

func (p *problemWriter) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return len(b), nil
}

type handlers struct {
	Deps
}

// securityHeaders sets conservative defaults on every answer.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

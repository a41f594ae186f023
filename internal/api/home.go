package api

import (
	"html"
	"net/http"
	"strings"
)

// The web canvas arrives with the UI issue; until then the root page tells
// a person who opens Moat in a browser where they are and what to do.
//
// It fills its two blanks by replacing them, not with html/template: running
// a template makes reflection's MethodByName reachable, and then the linker
// keeps every exported method of every type in the binary. With the AI
// vendors' SDKs linked that was 34 MB of the binary and 12 MB of idle RSS
// (BENCHMARKS.md, "Idle memory"; TestLinkerDropsUnusedMethods in cmd/moat).
const homePage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Moat</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem;color:#222}code,pre{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}pre{padding:.8rem;overflow:auto}</style>
</head><body>
<h1>Moat {{.Version}}</h1>
<p>Self-hosted workflows for AI-enabled automation, where every AI call passes one security gateway.</p>
<p>This server is running. Its API needs a bearer token: on first start Moat wrote one to
<code>&lt;data-dir&gt;/bootstrap.token</code>.</p>
<pre>export MOAT_TOKEN=$(cat moat-data/bootstrap.token)
curl -H "Authorization: Bearer $MOAT_TOKEN" http://{{.Host}}/api/v1/projects</pre>
<ul>
<li><a href="/api/openapi.json">OpenAPI 3.1 description</a> of every endpoint</li>
<li><a href="/healthz">/healthz</a> and <a href="/readyz">/readyz</a> probes</li>
</ul>
</body></html>
`

func (h *handlers) home(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	blanks := strings.NewReplacer("{{.Version}}", html.EscapeString(h.Version), "{{.Host}}", html.EscapeString(r.Host))
	_, _ = blanks.WriteString(w, homePage)
}

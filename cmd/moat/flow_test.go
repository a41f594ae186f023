package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatproject/moat/internal/config"
)

// TestFlowCommands draws a workflow's map and the vendor report from a
// server whose alias falls back from a managed service to an on-premises
// model server.
func TestFlowCommands(t *testing.T) {
	t.Parallel()
	_, url, token := serveApp(t, func(c *config.Config) { c.Environment = "prod" })
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	remote := []string{"--server", url, "--token-file", tokenFile}
	run := func(args ...string) (string, string, int) {
		t.Helper()
		return moat(t, append(args, remote...)...)
	}

	resources := writeFile(t, "support.yaml", `apiVersion: moat/v1
kind: Vendor
name: acme-ai
location: managed-service
region: eu-west
retentionDays: 30
---
apiVersion: moat/v1
kind: Vendor
name: in-house
location: on-premises
retentionDays: 0
---
apiVersion: moat/v1
kind: Connector
name: acme
type: openai
vendor: acme-ai
baseURL: https://api.acme.example/v1
models: [acme-large]
---
apiVersion: moat/v1
kind: Connector
name: ollama
type: openai
vendor: in-house
baseURL: http://ollama.internal:11434/v1
models: [llama3]
---
apiVersion: moat/v1
kind: Model
name: support
chain: [{connector: acme}, {connector: ollama}]
---
apiVersion: moat/v1
kind: Workflow
name: triage
project: support
input:
  schema:
    type: object
    properties:
      email: {type: string, x-data-class: pii.email}
      body: {type: string, x-data-class: customer.content, x-trust: untrusted}
steps:
  - id: summarise
    uses: ai.chat
    with: {model: support, prompt: Summarise., data: {body: "{{ input.body }}"}}
  - id: reply
    uses: ai.chat
    with: {model: support, prompt: Reply., data: {email: "{{ input.email }}"}}
`)
	if out, errOut, code := run("apply", "-f", resources); code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}

	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string
		wantErr  string
	}{
		{
			name: "mermaid by default", args: []string{"flow", "diagram", "triage", "--project", "support"},
			want: []string{"flowchart LR\n", `(["input.email<br/>pii.email"])`, `vendor in-house<br/>on-premises`, `-->|"pii.email: tokenize"|`, `-.->|"fallback 1<br/>pii.email: tokenize"|`},
		},
		{
			name: "dot", args: []string{"flow", "diagram", "triage", "--project", "support", "--format", "dot", "--version", "1"},
			want: []string{"digraph flow {", `label="support/triage version 1\nenvironment prod"`, `label="customer.content: allow"`},
		},
		{
			name: "json", args: []string{"flow", "diagram", "triage", "--project", "support", "--format", "json"},
			want: []string{`"workflow": "triage"`, `"vendorAction": "tokenize"`},
		},
		{
			name: "an unknown format", args: []string{"flow", "diagram", "triage", "--format", "svg"},
			wantCode: 1, wantErr: "--format must be mermaid, dot or json",
		},
		{
			name: "an unknown workflow", args: []string{"flow", "diagram", "nope", "--project", "support"},
			wantCode: 1, wantErr: `404 Not Found: no workflow named "nope" in project "support"`,
		},
		{
			name: "an unknown version", args: []string{"flow", "diagram", "triage", "--project", "support", "--version", "7"},
			wantCode: 1, wantErr: "has no version 7; the latest is 1",
		},
		{
			name: "vendors as text", args: []string{"flow", "vendors", "--project", "support"},
			want: []string{"project support, environment prod, 1 workflow(s)", "acme-ai", "eu-west", "pii.email", "tokenize", "support/triage@1 reply", "in-house"},
		},
		{
			name: "vendors as json", args: []string{"flow", "vendors", "--format", "json"},
			want: []string{`"name": "acme-ai"`, `"class": "pii.email"`},
		},
		{
			name: "vendors in an unknown format", args: []string{"flow", "vendors", "--format", "csv"},
			wantCode: 1, wantErr: "--format must be text or json",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := run(tt.args...)
			if code != tt.wantCode || !strings.Contains(errOut, tt.wantErr) {
				t.Fatalf("code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}

	// The summary step reads only the body: the address never reaches its
	// connectors.
	out, _, _ := run("flow", "diagram", "triage", "--project", "support")
	summarise := nodeOf(out, "summarise")
	if summarise == "" {
		t.Fatalf("no summarise node:\n%s", out)
	}
	edges := 0
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), summarise+" -") {
			continue
		}
		edges++
		if strings.Contains(line, "pii.email") {
			t.Errorf("the summary step sends the address: %q", line)
		}
	}
	if edges != 3 { // to reply, and to both connectors
		t.Errorf("%d edges leave the summary step:\n%s", edges, out)
	}
}

// nodeOf finds the id a mermaid diagram gives a step.
func nodeOf(diagram, step string) string {
	for _, line := range strings.Split(diagram, "\n") {
		line = strings.TrimSpace(line)
		if id, rest, ok := strings.Cut(line, `["`); ok && strings.HasPrefix(rest, step+"<br/>") {
			return id
		}
	}
	return ""
}

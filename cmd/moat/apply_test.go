package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatproject/moat/internal/app"
	"github.com/moatproject/moat/internal/config"
	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/manifest"
	"github.com/moatproject/moat/internal/store"
)

// openApp opens a Moat on a fresh data dir, its bootstrap token created;
// edit changes its settings first.
func openApp(t *testing.T, edit ...func(*config.Config)) (*app.App, string) {
	t.Helper()
	ctx := context.Background()
	cfg := config.Default()
	cfg.DataDir, cfg.DatabaseURL = t.TempDir(), ""
	for _, e := range edit {
		e(&cfg)
	}
	a, err := app.Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	token, err := a.Bootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return a, token
}

// serveApp is openApp, started and served over HTTP; it returns the
// server's URL and the bootstrap token.
func serveApp(t *testing.T, edit ...func(*config.Config)) (a *app.App, url, token string) {
	t.Helper()
	ctx := context.Background()
	a, token = openApp(t, edit...)
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Engine.Stop(ctx) })
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	return a, srv.URL, token
}

// gatewayDir writes resources whose files sort in the reverse of the order
// they must be applied in.
func gatewayDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"a-models.yaml": `apiVersion: moat/v1
kind: Model
name: fast
chain:
  - connector: openai
    model: gpt-4o-mini
`,
		"b-connectors.yaml": `kind: Connector
name: openai
type: openai
vendor: openai
credential:
  env: OPENAI_API_KEY
models: [gpt-4o-mini, gpt-4o]
openai:
  azureAPIVersion: 2024-10-21
baseURL: https://acme.openai.azure.com
---
kind: Connector
name: scorer
type: http
vendor: openai
http:
  url: https://scorer.internal/score
  body: {text: "{{ prompt }}", top: 3}
  response: result.label
`,
		"c-vendors.yaml": `kind: Vendor
name: openai
location: managed-service
retentionDays: 30
`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestApplyGatewayResources(t *testing.T) {
	a, token := openApp(t)
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	t.Setenv("MOAT_SERVER", srv.URL)
	t.Setenv("MOAT_TOKEN", token)

	dir := gatewayDir(t)
	out, errOut, code := moat(t, "apply", "-f", dir)
	want := "vendor openai applied\nconnector openai applied\nconnector scorer applied\nmodel fast applied\n"
	if code != 0 || out != want {
		t.Fatalf("apply: code %d\n%s\n%s", code, out, errOut)
	}
	out, _, code = moat(t, "apply", "-f", dir)
	if code != 0 || out != strings.ReplaceAll(want, "applied", "unchanged") {
		t.Fatalf("second apply: code %d\n%s", code, out)
	}
	stored, err := a.Store.GetResource(context.Background(), gateway.KindConnector, "openai")
	if err != nil {
		t.Fatal(err)
	}
	var c gateway.Connector
	if err := json.Unmarshal(stored.Spec, &c); err != nil {
		t.Fatal(err)
	}
	if c.Name != "openai" || c.OpenAI == nil || c.OpenAI.AzureAPIVersion != "2024-10-21" || c.Credential.Env != "OPENAI_API_KEY" {
		t.Fatalf("stored connector: %+v", c)
	}

	// Problems name the lines of the file.
	broken := writeFile(t, "broken.yaml", `kind: Vendor
name: openai
location: managed-service
---
kind: Connector
name: claude
type: anthropic
vendor: anthropic
credential:
  env: ANTHROPIC_API_KEY
  value: sk-ant-literal
timeout: 1h
`)
	out, errOut, code = moat(t, "apply", "-f", broken)
	errOut = out + errOut
	// Unknown fields are reported before the checks that read the fields.
	for _, w := range []string{
		"vendor openai applied",
		"broken.yaml:11: connector claude: credential.value: unknown field",
	} {
		if code != 1 || !strings.Contains(errOut, w) {
			t.Errorf("broken apply: code %d, stderr lacks %q:\n%s", code, w, errOut)
		}
	}
	if strings.Contains(errOut, "sk-ant-literal") {
		t.Errorf("the problem repeats a value: %s", errOut)
	}
	// Fixing the unknown field leaves the vendor and timeout problems.
	fixed := writeFile(t, "fixed.yaml", "kind: Connector\nname: claude\ntype: anthropic\nvendor: anthropic\ntimeout: 1h\n")
	_, errOut, code = moat(t, "apply", "-f", fixed)
	if code != 1 || !strings.Contains(errOut, `fixed.yaml:4: connector claude: vendor: no vendor named "anthropic"`) ||
		!strings.Contains(errOut, "fixed.yaml:5: connector claude: timeout: ") {
		t.Fatalf("fixed apply: code %d\n%s", code, errOut)
	}

	unknown := writeFile(t, "unknown.yaml", "kind: Secret\nname: x\n")
	_, errOut, code = moat(t, "apply", "-f", unknown)
	if code != 1 || !strings.Contains(errOut, `unknown kind "Secret" (want one of Project, Vendor, Connector, Model, Workflow)`) {
		t.Fatalf("unknown kind: code %d\n%s", code, errOut)
	}
}

func TestServeApplyGatewayResources(t *testing.T) {
	a, _ := openApp(t)
	ctx := context.Background()
	var out bytes.Buffer
	if err := applyLocal(ctx, a, []string{gatewayDir(t)}, &out); err != nil {
		t.Fatal(err)
	}
	want := "vendor openai applied\nconnector openai applied\nconnector scorer applied\nmodel fast applied\n"
	if out.String() != want {
		t.Fatalf("output:\n%s", out.String())
	}
	all, err := a.Store.ListResources(ctx, "")
	if err != nil || len(all) != 4 {
		t.Fatalf("stored %d resources: %v", len(all), err)
	}
	// Each document is audited like an API change: requested, then done.
	if err := a.Audit.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	logged, err := a.Store.ListAudit(ctx, 0, 100)
	var recs []store.AuditRecord
	for _, r := range logged {
		if r.Actor != "system:bootstrap" { // the bootstrap token's creation
			recs = append(recs, r)
		}
	}
	if err != nil || len(recs) != 8 {
		t.Fatalf("%d audit records, want 8: %v", len(recs), err)
	}
	if r := recs[0]; r.Actor != "system:serve-apply" || r.Action != "vendor.apply" || r.Resource != "vendor/openai" || r.Outcome != "requested" || recs[1].Outcome != "ok" {
		t.Errorf("first records: %+v, %+v", recs[0], recs[1])
	}

	// The same checks as the API, placed on the file's lines.
	bad := writeFile(t, "bad.yaml", "kind: Model\nname: smart\nchain:\n  - connector: openai\n    model: o1\n  - connector: claude\n")
	err = applyLocal(ctx, a, []string{bad}, &out)
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:5: model smart: chain[0].model: ") ||
		!strings.Contains(err.Error(), `bad.yaml:6: model smart: chain[1].connector: no connector named "claude"`) {
		t.Fatalf("bad model: %v", err)
	}
	if _, err := a.Store.GetResource(ctx, gateway.KindModel, "smart"); err == nil {
		t.Fatal("the refused model was stored")
	}
	unknown := writeFile(t, "unknown.yaml", "kind: Secret\nname: x\n")
	if err := applyLocal(ctx, a, []string{unknown}, &out); err == nil || !strings.Contains(err.Error(), "want one of Project, Vendor") {
		t.Fatalf("unknown kind: %v", err)
	}
}

func TestParseResourceDocument(t *testing.T) {
	src := "# leading comment\nkind: Connector\napiVersion: moat/v1\nname: scorer\ntype: http\nhttp:\n  url: https://x.example/\n  headers:\n    X-Team: risk\n  body:\n    n: 12\n    ok: true\n    none: null\n    list: [a, 2.5]\n"
	d := fileDocument{Path: "f.yaml", Document: manifest.Document{Kind: "Connector", Name: "scorer", Line: 10, Source: []byte(src)}}
	rd, err := parseResourceDocument(d)
	if err != nil {
		t.Fatal(err)
	}
	if rd.name != "scorer" || rd.kind != "Connector" {
		t.Fatalf("kind/name %s %s", rd.kind, rd.name)
	}
	wantBody := `{"http":{"body":{"list":["a",2.5],"n":12,"none":null,"ok":true},"headers":{"X-Team":"risk"},"url":"https://x.example/"},"type":"http"}`
	if string(rd.body) != wantBody {
		t.Fatalf("body\n got %s\nwant %s", rd.body, wantBody)
	}
	for field, line := range map[string]int{"type": 14, "http.headers.X-Team": 18, "http.body.list[1]": 23, "http.body.list[7]": 23, "http.nothing": 15, "": 10} {
		if got := rd.line(field); got != line {
			t.Errorf("line(%q) = %d, want %d", field, got, line)
		}
	}

	for name, bad := range map[string]string{
		"no name":       "kind: Vendor\nlocation: x\n",
		"api version":   "kind: Vendor\napiVersion: v2\nname: x\n",
		"duplicate key": "kind: Vendor\nname: x\nname: y\n",
		"infinity":      "kind: Vendor\nname: x\nretentionDays: .inf\n",
		"not a mapping": "- kind\n",
		"not yaml":      "kind: [\n",
		"merge key":     "kind: Vendor\nname: x\nbase: &b {a: 1}\nother:\n  <<: *b\n",
	} {
		d := fileDocument{Path: "f.yaml", Document: manifest.Document{Kind: "Vendor", Line: 1, Source: []byte(bad)}}
		if _, err := parseResourceDocument(d); err == nil || !strings.HasPrefix(err.Error(), "f.yaml:") {
			t.Errorf("%s: got %v, want an error at a line of f.yaml", name, err)
		}
	}
}

// TestParseResourceDocumentBoundsAliases: aliases cannot expand a small
// file into a huge document.
func TestParseResourceDocumentBoundsAliases(t *testing.T) {
	var b strings.Builder
	b.WriteString("kind: Vendor\nname: x\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 9; i++ {
		b.WriteString("a" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + string(rune('0'+i-1)))
		}
		b.WriteString("]\n")
	}
	d := fileDocument{Path: "f.yaml", Document: manifest.Document{Kind: "Vendor", Line: 1, Source: []byte(b.String())}}
	if _, err := parseResourceDocument(d); err == nil || !strings.Contains(err.Error(), "expands too far") {
		t.Fatalf("alias bomb: %v", err)
	}
}

func FuzzParseResourceDocument(f *testing.F) {
	f.Add("kind: Vendor\nname: x\nlocation: on-premises\n")
	f.Add("kind: Connector\nname: y\nhttp: {url: 'https://x', body: {a: [1, 2.5, null, true]}}\n")
	f.Add("a: &a [1]\nb: *a\n")
	f.Fuzz(func(t *testing.T, src string) {
		d := fileDocument{Path: "f.yaml", Document: manifest.Document{Kind: "Vendor", Line: 3, Source: []byte(src)}}
		rd, err := parseResourceDocument(d)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.yaml:") {
				t.Fatalf("error without a location: %v", err)
			}
			return
		}
		var obj map[string]any
		if err := json.Unmarshal(rd.body, &obj); err != nil {
			t.Fatalf("body is not a JSON object: %v", err)
		}
		for _, k := range []string{"kind", "apiVersion", "name"} {
			if _, ok := obj[k]; ok {
				t.Fatalf("body keeps %s", k)
			}
		}
		if rd.name == "" {
			t.Fatal("accepted without a name")
		}
		for field := range rd.lines {
			if l := rd.line(field); l < 3 {
				t.Fatalf("line(%q) = %d, before the document", field, l)
			}
		}
	})
}

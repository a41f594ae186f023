package app_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatproject/moat/internal/app"
	"github.com/moatproject/moat/internal/audit"
	"github.com/moatproject/moat/internal/vault"
)

// A secret read in moat serve is recorded in the audit log before the value
// is returned, with who asked and where it was going, never the value; a
// refused read is recorded as denied.
func TestSecretReadsAreAudited(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, err := app.Open(ctx, testConfig(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	const value = "sk-app-audit-canary-7Hq2"
	opts := vault.Options{Bindings: vault.Bindings{Connectors: []string{"openai"}, Hosts: []string{"api.openai.com"}}}
	if _, err := a.Vault.Set(ctx, "prod", "openai-key", []byte(value), opts); err != nil {
		t.Fatal(err)
	}
	access := vault.Access{RunID: "run_1", Workflow: "support/triage", Environment: "prod", Connector: "openai", Host: "api.openai.com"}
	if got, err := a.Vault.Resolve(ctx, access, "prod", "openai-key"); err != nil || string(got) != value {
		t.Fatalf("resolve: %q, %v", got, err)
	}
	access.Host = "evil.example"
	if _, err := a.Vault.Resolve(ctx, access, "prod", "openai-key"); err == nil {
		t.Fatal("a read for another host was allowed")
	}

	if err := a.Audit.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	recs, err := a.Store.ListAudit(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var outcomes []string
	for _, r := range recs {
		if strings.Contains(string(r.Details), value) {
			t.Errorf("record %d holds the secret's value", r.Seq)
		}
		if r.Action != vault.KindAccess {
			continue
		}
		if r.Actor != "run:run_1" || r.Resource != "secret/prod/openai-key" {
			t.Errorf("record %d: actor %q, resource %q", r.Seq, r.Actor, r.Resource)
		}
		var d struct {
			Access vault.Access `json:"access"`
		}
		if err := json.Unmarshal(r.Details, &d); err != nil || d.Access.Connector != "openai" || d.Access.Workflow != "support/triage" {
			t.Errorf("record %d details: %s", r.Seq, r.Details)
		}
		outcomes = append(outcomes, r.Outcome)
	}
	if strings.Join(outcomes, ",") != "ok,denied" {
		t.Errorf("secret access outcomes = %v, want ok then denied", outcomes)
	}
}

// With --audit-file, the audit log is also written to a file outside the
// database, which verifies on its own against the log's signing key.
func TestAuditFileCopy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := testConfig(t)
	cfg.AuditFile = filepath.Join(t.TempDir(), "audit.jsonl")
	cfg.AuditRequire = []string{"file"}
	a, err := app.Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Vault.Set(ctx, "dev", "k", []byte("v4lue"), vault.Options{Bindings: vault.Bindings{Connectors: []string{"c"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Vault.Resolve(ctx, vault.Access{Environment: "dev", Connector: "c"}, "dev", "k"); err != nil {
		t.Fatal(err)
	}
	a.Close() // signs a last checkpoint, which reaches the file too
	f, err := os.Open(cfg.AuditFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	key, _, err := audit.LoadVerifier(filepath.Join(cfg.DataDir, audit.VerifierKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(ctx, audit.FileSource(f), key, audit.VerifyOptions{})
	if err != nil || rep.Records == 0 || rep.Covered != rep.Records {
		t.Fatalf("the file copy: %+v, %v", rep, err)
	}
}

func TestAuditRequireNeedsTheSink(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.AuditRequire = []string{"webhook"}
	if _, err := app.Open(context.Background(), cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "--audit-require webhook: no --audit-webhook") {
		t.Fatalf("got %v", err)
	}
}

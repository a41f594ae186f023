package app_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/moatproject/moat/internal/app"
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

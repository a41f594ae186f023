package vault_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/moatproject/moat/internal/store/sqlite"
	"github.com/moatproject/moat/internal/vault"
)

// printHook stands in for the audit log.
type printHook struct{}

func (printHook) SecretAccessed(_ context.Context, e vault.Event) error {
	fmt.Printf("audit: %s %s/%s %s", e.Kind, e.Environment, e.Name, e.Outcome)
	if e.Reason != "" {
		fmt.Printf(" (%s)", e.Reason)
	}
	fmt.Println()
	return nil
}

// A secret is set once, bound to a connector and a host, and read back
// only through Resolve, by a run of the same environment sending it there.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "vault-example")
	defer os.RemoveAll(dir)
	st, err := sqlite.Open(ctx, filepath.Join(dir, "moat.db"))
	if err != nil {
		panic(err)
	}
	defer st.Close()

	v, err := vault.Open(ctx, vault.Config{
		Store:  st,
		Source: vault.KeyFile{Path: filepath.Join(dir, vault.KeyFileName), Create: true},
		Hook:   printHook{},
	})
	if err != nil {
		panic(err)
	}
	info, err := v.Set(ctx, "prod", "HELPDESK_TOKEN", []byte("hd-123"), vault.Options{
		Bindings: vault.Bindings{Connectors: []string{"helpdesk"}, Hosts: []string{"api.helpdesk.example"}},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("stored version", info.Version, "under key term", info.KeyTerm)

	run := vault.Access{RunID: "run_1", Workflow: "support/triage", Environment: "prod", Connector: "helpdesk", Host: "api.helpdesk.example"}
	token, err := v.Resolve(ctx, run, "prod", "HELPDESK_TOKEN")
	if err != nil {
		panic(err)
	}
	fmt.Println("resolved", len(token), "bytes")

	run.Host = "attacker.example"
	_, err = v.Resolve(ctx, run, "prod", "HELPDESK_TOKEN")
	fmt.Println("to another host:", errors.Is(err, vault.ErrNotBound))
	// Output:
	// stored version 1 under key term 1
	// audit: secret.access prod/HELPDESK_TOKEN ok
	// audit: secret.unusual_access prod/HELPDESK_TOKEN ok (first use by workflow "support/triage" in environment "prod")
	// resolved 6 bytes
	// audit: secret.access prod/HELPDESK_TOKEN denied (not bound to host "attacker.example")
	// audit: secret.binding_violation prod/HELPDESK_TOKEN denied (not bound to host "attacker.example")
	// to another host: true
}

package app

import (
	"context"
	"net/http"
	"os"
	"path/filepath"

	"github.com/moatproject/moat/internal/audit"
	"github.com/moatproject/moat/internal/vault"
)

// openAudit opens the tamper-evident audit log, its keys in the data dir
// (created on first start).
func (a *App) openAudit(ctx context.Context) error {
	keys, err := audit.LoadOrCreateKeys(a.Config.DataDir)
	if err != nil {
		return err
	}
	opts := audit.Options{Logger: a.Log, Require: a.Config.AuditRequire}
	if a.Config.DatabaseURL == "" {
		// This process alone writes the SQLite database (the data dir is
		// locked), so records can be durable in a journal before the
		// database commits them, which takes the commit off the path of
		// every audited action.
		opts.Journal = filepath.Join(a.Config.DataDir, audit.JournalFile)
	}
	if path := a.Config.AuditFile; path != "" {
		sink, err := audit.NewFileSink(path, audit.FileSinkOptions{})
		if err != nil {
			return err
		}
		opts.Sinks = append(opts.Sinks, sink)
	}
	if u := a.Config.AuditWebhook; u != "" {
		wo := audit.WebhookOptions{URL: u}
		if v := os.Getenv("MOAT_AUDIT_WEBHOOK_AUTHORIZATION"); v != "" {
			wo.Header = http.Header{"Authorization": {v}}
		}
		sink, err := audit.NewWebhookSink(wo)
		if err != nil {
			return err
		}
		opts.Sinks = append(opts.Sinks, sink)
	}
	a.Audit, err = audit.Open(ctx, a.Store, keys.Signer, keys.HMAC, opts)
	if err != nil {
		for _, s := range opts.Sinks {
			s.Close()
		}
	}
	return err
}

// openVault opens the secrets vault. The root key comes from MOAT_VAULT_KEY
// when it is set, otherwise from <data-dir>/vault.key (created on first
// start, with a warning in the log that production should use another
// source, unless the data dir is temporary). Every access to a secret's
// plaintext is recorded in the audit log.
func (a *App) openVault(ctx context.Context) error {
	var source vault.KeySource = vault.KeyFile{Path: filepath.Join(a.Config.DataDir, vault.KeyFileName), Create: true}
	if os.Getenv(vault.EnvVar) != "" {
		source = vault.EnvKey{}
	}
	v, err := vault.Open(ctx, vault.Config{Store: a.Store, Source: source, Hook: secretAuditHook{a.Audit}})
	if err != nil {
		return err
	}
	if w := source.Warning(); w != "" && !a.Config.TemporaryDataDir {
		a.Log.Warn(w)
	}
	a.Vault = v
	return nil
}

// secretAuditHook records every access to a secret's plaintext, and every
// unusual-access alert, before the value is released.
type secretAuditHook struct{ log *audit.Log }

func (h secretAuditHook) SecretAccessed(ctx context.Context, e vault.Event) error {
	details := map[string]any{
		"environment": e.Environment,
		"access":      e.Access,
	}
	if e.Version > 0 {
		details["version"] = e.Version
	}
	if e.Reason != "" {
		details["reason"] = e.Reason
	}
	actor := "run:" + e.Access.RunID
	if e.Access.RunID == "" {
		actor = "connector:" + e.Access.Connector
	}
	_, err := h.log.Append(ctx, audit.Record{
		Actor:    actor,
		Action:   e.Kind,
		Resource: "secret/" + e.Environment + "/" + e.Name,
		Outcome:  audit.Outcome(e.Outcome),
		Details:  details,
	})
	return err
}

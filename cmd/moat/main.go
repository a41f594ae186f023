// Command moat is the single binary: the server, the in-process runner and
// the client for a running server.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/moatproject/moat/internal/app"
	"github.com/moatproject/moat/internal/config"
)

// exitError carries an exit status without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	root := newRoot(os.Stdout, os.Stderr)
	if err := root.Execute(); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "moat:", err)
		os.Exit(1)
	}
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "moat",
		Short:         "Self-hosted workflows for AI-enabled automation, behind one security gateway",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		newServeCmd(), newRunCmd(), newValidateCmd(), newApplyCmd(),
		newRunsCmd(), newTasksCmd(), newSchemaCmd(), newVersionCmd(),
		newPIICmd(), newGuardCmd(),
		newAuditCmd(), newFlowCmd(),
		newSecretCmd(), newKeysCmd(), newUnsealCmd(),
	)
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "moat", app.Version)
		},
	}
}

// addServerFlags binds the flags shared by serve and run.
func addServerFlags(cmd *cobra.Command, c *config.Config) {
	f := cmd.Flags()
	f.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the embedded database and the bootstrap token (MOAT_DATA_DIR)")
	f.StringVar(&c.DatabaseURL, "database-url", c.DatabaseURL, "postgres://… to use Postgres instead of the embedded SQLite (MOAT_DATABASE_URL)")
	f.StringVar(&c.Environment, "env", c.Environment, "environment runs see as env.name: dev, staging or prod (MOAT_ENV)")
	f.BoolVar(&c.AllowPrivateEgress, "allow-private-egress", c.AllowPrivateEgress, "let http.request and AI connectors reach loopback and private networks (MOAT_ALLOW_PRIVATE_EGRESS)")
	f.StringVar(&c.AILimitsPerKey, "ai-limits-per-key", c.AILimitsPerKey, "limits on each API key's AI calls, e.g. rpm=600,tpm=100000,budget=50/month (MOAT_AI_LIMITS_PER_KEY)")
	f.StringVar(&c.AILimitsPerWorkflow, "ai-limits-per-workflow", c.AILimitsPerWorkflow, "limits on each workflow's AI calls, same form (MOAT_AI_LIMITS_PER_WORKFLOW)")
	f.StringVar(&c.AuditFile, "audit-file", c.AuditFile, "also write the audit log as JSON lines to this file, rotated at 100 MiB, 5 kept (MOAT_AUDIT_FILE)")
	f.StringVar(&c.AuditWebhook, "audit-webhook", c.AuditWebhook, "also POST the audit log in batches to this URL, e.g. a SIEM collector; MOAT_AUDIT_WEBHOOK_AUTHORIZATION, if set, is sent as its Authorization header (MOAT_AUDIT_WEBHOOK)")
	f.StringSliceVar(&c.AuditRequire, "audit-require", c.AuditRequire, "audit copies that must accept each record before the audited action goes ahead: file, webhook (MOAT_AUDIT_REQUIRE)")
	f.StringVar(&c.Retention, "retention", c.Retention, "how long finished runs' payloads are kept unless a workflow says otherwise, e.g. 30d; 0 keeps them until erased (MOAT_RETENTION)")
	f.StringSliceVar(&c.RetentionClasses, "retention-class", c.RetentionClasses, "cap retention of payloads holding a data class, e.g. pii.card=7d; repeatable (MOAT_RETENTION_CLASSES, comma-separated)")
	f.StringVar(&c.PurgeInterval, "purge-interval", c.PurgeInterval, "how often expired payloads are destroyed (MOAT_PURGE_INTERVAL)")
	f.StringVar(&c.LogFormat, "log-format", c.LogFormat, "json or text (MOAT_LOG_FORMAT)")
	f.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error (MOAT_LOG_LEVEL)")
}

func newLogger(c config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatproject/moat/internal/api"
	"github.com/moatproject/moat/internal/app"
	"github.com/moatproject/moat/internal/audit"
	"github.com/moatproject/moat/internal/config"
	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/store"
)

func newServeCmd() *cobra.Command {
	c := config.Default()
	var apply []string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the server: API, webhooks, schedules and the durable engine",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			config.TuneGC()
			log := newLogger(c, cmd.ErrOrStderr())
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()

			a, err := app.Open(ctx, c, log)
			if err != nil {
				return err
			}
			defer a.Close()
			token, err := a.Bootstrap(ctx)
			if err != nil {
				return err
			}
			if token != "" {
				abs, _ := filepath.Abs(c.TokenPath())
				fmt.Fprintf(cmd.ErrOrStderr(), "\nFirst start: created the bootstrap admin token. It is shown once and saved (mode 0600) to %s\n\n    %s\n\nUse it as: Authorization: Bearer <token>\n\n", abs, token)
			}
			if len(apply) > 0 {
				if err := applyLocal(ctx, a, apply, cmd.ErrOrStderr()); err != nil {
					return err
				}
			}
			if !c.Loopback() && !a.TLS() {
				log.Warn("listening beyond this machine without TLS; give --tls-cert and --tls-key, or put TLS in front of Moat", "addr", c.Addr)
			}
			ln, err := a.Listen()
			if err != nil {
				return err
			}
			if err := a.Start(ctx); err != nil {
				return err
			}
			config.ReleaseStartupGarbage()
			scheme := "http://"
			if a.TLS() {
				scheme = "https://"
			}
			log.Info("moat is serving", "addr", scheme+ln.Addr().String(), "data_dir", c.DataDir, "database", databaseKind(c), "env", c.Environment, "version", app.Version)
			err = a.Serve(ctx, ln)
			if err == nil || ctx.Err() != nil {
				log.Info("moat stopped")
				return nil
			}
			return err
		},
	}
	cmd.Flags().StringVar(&c.Addr, "addr", c.Addr, "listen address (MOAT_ADDR); loopback by default")
	cmd.Flags().StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "PEM certificate (chain) to serve HTTPS with, TLS 1.2 or later (MOAT_TLS_CERT)")
	cmd.Flags().StringVar(&c.TLSKey, "tls-key", c.TLSKey, "PEM private key of --tls-cert (MOAT_TLS_KEY)")
	cmd.Flags().StringVar(&c.ClientCA, "client-ca", c.ClientCA, "PEM bundle of CAs whose client certificates are required: mutual TLS (MOAT_CLIENT_CA)")
	cmd.Flags().StringArrayVar(&apply, "apply", nil, "apply resource files (or every .yaml/.yml/.json in a directory) at start; repeatable")
	addServerFlags(cmd, &c)
	return cmd
}

func databaseKind(c config.Config) string {
	if c.DatabaseURL != "" {
		return "postgres"
	}
	return "sqlite " + c.DatabasePath()
}

// applyLocal applies the documents of files and directories straight into
// the store, in the order of `moat apply` and through the same checks as
// the API: used at start, before the API listens. The first refused
// document stops the start.
func applyLocal(ctx context.Context, a *app.App, paths []string, out io.Writer) error {
	docs, err := collectDocuments(paths)
	if err != nil {
		return err
	}
	// Documents come in dependency order, so the gateway is reloaded once,
	// before the first workflow that may name a connector just applied.
	resourcesChanged := false
	reload := func() error {
		if !resourcesChanged {
			return nil
		}
		resourcesChanged = false
		return a.Gateway.Reload(ctx)
	}
	for _, d := range docs {
		if d.Kind == "Workflow" {
			if err := reload(); err != nil {
				return fmt.Errorf("apply: %w", err)
			}
		}
		err := auditApplied(ctx, a.Audit, d.Kind, d.Name, d.Path, func() error {
			changed, err := applyDocument(ctx, a, d, out)
			resourcesChanged = resourcesChanged || changed
			return err
		})
		if err != nil {
			return err
		}
	}
	if err := reload(); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	return nil
}

// auditApplied records a document applied at start as the API records a
// change: "requested" before (the start stops if that cannot be written:
// nothing changes unrecorded), then its outcome.
func auditApplied(ctx context.Context, log *audit.Log, kind, name, path string, apply func() error) error {
	rec := audit.Record{
		Actor:    "system:serve-apply",
		Action:   strings.ToLower(kind) + ".apply",
		Resource: strings.ToLower(kind) + "/" + name,
		Outcome:  audit.Requested,
		Details:  map[string]any{"file": path},
	}
	if _, err := log.Append(ctx, rec); err != nil {
		return fmt.Errorf("apply %s: the audit log is unavailable, nothing was applied: %w", path, err)
	}
	err := apply()
	rec.Outcome = audit.OK
	if err != nil {
		rec.Outcome = audit.Failed
	}
	if _, aerr := log.Append(ctx, rec); aerr != nil && err == nil {
		err = fmt.Errorf("apply %s: the audit log is unavailable: %w", path, aerr)
	}
	return err
}

// applyDocument applies one document and reports whether it changed one of
// the gateway's resources.
func applyDocument(ctx context.Context, a *app.App, d fileDocument, out io.Writer) (gatewayChanged bool, err error) {
	switch d.Kind {
	case "Project":
		p, err := d.project()
		if err != nil {
			return false, fmt.Errorf("apply %w", err)
		}
		err = a.Store.InTx(ctx, func(tx store.Tx) error {
			now := time.Now().UTC()
			_, err := tx.UpsertProject(ctx, store.Project{ID: store.NewID("prj"), Name: p.Name, Description: p.Description, CreatedAt: now, UpdatedAt: now})
			return err
		})
		if err != nil {
			return false, fmt.Errorf("apply %s:%d: project %s: %w", d.Path, d.Line, p.Name, err)
		}
		fmt.Fprintf(out, "project %s applied (%s)\n", p.Name, d.Path)
	case "Workflow":
		saved, err := a.Engine.SaveWorkflow(ctx, d.Path, d.Source)
		if err != nil {
			return false, fmt.Errorf("apply %s:\n%w", d.Path, offsetProblems(err, d.Line-1))
		}
		verb := "unchanged"
		if saved.Created {
			verb = "saved"
		}
		fmt.Fprintf(out, "workflow %s/%s version %d %s (%s)\n", saved.Workflow.Project, saved.Workflow.Name, saved.Version.Number, verb, d.Path)
	case gateway.KindVendor, gateway.KindConnector, gateway.KindModel:
		rd, err := parseResourceDocument(d)
		if err != nil {
			return false, fmt.Errorf("apply %w", err)
		}
		applied, err := api.ApplyResource(ctx, a.Store, rd.kind, rd.name, rd.body, time.Now().UTC())
		if err != nil {
			return false, fmt.Errorf("apply:\n%w", rd.localProblems(err))
		}
		rd.printApplied(out, applied.Changed)
		return applied.Changed, nil
	default:
		return false, fmt.Errorf("apply %w", d.unknownKind())
	}
	return false, nil
}

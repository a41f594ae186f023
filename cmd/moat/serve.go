package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/moatproject/moat/internal/app"
	"github.com/moatproject/moat/internal/config"
)

func newServeCmd() *cobra.Command {
	c := config.Default()
	var apply []string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the server: API, webhooks, schedules and the durable engine",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			for _, path := range apply {
				if err := applyLocal(ctx, a, path, cmd.ErrOrStderr()); err != nil {
					return err
				}
			}
			if !c.Loopback() {
				log.Warn("listening beyond this machine; put TLS in front of Moat", "addr", c.Addr)
			}
			ln, err := net.Listen("tcp", c.Addr)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", c.Addr, err)
			}
			if err := a.Start(ctx); err != nil {
				return err
			}
			log.Info("moat is serving", "addr", "http://"+ln.Addr().String(), "data_dir", c.DataDir, "database", databaseKind(c), "env", c.Environment, "version", app.Version)
			err = a.Serve(ctx, ln)
			if err == nil || ctx.Err() != nil {
				log.Info("moat stopped")
				return nil
			}
			return err
		},
	}
	cmd.Flags().StringVar(&c.Addr, "addr", c.Addr, "listen address (MOAT_ADDR); loopback by default")
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

// applyLocal saves the workflows of a file or directory straight into the
// store: used at start, before the API listens.
func applyLocal(ctx context.Context, a *app.App, path string, out interface{ Write([]byte) (int, error) }) error {
	files, err := resourceFiles(path)
	if err != nil {
		return err
	}
	for _, file := range files {
		docs, err := readDocuments(file)
		if err != nil {
			return err
		}
		for _, d := range docs {
			if d.Kind != "Workflow" {
				continue
			}
			saved, err := a.Engine.SaveWorkflow(ctx, file, d.Source)
			if err != nil {
				return fmt.Errorf("apply %s:\n%w", file, offsetProblems(err, d.Line-1))
			}
			verb := "unchanged"
			if saved.Created {
				verb = "saved"
			}
			fmt.Fprintf(out, "workflow %s/%s version %d %s (%s)\n", saved.Workflow.Project, saved.Workflow.Name, saved.Version.Number, verb, file)
		}
	}
	return nil
}

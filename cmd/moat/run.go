package main

import (
	"encoding/json"

	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/moatproject/moat/internal/api"
	"github.com/moatproject/moat/internal/app"
	"github.com/moatproject/moat/internal/config"
	"github.com/moatproject/moat/internal/engine"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/workflow"
)

func newRunCmd() *cobra.Command {
	c := config.Default()
	c.DataDir = ""
	c.LogLevel = "warn"
	var input, output string
	cmd := &cobra.Command{
		Use:   "run FILE",
		Short: "Run a workflow in-process and print the finished run as JSON",
		Long: "Runs the workflow in FILE with the durable engine in this process, against --data-dir\n" +
			"(a temporary directory by default), waits for the run to finish and prints it.\n" +
			"Exit status 0 only when the run succeeded.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := readInput(input)
			if err != nil {
				return err
			}
			if c.DataDir == "" && c.DatabaseURL == "" {
				dir, err := os.MkdirTemp("", "moat-run-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				c.DataDir, c.TemporaryDataDir = dir, true
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := newLogger(c, cmd.ErrOrStderr())
			a, err := app.Open(ctx, c, log)
			if err != nil {
				return err
			}
			defer a.Close()

			docs, err := readDocuments(args[0])
			if err != nil {
				return err
			}
			var wf []byte
			line := 1
			for _, d := range docs {
				if d.Kind == "Workflow" {
					if wf != nil {
						return fmt.Errorf("%s: holds more than one workflow; run takes one", args[0])
					}
					wf, line = d.Source, d.Line
				}
			}
			if wf == nil {
				return fmt.Errorf("%s: no Workflow document", args[0])
			}
			saved, err := a.Engine.SaveWorkflow(ctx, args[0], wf)
			if err != nil {
				return offsetProblems(err, line-1)
			}
			if err := a.Start(ctx); err != nil {
				return err
			}
			defer a.Engine.Stop(ctx)
			run, err := a.Engine.StartRun(ctx, engine.StartRequest{WorkflowID: saved.Workflow.ID, Input: in, Trigger: "cli"})
			if err != nil {
				return err
			}
			waiting := false
			run, steps, err := a.Engine.WaitFor(ctx, run.ID, func(r store.Run, _ []store.Step) bool {
				if r.Status == store.RunWaiting && !waiting {
					waiting = true
					fmt.Fprintf(cmd.ErrOrStderr(), "run %s is waiting (a timer or a human task); Ctrl-C to stop\n", r.ID)
				}
				return false
			})
			if err != nil {
				return err
			}
			attempts, err := a.Store.ListAttempts(ctx, run.ID)
			if err != nil {
				return err
			}
			view, err := json.Marshal(api.ViewRun(run, steps, attempts))
			if err != nil {
				return err
			}
			if output == "timeline" {
				var rv runView
				if err := json.Unmarshal(view, &rv); err != nil {
					return err
				}
				printTimeline(cmd, rv)
			} else if err := printJSON(cmd, json.RawMessage(view)); err != nil {
				return err
			}
			if run.Status != store.RunSucceeded {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&input, "input", "", "run input: a JSON value, or @file to read it from a file")
	cmd.Flags().StringVarP(&output, "output", "o", "json", "json or timeline")
	addServerFlags(cmd, &c)
	return cmd
}

// readInput reads --input: inline JSON or @file.
func readInput(arg string) (any, error) {
	if arg == "" {
		return nil, nil
	}
	data := []byte(arg)
	if name, ok := strings.CutPrefix(arg, "@"); ok {
		var err error
		if data, err = os.ReadFile(name); err != nil {
			return nil, fmt.Errorf("--input: %w", err)
		}
	}
	v, err := workflow.DecodeJSON(data)
	if err != nil {
		return nil, fmt.Errorf("--input: not valid JSON: %w", err)
	}
	return v, nil
}
